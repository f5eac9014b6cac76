// A minimal NFSv3 client (ONC RPC over TCP, AUTH_SYS as root) for the few namespace
// operations libnfs-utils has no command for: MKDIR, REMOVE, RMDIR, RENAME, FSSTAT, plus
// LOOKUP/READDIR to walk paths. Data never goes through here: qemu-img and nfs-cp move it.
import { connect, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { TStackError } from '../../shared/errors.js';

const PMAP = 100000;
const MOUNT = 100005;
const NFS = 100003;

const NFS3ERR: Record<number, string> = {
  1: 'NFS3ERR_PERM', 2: 'NFS3ERR_NOENT', 5: 'NFS3ERR_IO', 13: 'NFS3ERR_ACCES', 17: 'NFS3ERR_EXIST', 18: 'NFS3ERR_XDEV',
  20: 'NFS3ERR_NOTDIR', 21: 'NFS3ERR_ISDIR', 22: 'NFS3ERR_INVAL', 28: 'NFS3ERR_NOSPC', 30: 'NFS3ERR_ROFS', 63: 'NFS3ERR_NAMETOOLONG',
  66: 'NFS3ERR_NOTEMPTY', 70: 'NFS3ERR_STALE', 10001: 'NFS3ERR_BADHANDLE', 10006: 'NFS3ERR_SERVERFAULT', 10008: 'NFS3ERR_JUKEBOX',
};

export class NfsStatusError extends TStackError {
  constructor(
    readonly status: number,
    what: string,
  ) {
    super('STORAGE_ERROR', `NFS ${what}: ${NFS3ERR[status] ?? `status ${status}`}`, { nfsStatus: status });
  }
}

class W {
  private parts: Buffer[] = [];
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
    return this;
  }
  u64(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  opaque(d: Buffer): this {
    this.u32(d.length);
    this.parts.push(d);
    const pad = (4 - (d.length % 4)) % 4;
    if (pad) this.parts.push(Buffer.alloc(pad));
    return this;
  }
  fixed(d: Buffer): this {
    this.parts.push(d);
    return this;
  }
  str(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }
  buf(): Buffer {
    return Buffer.concat(this.parts);
  }
}

class R {
  off = 0;
  constructor(private readonly b: Buffer) {}
  u32(): number {
    const v = this.b.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  u64(): number {
    const v = this.b.readBigUInt64BE(this.off);
    this.off += 8;
    return Number(v);
  }
  opaque(): Buffer {
    const n = this.u32();
    const d = this.b.subarray(this.off, this.off + n);
    this.off += n + ((4 - (n % 4)) % 4);
    return d;
  }
  fixed(n: number): Buffer {
    const d = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return d;
  }
  str(): string {
    return this.opaque().toString('utf8');
  }
}

export interface Attr {
  type: number;
  mode: number;
  size: number;
  used: number;
  mtimeMs: number;
}

function fattr(r: R): Attr {
  const type = r.u32();
  const mode = r.u32();
  r.u32(); // nlink
  r.u32(); // uid
  r.u32(); // gid
  const size = r.u64();
  const used = r.u64();
  r.fixed(8 + 8 + 8 + 8); // rdev, fsid, fileid, atime
  const mtimeMs = r.u32() * 1000 + Math.floor(r.u32() / 1e6);
  r.fixed(8); // ctime
  return { type, mode, size, used, mtimeMs };
}
function postOpAttr(r: R): Attr | undefined {
  return r.u32() ? fattr(r) : undefined;
}
function wcc(r: R): void {
  if (r.u32()) r.fixed(24);
  postOpAttr(r);
}

/** One ONC RPC connection (TCP record marking). */
class RpcConn {
  private xid = Math.floor(Math.random() * 0x7fffffff);
  private pending = new Map<number, { resolve: (r: R) => void; reject: (e: Error) => void }>();
  private buf = Buffer.alloc(0);
  private frags: Buffer[] = [];
  private closed?: Error;
  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => this.onData(d));
    const fail = (e: Error): void => {
      this.closed = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('connection closed')));
  }
  static open(host: string, port: number): Promise<RpcConn> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: host.replace(/^\[|\]$/g, ''), port });
      s.setNoDelay(true);
      const t = setTimeout(() => s.destroy(new Error(`connect ${host}:${port} timed out`)), 15_000);
      s.once('connect', () => {
        clearTimeout(t);
        s.unref();
        resolve(new RpcConn(s));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(new TStackError('STORAGE_ERROR', `NFS server ${host}:${port}: ${e.message}`));
      });
    });
  }
  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 4) {
      const h = this.buf.readUInt32BE(0);
      const len = h & 0x7fffffff;
      if (this.buf.length < 4 + len) return;
      this.frags.push(this.buf.subarray(4, 4 + len));
      this.buf = this.buf.subarray(4 + len);
      if (h & 0x80000000) {
        const msg = Buffer.concat(this.frags);
        this.frags = [];
        const r = new R(msg);
        const xid = r.u32();
        const p = this.pending.get(xid);
        if (!p) continue;
        this.pending.delete(xid);
        try {
          if (r.u32() !== 1) throw new Error('not a reply');
          if (r.u32() !== 0) throw new Error('RPC call denied');
          r.u32(); // verf flavor
          r.opaque();
          const acc = r.u32();
          if (acc !== 0) throw new Error(`RPC not accepted (accept_stat ${acc})`);
          p.resolve(r);
        } catch (e) {
          p.reject(new TStackError('STORAGE_ERROR', `NFS RPC: ${(e as Error).message}`));
        }
      }
    }
  }
  call(prog: number, vers: number, proc: number, args: Buffer, timeoutMs = 60_000): Promise<R> {
    if (this.closed) return Promise.reject(new TStackError('STORAGE_ERROR', `NFS connection: ${this.closed.message}`));
    const xid = (this.xid = (this.xid + 1) >>> 0);
    const cred = new W().u32(0).str(hostname().slice(0, 64)).u32(0).u32(0).u32(0).buf();
    const msg = new W().u32(xid).u32(0).u32(2).u32(prog).u32(vers).u32(proc).u32(1).opaque(cred).u32(0).u32(0).fixed(args).buf();
    const rec = Buffer.alloc(4);
    rec.writeUInt32BE((0x80000000 | msg.length) >>> 0);
    return new Promise<R>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(xid);
        reject(new TStackError('TIMEOUT', `NFS RPC ${prog}/${proc} timed out`));
      }, timeoutMs);
      this.pending.set(xid, {
        resolve: (r) => (clearTimeout(t), resolve(r)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      this.sock.write(Buffer.concat([rec, msg]));
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

async function getPort(host: string, prog: number, vers: number): Promise<number> {
  const c = await RpcConn.open(host, 111);
  try {
    const r = await c.call(PMAP, 2, 3, new W().u32(prog).u32(vers).u32(6).u32(0).buf(), 15_000);
    const port = r.u32();
    if (!port) throw new TStackError('STORAGE_ERROR', `NFS server ${host}: program ${prog} v${vers} is not registered with rpcbind`);
    return port;
  } finally {
    c.close();
  }
}

export class Nfs3Client {
  private constructor(
    private readonly conn: RpcConn,
    private readonly root: Buffer,
    private readonly where: string,
  ) {}

  static async connect(host: string, exportPath: string): Promise<Nfs3Client> {
    const mport = await getPort(host, MOUNT, 3);
    const m = await RpcConn.open(host, mport);
    let root: Buffer;
    try {
      const r = await m.call(MOUNT, 3, 1, new W().str(exportPath).buf(), 30_000);
      const st = r.u32();
      if (st !== 0) throw new TStackError('STORAGE_ERROR', `NFS mount of ${host}:${exportPath} refused (MNT3 status ${st})`);
      root = Buffer.from(r.opaque());
    } finally {
      m.close();
    }
    const nport = await getPort(host, NFS, 3).catch(() => 2049);
    return new Nfs3Client(await RpcConn.open(host, nport), root, `${host}:${exportPath}`);
  }

  close(): void {
    this.conn.close();
  }

  private split(rel: string): string[] {
    const parts = rel.split('/').filter((p) => p && p !== '.');
    if (parts.some((p) => p === '..')) throw new TStackError('INVALID_ARGUMENT', `NFS path with '..': ${rel}`);
    return parts;
  }

  private async lookup1(dir: Buffer, name: string): Promise<{ fh: Buffer; attr?: Attr }> {
    const r = await this.conn.call(NFS, 3, 3, new W().opaque(dir).str(name).buf());
    const st = r.u32();
    if (st !== 0) throw new NfsStatusError(st, `lookup ${name} in ${this.where}`);
    const fh = Buffer.from(r.opaque());
    const attr = postOpAttr(r);
    return attr ? { fh, attr } : { fh };
  }

  private async walk(parts: string[]): Promise<{ fh: Buffer; attr?: Attr }> {
    let cur: { fh: Buffer; attr?: Attr } = { fh: this.root };
    for (const p of parts) cur = await this.lookup1(cur.fh, p);
    return cur;
  }

  async getattr(rel: string): Promise<Attr> {
    const { fh, attr } = await this.walk(this.split(rel));
    if (attr) return attr;
    const r = await this.conn.call(NFS, 3, 1, new W().opaque(fh).buf());
    const st = r.u32();
    if (st !== 0) throw new NfsStatusError(st, `getattr ${rel}`);
    return fattr(r);
  }

  async mkdirp(rel: string): Promise<void> {
    let cur = this.root;
    for (const p of this.split(rel)) {
      const sattr = new W().u32(1).u32(0o755).u32(0).u32(0).u32(0).u32(0).u32(0).buf();
      const r = await this.conn.call(NFS, 3, 9, new W().opaque(cur).str(p).fixed(sattr).buf());
      const st = r.u32();
      if (st === 0) {
        const has = r.u32();
        if (has) {
          cur = Buffer.from(r.opaque());
          continue;
        }
      } else if (st !== 17) throw new NfsStatusError(st, `mkdir ${p}`);
      cur = (await this.lookup1(cur, p)).fh;
    }
  }

  private async parentOf(rel: string): Promise<{ dir: Buffer; name: string }> {
    const parts = this.split(rel);
    const name = parts.pop();
    if (!name) throw new TStackError('INVALID_ARGUMENT', 'NFS: the export root cannot be removed or renamed');
    return { dir: (await this.walk(parts)).fh, name };
  }

  /** Remove a file; absent is fine. */
  async remove(rel: string): Promise<void> {
    let p;
    try {
      p = await this.parentOf(rel);
    } catch (e) {
      if (e instanceof NfsStatusError && e.status === 2) return;
      throw e;
    }
    const r = await this.conn.call(NFS, 3, 12, new W().opaque(p.dir).str(p.name).buf());
    const st = r.u32();
    if (st !== 0 && st !== 2) throw new NfsStatusError(st, `remove ${rel}`);
  }

  async readdir(rel: string): Promise<string[]> {
    const { fh } = await this.walk(this.split(rel));
    const names: string[] = [];
    let cookie = 0n;
    let verf = Buffer.alloc(8);
    for (;;) {
      const r = await this.conn.call(NFS, 3, 16, new W().opaque(fh).u64(cookie).fixed(verf).u32(65536).buf());
      const st = r.u32();
      postOpAttr(r);
      if (st !== 0) throw new NfsStatusError(st, `readdir ${rel}`);
      verf = Buffer.from(r.fixed(8));
      while (r.u32()) {
        r.u64();
        const name = r.str();
        const c = r.u64();
        cookie = BigInt(c);
        if (name !== '.' && name !== '..') names.push(name);
      }
      if (r.u32()) return names;
    }
  }

  /** Remove a file or a whole directory tree; absent is fine. */
  async removeTree(rel: string): Promise<void> {
    let a: Attr;
    try {
      a = await this.getattr(rel);
    } catch (e) {
      if (e instanceof NfsStatusError && e.status === 2) return;
      throw e;
    }
    if (a.type !== 2) return this.remove(rel);
    for (const n of await this.readdir(rel)) await this.removeTree(`${rel}/${n}`);
    const p = await this.parentOf(rel);
    const r = await this.conn.call(NFS, 3, 13, new W().opaque(p.dir).str(p.name).buf());
    const st = r.u32();
    if (st !== 0 && st !== 2) throw new NfsStatusError(st, `rmdir ${rel}`);
  }

  async rename(from: string, to: string): Promise<void> {
    const a = await this.parentOf(from);
    const b = await this.parentOf(to);
    const r = await this.conn.call(NFS, 3, 14, new W().opaque(a.dir).str(a.name).opaque(b.dir).str(b.name).buf());
    const st = r.u32();
    if (st !== 0) throw new NfsStatusError(st, `rename ${from} -> ${to}`);
    wcc(r);
  }

  async fsstat(): Promise<{ total: number; free: number; available: number }> {
    const r = await this.conn.call(NFS, 3, 18, new W().opaque(this.root).buf());
    const st = r.u32();
    postOpAttr(r);
    if (st !== 0) throw new NfsStatusError(st, 'fsstat');
    return { total: r.u64(), free: r.u64(), available: r.u64() };
  }

  /** bytes allocated under rel (0 if absent) */
  async usage(rel: string): Promise<number> {
    let a: Attr;
    try {
      a = await this.getattr(rel);
    } catch (e) {
      if (e instanceof NfsStatusError && e.status === 2) return 0;
      throw e;
    }
    if (a.type !== 2) return a.used;
    let sum = 0;
    for (const n of await this.readdir(rel)) sum += await this.usage(`${rel}/${n}`);
    return sum;
  }
}
