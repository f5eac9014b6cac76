// Where a download's bytes go: a few large reused blocks (a source reads into them directly, or
// they are copied in), each hashed once and written at its position while the next one fills. Reusing the blocks matters: a fresh 64 KiB
// buffer per socket read (node's default) costs a page fault per 4 KiB and a GC sweep, which was
// most of the agent's CPU per downloaded byte.
import type { Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { FatalDownloadError } from './types.js';

export const BLOCK_SIZE = 4 << 20;
/** blocks being written at once before the source is asked to wait */
const IN_FLIGHT = 2;

export class BlockWriter {
  private free: Buffer[] = [];
  private cur: Buffer | undefined;
  private fill = 0;
  /** file position of the current block's first byte */
  private curStart = 0;
  private inFlight = 0;
  private failed: Error | undefined;
  private waiters: Array<() => void> = [];
  /** file position of the next byte accepted */
  pos: number;

  constructor(
    private readonly fh: FileHandle,
    start: number,
    private hashes: Hash[],
    private readonly onBytes: (n: number) => void,
    private readonly blockSize = BLOCK_SIZE,
  ) {
    this.pos = start;
  }

  /**
   * Take these bytes (copied: the caller may reuse its buffer at once). False: blocks are
   * being written, wait for ready() before giving more. Throws a write error seen earlier.
   */
  write(data: Uint8Array): boolean {
    if (this.failed) throw this.failed;
    let off = 0;
    while (off < data.length) {
      this.take();
      const n = Math.min(data.length - off, this.blockSize - this.fill);
      this.cur!.set(data.subarray(off, off + n), this.fill);
      this.fill += n;
      this.pos += n;
      off += n;
      if (this.fill === this.blockSize) this.submit();
    }
    this.onBytes(data.length);
    return this.inFlight < IN_FLIGHT;
  }

  /** The rest of the current block, for a source to read into directly (then commit()); never empty. */
  space(): Buffer {
    this.take();
    return this.cur!.subarray(this.fill);
  }

  /** n bytes were read into what space() returned, at its start. Like write(). */
  commit(n: number): boolean {
    if (this.failed) throw this.failed;
    this.fill += n;
    this.pos += n;
    this.onBytes(n);
    if (this.fill === this.blockSize) this.submit();
    return this.inFlight < IN_FLIGHT;
  }

  private take(): void {
    if (this.cur) return;
    this.cur = this.free.pop() ?? Buffer.allocUnsafeSlow(this.blockSize);
    this.curStart = this.pos;
  }

  /** Resolves when a block is free (or a write failed: then write/flush throw). */
  ready(): Promise<void> {
    if (this.inFlight < IN_FLIGHT || this.failed) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  /** Write what is buffered and wait for every write; throws the first write error. */
  async flush(): Promise<void> {
    if (this.fill > 0 && !this.failed) this.submit();
    while (this.inFlight > 0) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failed) throw this.failed;
  }

  /** Forget what is buffered and start over at `start` once in-flight writes are done (the caller re-hashes). */
  async reset(start: number, hashes: Hash[]): Promise<void> {
    if (this.cur) this.free.push(this.cur);
    this.cur = undefined;
    this.fill = 0;
    while (this.inFlight > 0) await new Promise<void>((r) => this.waiters.push(r));
    this.failed = undefined;
    this.pos = start;
    this.hashes = hashes;
  }

  private submit(): void {
    const block = this.cur!;
    const len = this.fill;
    const at = this.curStart;
    this.cur = undefined;
    this.fill = 0;
    const data = block.subarray(0, len);
    for (const h of this.hashes) h.update(data);
    this.inFlight++;
    void this.fh.write(data, 0, len, at).then(
      ({ bytesWritten }) => {
        if (bytesWritten !== len) this.failed ??= new FatalDownloadError(`short write (${bytesWritten} of ${len} bytes): is the disk full?`);
        this.done(block);
      },
      (e: Error) => {
        this.failed ??= e;
        this.done(block);
      },
    );
  }

  private done(block: Buffer): void {
    this.inFlight--;
    this.free.push(block);
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}
