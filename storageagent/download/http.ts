// http(s):// source with Range resume and redirects.
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { FatalDownloadError, redact, type Opened, type Source } from './types.js';
import { TStackError } from '../../shared/errors.js';

const MAX_REDIRECTS = 5;

export class HttpSource implements Source {
  readonly display: string;
  private agent: http.Agent;
  private sagent: https.Agent;
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
        const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
        if (!m || Number(m[1]) !== offset) {
          res.destroy();
          throw new TStackError('DOWNLOAD_FAILED', `${this.display}: server answered a range request with a bad Content-Range (${res.headers['content-range']})`);
        }
        const total = m[3] === '*' ? null : Number(m[3]);
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

  private get(url: URL, offset: number, signal: AbortSignal): Promise<IncomingMessage> {
    const mod = url.protocol === 'https:' ? https : http;
    const headers: Record<string, string> = { 'user-agent': 'tstack-storageagent', accept: '*/*', ...this.headers };
    if (url.username || url.password) {
      headers.authorization = 'Basic ' + Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64');
    }
    if (offset > 0) headers.range = `bytes=${offset}-`;
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
