// A plain-HTTP/1.1 GET whose body is read off the socket straight into the download's blocks
// (net's `onread` with a buffer chosen before each read): no buffer allocated per read, no copy,
// no parser in between.
// Only what a download needs: one request per connection (Connection: close), the head parsed
// here, a body delimited by Content-Length or by the end of the connection. Anything else
// (chunked or compressed bodies) is left to node's client by the caller.
import net from 'node:net';
import type { BlockWriter } from './blocks.js';

/** socket read buffer: large reads, few callbacks */
export const RECV_BUFFER = 1 << 20;
const MAX_HEAD = 64 * 1024;
const IDLE_MS = 60_000;

export interface RawResponse {
  status: number;
  /** header names in lower case; repeated headers joined with ", " */
  headers: Record<string, string>;
  /** read the body into w; resolves at its end or when the connection ends early (the caller compares counts) */
  pump: (w: BlockWriter) => Promise<void>;
  close: () => void;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

function requestHead(url: URL, headers: Record<string, string>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`];
  for (const [k, v] of Object.entries({ ...headers, connection: 'close' })) {
    // a CR or LF in a value would start a header of its own
    if (!TOKEN.test(k) || /[\r\n]/.test(v)) throw new Error(`bad request header ${JSON.stringify(k)}`);
    lines.push(`${k}: ${v}`);
  }
  return lines.join('\r\n') + '\r\n\r\n';
}

function parseHead(head: string): { status: number; headers: Record<string, string> } {
  const [statusLine, ...rest] = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine ?? '');
  if (!m) throw new Error(`not an HTTP/1.x response: ${JSON.stringify((statusLine ?? '').slice(0, 60))}`);
  const headers: Record<string, string> = {};
  for (const l of rest) {
    const i = l.indexOf(':');
    if (i <= 0) throw new Error(`bad response header line ${JSON.stringify(l.slice(0, 60))}`);
    const k = l.slice(0, i).trim().toLowerCase();
    const v = l.slice(i + 1).trim();
    headers[k] = headers[k] !== undefined ? `${headers[k]}, ${v}` : v;
  }
  const len = headers['content-length'];
  if (len !== undefined && !/^\d+$/.test(len)) throw new Error(`bad Content-Length ${JSON.stringify(len)}`);
  return { status: Number(m[1]), headers };
}

/**
 * Send the request and read the response head. The connection then waits (not reading) until
 * pump() or close(). `recv` is the socket's read buffer; it is reused, never kept.
 */
export function rawGet(url: URL, headers: Record<string, string>, signal: AbortSignal, recv: Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let head: Buffer | undefined = Buffer.alloc(0);
    /** body bytes that came in with the head (copied out of recv) */
    let early: Buffer | undefined;
    /** takes body bytes while pumping (copied from b, or already read into the writer's block); false = stop reading for now */
    let sink: ((b: Buffer | undefined, n: number) => boolean) | undefined;
    /** the writer reads go into, while pumping */
    let reading: BlockWriter | undefined;
    let target: Uint8Array | undefined;
    /** settles the pending step (head or pump) */
    let settle: ((e?: Error) => void) | undefined;
    let finished = false;

    const onAbort = (): void => void socket.destroy(new Error('cancelled'));
    const socket = net.connect({
      host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: Number(url.port || 80),
      onread: {
        // where the next read lands: the writer's current block while pumping, else recv
        buffer: (): Uint8Array => (target = reading?.space() ?? recv),
        callback: (n: number, buf: Uint8Array): boolean => {
          if (buf === target && target !== recv) return sink ? sink(undefined, n) : false;
          const data = Buffer.from(buf.buffer, buf.byteOffset, n);
          if (head !== undefined) {
            head = Buffer.concat([head, data]);
            const end = head.indexOf('\r\n\r\n');
            // (a whole head can come in one read, so its size is checked when it is complete too)
            if (end < 0 ? head.length > MAX_HEAD : end > MAX_HEAD) {
              socket.destroy(new Error(`response head larger than ${MAX_HEAD} bytes`));
              return false;
            }
            if (end < 0) return true;
            let parsed: ReturnType<typeof parseHead>;
            try {
              parsed = parseHead(head.subarray(0, end).toString('latin1'));
            } catch (e) {
              socket.destroy(e as Error);
              return false;
            }
            early = head.subarray(end + 4);
            head = undefined;
            settle = undefined;
            resolve(response(parsed.status, parsed.headers));
            return false; // wait for pump()
          }
          return sink ? sink(data, n) : false;
        },
      },
    });
    socket.setNoDelay(true);
    socket.setTimeout(IDLE_MS, () => socket.destroy(new Error(`no data for ${IDLE_MS / 1000} s`)));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => socket.write(requestHead(url, headers)));
    socket.resume(); // flowing, so that the end of the stream is reported
    settle = (e) => reject(e ?? new Error('connection closed before the response head'));
    const ended = (e?: Error): void => {
      if (finished) return;
      finished = true;
      signal.removeEventListener('abort', onAbort);
      const s = settle;
      settle = undefined;
      s?.(e);
    };
    socket.once('error', (e) => ended(e));
    socket.once('end', () => ended());
    socket.once('close', () => ended());

    const close = (): void => {
      finished = true;
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
    };

    function response(status: number, hdrs: Record<string, string>): RawResponse {
      const limit = hdrs['content-length'] !== undefined ? Number(hdrs['content-length']) : Infinity;
      let got = 0;
      const pump = (w: BlockWriter): Promise<void> =>
        new Promise<void>((res, rej) => {
          let done = false;
          const finish = (e?: Error): void => {
            if (done) return;
            done = true;
            reading = undefined; // no read may land in the writer's blocks any more
            if (e) rej(e);
            else res();
          };
          // read on, or end here when the connection already ended (the caller compares counts)
          const next = (): void => (finished ? finish() : void socket.resume());
          sink = (b, n) => {
            if (done) return false;
            const take = Math.min(n, limit - got);
            got += take;
            let more: boolean;
            try {
              more = b ? w.write(b.subarray(0, take)) : w.commit(take);
            } catch (e) {
              finish(e as Error);
              close();
              return false;
            }
            if (got >= limit) {
              finish();
              close();
              return false;
            }
            if (!more) {
              w.ready().then(next, (e: Error) => (finish(e), close()));
              return false;
            }
            return true;
          };
          settle = (e) => finish(e);
          const first = early;
          early = undefined;
          if (limit === 0) return (finish(), close());
          reading = w;
          if (first && first.length > 0 && !sink(first, first.length)) return;
          if (!done) next();
        });
      return { status, headers: hdrs, pump, close };
    }
  });
}
