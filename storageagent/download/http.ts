// http(s):// source with Range resume and redirects. A plain-HTTP body is read straight off
// the socket into one reused buffer and handed to the block writer (raw-http.ts); node's client
// (https, chunked bodies) allocates a buffer per socket read, which cost more CPU than the
// hashing and the disk writes together.
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { FatalDownloadError, redact, type Opened, type Source } from './types.js';
import { TStackError } from '../../shared/errors.js';
import { rawGet, RECV_BUFFER } from './raw-http.js';

const MAX_REDIRECTS = 5;

export class HttpSource implements Source {
  readonly display: string;
  private agent: http.Agent;
  private sagent: https.Agent;
  /** the raw reader's socket buffer, kept across resumes */
  private recv: Buffer | undefined;
  constructor(
    private readonly url: URL,
    private readonly headers: Record<string, string> = {},
  ) {
    this.display = redact(url);
    this.agent = new http.Agent({ keepAlive: false });
    this.sagent = new https.Agent({ keepAlive: false });
  }

  async open(offset: number, signal: AbortSignal): Promise<Opened> {
    let url = this.url;
    // plain HTTP: the raw reader while the answer is a plain body (else node's client from there)
    for (let i = 0; url.protocol === 'http:' && i <= MAX_REDIRECTS; i++) {
      const r = await rawGet(url, this.headersFor(url, offset), signal, (this.recv ??= Buffer.allocUnsafeSlow(RECV_BUFFER))).catch((e: Error) => {
        throw e instanceof TStackError ? e : new TStackError('DOWNLOAD_FAILED', `${this.display}: ${e.message}`);
      });
      const s = r.status;
      if (s >= 300 && s < 400 && r.headers.location) {
        r.close();
        url = new URL(r.headers.location, url);
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FatalDownloadError(`redirect to unsupported URL ${redact(url)}`);
        continue;
      }
      const plain = (r.headers['transfer-encoding'] ?? 'identity') === 'identity' && (r.headers['content-encoding'] ?? 'identity') === 'identity';
      if (plain && s === 206) {
        const total = this.rangeTotal(r.headers['content-range'], offset, () => r.close());
        return { pump: r.pump, total, offset, close: r.close };
      }
      if (plain && s === 200) {
        const len = r.headers['content-length'];
        return { pump: r.pump, total: len !== undefined ? Number(len) : null, offset: 0, close: r.close };
      }
      r.close(); // an error status or a coded body: node's client asks again and says why
      break;
    }
    return this.openNode(url, offset, signal);
  }

  private rangeTotal(contentRange: string | string[] | undefined, offset: number, close: () => void): number | null {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(contentRange ?? ''));
    if (!m || Number(m[1]) !== offset) {
      close();
      throw new TStackError('DOWNLOAD_FAILED', `${this.display}: server answered a range request with a bad Content-Range (${contentRange})`);
    }
    return m[3] === '*' ? null : Number(m[3]);
  }

  private async openNode(start: URL, offset: number, signal: AbortSignal): Promise<Opened> {
    let url = start;
    for (let i = 0; i <= MAX_REDIRECTS; i++) {
      const res = await this.get(url, offset, signal);
      const s = res.statusCode ?? 0;
      if (s >= 300 && s < 400 && res.headers.location) {
        res.resume();
        url = new URL(res.headers.location, url);
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FatalDownloadError(`redirect to unsupported URL ${redact(url)}`);
        continue;
      }
      if (s === 206) {
        const total = this.rangeTotal(res.headers['content-range'], offset, () => res.destroy());
        return { stream: res, total, offset, close: () => res.destroy() };
      }
      if (s === 200) {
        const len = res.headers['content-length'];
        return { stream: res, total: len !== undefined ? Number(len) : null, offset: 0, close: () => res.destroy() };
      }
      res.resume();
      if (s === 416) throw new FatalDownloadError(`${this.display}: server refused the range request from byte ${offset} (HTTP 416); the file changed or shrank`);
      const msg = `${this.display}: HTTP ${s} ${res.statusMessage ?? ''}`.trim();
      if (s >= 400 && s < 500 && s !== 408 && s !== 429) throw new FatalDownloadError(msg, { httpStatus: s });
      throw new TStackError('DOWNLOAD_FAILED', msg, { httpStatus: s });
    }
    throw new FatalDownloadError(`${this.display}: too many redirects`);
  }

  private headersFor(url: URL, offset: number): Record<string, string> {
    const headers: Record<string, string> = { 'user-agent': 'tstack-storageagent', accept: '*/*', ...this.headers };
    if (url.username || url.password) {
      headers.authorization = 'Basic ' + Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
    }
    if (offset > 0) headers.range = `bytes=${offset}-`;
    return headers;
  }

  private get(url: URL, offset: number, signal: AbortSignal): Promise<IncomingMessage> {
    const mod = url.protocol === 'https:' ? https : http;
    const headers = this.headersFor(url, offset);
    return new Promise((resolve, reject) => {
      const req = mod.get(url, { headers, signal, agent: url.protocol === 'https:' ? this.sagent : this.agent, timeout: 60_000 }, resolve);
      req.on('timeout', () => req.destroy(new Error('no response within 60 s')));
      req.on('error', (e) => reject(new TStackError('DOWNLOAD_FAILED', `${this.display}: ${e.message}`)));
    });
  }

  async dispose(): Promise<void> {
    this.agent.destroy();
    this.sagent.destroy();
  }
}
