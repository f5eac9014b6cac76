// The RFB (VNC) handshakes the console proxy does itself: it authenticates to the VM's VNC
// server with the VM's console password (VNC authentication, RFC 6143 §7.2.2), and offers the
// browser only "None" — the user never sees or types the password.
//   upstream (VNC server)                 proxy                 browser (noVNC)
//   "RFB 003.008\n"  ───────────────────▶
//                    ◀─────────────────── "RFB 003.008\n"
//   [n, types…]      ───────────────────▶
//                    ◀─────────────────── 2 (VNC auth) | 1 (None)
//   challenge(16)    ───────────────────▶ (VNC auth only)
//                    ◀─────────────────── DES(challenge)
//   result u32 = 0   ───────────────────▶
//                                          "RFB 003.008\n"  ─────────▶
//                                                           ◀───────── client version
//                                          [1, 1]           ─────────▶
//                                                           ◀───────── 1
//                                          u32 0            ─────────▶
//   then both byte streams are piped unchanged (ClientInit onward).
import { createCipheriv } from 'node:crypto';
import { TStackError } from '../../shared/errors.js';

/** Bytes arriving in chunks, read in exact sizes. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private size = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private closed: Error | undefined;

  push(b: Buffer): void {
    if (!b.length) return;
    this.chunks.push(b);
    this.size += b.length;
    this.wake();
  }

  close(err: Error): void {
    this.closed ??= err;
    const w = this.waiter;
    if (w && this.size < w.n) {
      this.waiter = undefined;
      w.reject(err);
    }
  }

  read(n: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('ByteQueue: one read at a time'));
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.wake();
      if (this.waiter && this.closed) {
        this.waiter = undefined;
        reject(this.closed);
      }
    });
  }

  /** Whatever is buffered now (after the handshake: bytes to forward). */
  drain(): Buffer {
    const b = Buffer.concat(this.chunks);
    this.chunks = [];
    this.size = 0;
    return b;
  }

  private wake(): void {
    const w = this.waiter;
    if (!w || this.size < w.n) return;
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > w.n ? [all.subarray(w.n)] : [];
    this.size = all.length - w.n;
    this.waiter = undefined;
    w.resolve(all.subarray(0, w.n));
  }
}

const VERSION = Buffer.from('RFB 003.008\n', 'latin1');
const VERSION_RE = /^RFB \d{3}\.\d{3}\n$/;

/** VNC authentication's response: DES of the challenge, the key being the password with each byte's bits reversed. */
export function vncAuthResponse(password: string, challenge: Buffer): Buffer {
  const key = Buffer.alloc(8);
  Buffer.from(password, 'latin1').copy(key, 0, 0, 8);
  for (let i = 0; i < 8; i++) {
    let b = key[i]!;
    let r = 0;
    for (let j = 0; j < 8; j++) {
      r = (r << 1) | (b & 1);
      b >>= 1;
    }
    key[i] = r;
  }
  // single DES through 3DES with K1=K2=K3 (OpenSSL 3 keeps plain DES in the legacy provider)
  const c = createCipheriv('des-ede3-ecb', Buffer.concat([key, key, key]), null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(challenge), c.final()]);
}

async function reason(q: ByteQueue): Promise<string> {
  const len = (await q.read(4)).readUInt32BE(0);
  return (await q.read(Math.min(len, 4096))).toString('utf8');
}

/** Authenticate to a VNC server (RFB 3.8). `password` undefined: the server must offer None. */
export async function authenticateUpstream(q: ByteQueue, write: (b: Buffer) => void, password: string | undefined): Promise<void> {
  const v = (await q.read(12)).toString('latin1');
  if (!VERSION_RE.test(v)) throw new TStackError('BAD_GATEWAY', `console: the VNC server did not speak RFB (${JSON.stringify(v.slice(0, 12))})`);
  if (v < 'RFB 003.008\n') throw new TStackError('BAD_GATEWAY', `console: the VNC server speaks ${v.trim()}, the proxy needs RFB 3.8`);
  write(VERSION);
  const n = (await q.read(1))[0]!;
  if (n === 0) throw new TStackError('BAD_GATEWAY', `console: the VNC server refused: ${await reason(q)}`);
  const types = [...(await q.read(n))];
  if (password !== undefined && types.includes(2)) {
    write(Buffer.from([2]));
    write(vncAuthResponse(password, await q.read(16)));
  } else if (types.includes(1)) {
    write(Buffer.from([1]));
  } else {
    throw new TStackError('BAD_GATEWAY', `console: no usable VNC security type (server offers ${types.join(',')}${password === undefined ? '; the VM has no console password' : ''})`);
  }
  const result = (await q.read(4)).readUInt32BE(0);
  if (result !== 0) throw new TStackError('BAD_GATEWAY', `console: VNC authentication failed: ${await reason(q).catch(() => 'no reason given')}`);
}

/** Be a VNC server offering only None to the browser (RFB 3.8; 3.3/3.7 clients are refused). */
export async function greetDownstream(q: ByteQueue, write: (b: Buffer) => void): Promise<void> {
  write(VERSION);
  const v = (await q.read(12)).toString('latin1');
  if (v !== 'RFB 003.008\n') {
    throw new TStackError('INVALID_ARGUMENT', `console: the client speaks ${JSON.stringify(v)}, this proxy RFB 3.8 only`);
  }
  write(Buffer.from([1, 1]));
  const chosen = (await q.read(1))[0];
  if (chosen !== 1) throw new TStackError('INVALID_ARGUMENT', `console: the client chose security type ${String(chosen)}, offered was 1 (None)`);
  const ok = Buffer.alloc(4);
  write(ok);
}
