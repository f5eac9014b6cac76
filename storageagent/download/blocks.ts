// Where a download's bytes go: a few reused blocks. A source reads into the current block (or its
// bytes are copied in) at most READ_SIZE at a time, and each piece is written to the file at once,
// while it is still in the CPU cache. Written later as a whole 4 MiB block, long evicted, the same
// copy into the page cache cost several times the CPU; it was the agent's biggest cost per byte.
// A full block is hashed on the hash thread (hash-thread.ts) while the next ones fill, and reused
// once it is hashed and all its writes are done. Reusing blocks matters too: a fresh 64 KiB
// buffer per socket read (node's default) costs a page fault per 4 KiB and a GC sweep.
import { write } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { BlockHasher } from './hash-thread.js';
import { FatalDownloadError } from './types.js';

export const BLOCK_SIZE = 4 << 20;
/** the most a source reads at once: small enough to still be in the cache when it is written */
export const READ_SIZE = 128 << 10;
/** full blocks waiting for the hash thread or their writes before the source is asked to wait */
const IN_FLIGHT = 3;

interface Block {
  buf: Buffer;
  /** writes of its pieces not finished yet */
  writes: number;
  /** full (or the last) and handed to the hasher */
  sealed: boolean;
  hashed: boolean;
}

export class BlockWriter {
  private free: Block[] = [];
  private cur: Block | undefined;
  private fill = 0;
  /** sealed blocks not yet reusable */
  private inFlight = 0;
  private failed: Error | undefined;
  private waiters: Array<() => void> = [];
  /** file position of the next byte accepted */
  pos: number;

  constructor(
    private readonly fh: FileHandle,
    start: number,
    private readonly hasher: BlockHasher,
    private readonly onBytes: (n: number) => void,
    private readonly blockSize = BLOCK_SIZE,
  ) {
    this.pos = start;
  }

  /**
   * Take these bytes (copied: the caller may reuse its buffer at once). False: blocks are
   * still being hashed or written, wait for ready() before giving more. Throws an earlier
   * write or hash error.
   */
  write(data: Uint8Array): boolean {
    if (this.failed) throw this.failed;
    let off = 0;
    while (off < data.length) {
      const b = this.take();
      const n = Math.min(data.length - off, this.blockSize - this.fill, READ_SIZE);
      b.buf.set(data.subarray(off, off + n), this.fill);
      this.put(n);
      off += n;
    }
    this.onBytes(data.length);
    return this.inFlight < IN_FLIGHT;
  }

  /** Where a source reads next, in place (then commit()): the current block's free space, at most READ_SIZE; never empty. */
  space(): Buffer {
    return this.take().buf.subarray(this.fill, Math.min(this.blockSize, this.fill + READ_SIZE));
  }

  /** n bytes were read into what space() returned, at its start. Like write(). */
  commit(n: number): boolean {
    if (this.failed) throw this.failed;
    this.put(n);
    this.onBytes(n);
    return this.inFlight < IN_FLIGHT;
  }

  /** Resolves when a block is free (or something failed: then write/flush throw). */
  ready(): Promise<void> {
    if (this.inFlight < IN_FLIGHT || this.failed) return Promise.resolve();
    return new Promise((r) => this.waiters.push(r));
  }

  /** Hash and write what is buffered and wait for all of it; throws the first error. */
  async flush(): Promise<void> {
    if (this.fill > 0) this.seal();
    while (this.inFlight > 0) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failed) throw this.failed;
  }

  private take(): Block {
    this.cur ??= this.free.pop() ?? { buf: this.hasher.shared ? Buffer.from(new SharedArrayBuffer(this.blockSize)) : Buffer.allocUnsafeSlow(this.blockSize), writes: 0, sealed: false, hashed: false };
    return this.cur;
  }

  /** the n bytes at the fill mark: written now, hashed with their block */
  private put(n: number): void {
    const b = this.cur!;
    this.writeOut(b, this.fill, n, this.pos);
    this.fill += n;
    this.pos += n;
    if (this.fill === this.blockSize) this.seal();
  }

  private writeOut(b: Block, off: number, len: number, at: number): void {
    b.writes++;
    write(this.fh.fd, b.buf, off, len, at, (e, k) => {
      b.writes--;
      if (e) this.failed ??= e;
      else if (k === 0) this.failed ??= new FatalDownloadError(`short write (${len} bytes left at ${at}): is the disk full?`);
      else if (k < len) return this.writeOut(b, off + k, len - k, at + k);
      this.release(b);
    });
  }

  private seal(): void {
    const b = this.cur!;
    const len = this.fill;
    this.cur = undefined;
    this.fill = 0;
    b.sealed = true;
    this.inFlight++;
    // blocks reach the hash thread in file order (seal runs in order)
    this.hasher.update(b.buf, len).then(
      () => ((b.hashed = true), this.release(b)),
      (e: Error) => {
        this.failed ??= e;
        b.hashed = true;
        this.release(b);
      },
    );
  }

  /** a sealed block, hashed and written, goes back to the free list */
  private release(b: Block): void {
    if (!b.sealed || !b.hashed || b.writes > 0) return;
    b.sealed = b.hashed = false;
    this.inFlight--;
    this.free.push(b);
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}
