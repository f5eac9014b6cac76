// sftp://user[:password]@host[:port]/path through ssh2, with a password or a private key;
// resumable (reads from an offset). Host keys are not pinned (the URL is given by an admin).
import { Client, type SFTPWrapper } from 'ssh2';
import { FatalDownloadError, redact, type Opened, type Source } from './types.js';
import { TStackError } from '../../shared/errors.js';

export class SftpSource implements Source {
  readonly display: string;
  private conn?: Client;
  constructor(
    private readonly url: URL,
    private readonly privateKey?: string,
  ) {
    this.display = redact(url);
    if (!url.username) throw new FatalDownloadError(`${this.display}: sftp URLs need a user name (sftp://user@host/path)`);
    if (!url.password && !privateKey) throw new FatalDownloadError(`${this.display}: sftp needs a password in the URL or sshPrivateKey`);
  }

  private connect(signal: AbortSignal): Promise<{ conn: Client; sftp: SFTPWrapper }> {
    return new Promise((resolve, reject) => {
      const conn = new Client();
      let done = false;
      const fail = (e: Error): void => {
        if (done) return;
        done = true;
        conn.end();
        const auth = /authentication/i.test(e.message);
        reject(auth ? new FatalDownloadError(`${this.display}: ${e.message}`) : new TStackError('DOWNLOAD_FAILED', `${this.display}: ${e.message}`));
      };
      signal.addEventListener('abort', () => fail(new Error('cancelled')), { once: true });
      conn.once('ready', () => {
        conn.sftp((err, sftp) => {
          if (err) return fail(err);
          done = true;
          resolve({ conn, sftp });
        });
      });
      conn.once('error', fail);
      conn.connect({
        host: this.url.hostname,
        port: this.url.port ? Number(this.url.port) : 22,
        username: decodeURIComponent(this.url.username),
        ...(this.url.password ? { password: decodeURIComponent(this.url.password) } : {}),
        ...(this.privateKey ? { privateKey: this.privateKey } : {}),
        readyTimeout: 30_000,
        keepaliveInterval: 10_000,
      });
    });
  }

  async open(offset: number, signal: AbortSignal): Promise<Opened> {
    this.conn?.end();
    const { conn, sftp } = await this.connect(signal);
    this.conn = conn;
    const path = decodeURIComponent(this.url.pathname);
    const size = await new Promise<number>((resolve, reject) =>
      sftp.stat(path, (err, st) => (err ? reject(new FatalDownloadError(`${this.display}: ${err.message}`)) : resolve(st.size))),
    ).catch((e: Error) => {
      conn.end();
      throw e;
    });
    const stream = sftp.createReadStream(path, { start: offset, highWaterMark: 256 * 1024 });
    stream.once('close', () => conn.end());
    conn.once('close', () => stream.destroy(new Error('ssh connection closed')));
    signal.addEventListener('abort', () => conn.end(), { once: true });
    return { stream, total: size, offset, close: () => conn.end() };
  }

  async dispose(): Promise<void> {
    this.conn?.end();
  }
}
