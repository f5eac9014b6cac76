// One HTTP request with nothing smoothed over (fetch refuses TRACE, sets its own headers and
// cannot send broken bytes): any method, raw body bytes, exact headers.
import { request } from 'node:http';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The JSON body, when it is JSON. */
  json?: any;
  ms: number;
}

export function rawRequest(url: string, o: { method: string; path: string; headers?: Record<string, string>; body?: Buffer | string; timeoutMs?: number }): Promise<RawResponse> {
  const u = new URL(o.path, url);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.body !== undefined && headers['content-length'] === undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: o.method, headers, timeout: o.timeoutMs ?? 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json, ms: performance.now() - t0 });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${o.method} ${o.path}: no answer within ${o.timeoutMs ?? 30_000} ms`)));
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}
