// ftp:// source (anonymous or user:password) through basic-ftp, resumable with REST.
import { PassThrough } from 'node:stream';
import { Client, FTPError } from 'basic-ftp';
import { FatalDownloadError, redact, type Opened, type Source } from './types.js';
import { TStackError } from '../../shared/errors.js';

export class FtpSource implements Source {
  readonly display: string;
  private client?: Client;
  constructor(private readonly url: URL) {
    this.display = redact(url);
  }

  async open(offset: number, signal: AbortSignal): Promise<Opened> {
    this.client?.close();
    const client = new Client(60_000);
    this.client = client;
    const onAbort = (): void => client.close();
    signal.addEventListener('abort', onAbort, { once: true });
    const path = decodeURIComponent(this.url.pathname);
    let total: number | null;
    try {
      await client.access({
        host: this.url.hostname,
        port: this.url.port ? Number(this.url.port) : 21,
        user: this.url.username ? decodeURIComponent(this.url.username) : 'anonymous',
        password: this.url.username ? decodeURIComponent(this.url.password) : 'anonymous@',
        secure: false,
      });
      total = await client.size(path).catch(() => null);
    } catch (e) {
      signal.removeEventListener('abort', onAbort);
      client.close();
      if (e instanceof FTPError && (e.code === 530 || e.code === 550)) throw new FatalDownloadError(`${this.display}: ${e.message}`, { ftpCode: e.code });
      throw new TStackError('DOWNLOAD_FAILED', `${this.display}: ${(e as Error).message}`);
    }
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    client
      .downloadTo(out, path, offset)
      .then(() => out.end())
      .catch((e: Error) => {
        const fatal = e instanceof FTPError && (e.code === 550 || e.code === 530);
        out.destroy(fatal ? new FatalDownloadError(`${this.display}: ${e.message}`) : e);
      })
      .finally(() => {
        signal.removeEventListener('abort', onAbort);
        client.close();
      });
    return { stream: out, total, offset, close: () => client.close() };
  }

  async dispose(): Promise<void> {
    this.client?.close();
  }
}
