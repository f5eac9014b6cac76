// One HTTP request with nothing smoothed over (fetch refuses TRACE, sets its own headers and
// cannot send broken bytes): any method, raw body bytes, exact headers.
//
// `timeoutMs` bounds the whole exchange, not the gaps between bytes: a response that keeps
// trickling (an event stream's keep-alives) must end in a finding, never in a hang. An event
// stream (text/event-stream, e.g. GET /v1/events) never ends by design: it counts as answered
// once its head and first bytes arrive, and is then closed (`stream: true`).
import { request } from 'node:http';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The JSON body, when it is JSON. */
  json?: any;
  ms: number;
  /** An event stream, closed by us after its first bytes. */
  stream?: boolean;
}

export function rawRequest(url: string, o: { method: string; path: string; headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number }): Promise<RawResponse> {
  const u = new URL(o.path, url);
  const t0 = performance.now();
  const limit = o.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.body !== undefined && headers['content-length'] === undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
    // a fresh connection per request (agent: false): no pooled socket the server closed meanwhile
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: o.method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const done = (stream: boolean): void => {
        clearTimeout(deadline);
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text && !stream ? JSON.parse(text) : undefined;
        } catch {
          /* not JSON */
        }
        const r: RawResponse = { status: res.statusCode ?? 0, headers: res.headers, text, json, ms: performance.now() - t0 };
        if (stream) r.stream = true;
        resolve(r);
      };
      const isStream = /^text\/event-stream\b/i.test(String(res.headers['content-type'] ?? ''));
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        if (isStream) {
          done(true);
          req.destroy();
        }
      });
      res.on('end', () => done(false));
      res.on('error', (e) => {
        clearTimeout(deadline);
        reject(e);
      });
    });
    const deadline = setTimeout(() => req.destroy(new Error(`${o.method} ${o.path.slice(0, 200)}: no complete answer within ${limit} ms`)), limit);
    req.on('error', (e) => {
      clearTimeout(deadline);
      reject(e);
    });
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}
