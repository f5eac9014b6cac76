// Hashing off the event loop: sha256 costs about as much CPU as reading the socket and writing
// the file together, so on the main thread it caps a download at one core. One worker thread per
// process hashes every download's blocks, in the order they were sent; the blocks live in
// SharedArrayBuffers, so nothing is copied or transferred, and a block is reused only after the
// worker has said it is done with it.
import { Worker } from 'node:worker_threads';
import { createHash, type Hash } from 'node:crypto';

/** Where a block writer's blocks are hashed. update() resolves once the block may be reused. */
export interface BlockHasher {
  /** blocks must be SharedArrayBuffer-backed (the worker reads them in place) */
  readonly shared: boolean;
  update(block: Buffer, len: number): Promise<void>;
  /** hex digests in the order of the algorithms asked for; ends the session */
  digest(): Promise<string[]>;
  /** drop the session without a result */
  close(): void;
}

/** Hashing on the calling thread (small downloads, tests). */
export class InlineHasher implements BlockHasher {
  readonly shared = false;
  private readonly hashes: Hash[];
  constructor(algos: readonly string[]) {
    this.hashes = algos.map((a) => createHash(a));
  }
  update(block: Buffer, len: number): Promise<void> {
    const data = block.subarray(0, len);
    for (const h of this.hashes) h.update(data);
    return Promise.resolve();
  }
  digest(): Promise<string[]> {
    return Promise.resolve(this.hashes.map((h) => h.digest('hex')));
  }
  close(): void {}
}

// Plain CommonJS run by eval: the worker must not load the TypeScript loader the agent may run under.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const sessions = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'open') sessions.set(m.id, m.algos.map((a) => createHash(a)));
  else if (m.op === 'update') {
    const view = new Uint8Array(m.buf, m.off, m.len);
    for (const h of sessions.get(m.id)) h.update(view);
    parentPort.postMessage({ id: m.id });
  } else if (m.op === 'digest') {
    const hs = sessions.get(m.id);
    sessions.delete(m.id);
    parentPort.postMessage({ id: m.id, digests: hs.map((h) => h.digest('hex')) });
  } else if (m.op === 'close') sessions.delete(m.id);
});
`;

interface Pending {
  resolve: (digests: string[] | undefined) => void;
  reject: (e: Error) => void;
}

/** The process's hashing thread: started on first use, holding the process open only while sessions are open. */
class HashThread {
  private worker: Worker | undefined;
  private nextId = 1;
  /** per session, its answers still to come, in order (the worker answers in order) */
  private pending = new Map<number, Pending[]>();

  open(algos: readonly string[]): number {
    const w = this.start();
    const id = this.nextId++;
    this.pending.set(id, []);
    if (this.pending.size === 1) w.ref();
    w.postMessage({ op: 'open', id, algos });
    return id;
  }

  call(id: number, msg: Record<string, unknown>): Promise<string[] | undefined> {
    const q = this.pending.get(id);
    if (!q || !this.worker) return Promise.reject(new Error('hash session is closed'));
    const p = new Promise<string[] | undefined>((resolve, reject) => q.push({ resolve, reject }));
    this.worker.postMessage({ ...msg, id });
    return p;
  }

  end(id: number): void {
    if (!this.pending.delete(id)) return;
    this.worker?.postMessage({ op: 'close', id });
    if (this.pending.size === 0) this.worker?.unref();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], env: {}, name: 'tstack-hash' });
    w.unref();
    w.on('message', (m: { id: number; digests?: string[] }) => this.pending.get(m.id)?.shift()?.resolve(m.digests));
    const fail = (e: Error): void => {
      if (this.worker !== w) return;
      this.worker = undefined;
      const all = [...this.pending.values()];
      this.pending.clear();
      for (const q of all) for (const p of q) p.reject(e);
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`hash thread exited (code ${code})`)));
    this.worker = w;
    return w;
  }
}

let thread: HashThread | undefined;

/** A hashing session on the process's hash thread. */
export class ThreadHasher implements BlockHasher {
  readonly shared = true;
  private readonly id: number;
  private readonly t: HashThread;
  constructor(algos: readonly string[]) {
    this.t = thread ??= new HashThread();
    this.id = this.t.open(algos);
  }
  async update(block: Buffer, len: number): Promise<void> {
    if (!(block.buffer instanceof SharedArrayBuffer)) throw new Error('ThreadHasher needs SharedArrayBuffer blocks');
    await this.t.call(this.id, { op: 'update', buf: block.buffer, len, off: block.byteOffset });
  }
  async digest(): Promise<string[]> {
    const d = await this.t.call(this.id, { op: 'digest' });
    this.t.end(this.id);
    return d!;
  }
  close(): void {
    this.t.end(this.id);
  }
}
