// Generic resumable download: open the source at the current offset, stream into the file
// (hashing what was written), and after an interruption reopen at the byte where it stopped.
// Progress goes to a callback at least once a second.
import { open, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TStackError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { FileSource } from './file.js';
import { FtpSource } from './ftp.js';
import { HttpSource } from './http.js';
import { BlockWriter } from './blocks.js';
import { InlineHasher, ThreadHasher, type BlockHasher } from './hash-thread.js';
import { SftpSource } from './sftp.js';
import { FatalDownloadError, redact, type Source, type SourceOptions } from './types.js';

export { redact, FatalDownloadError };

export interface ProgressSample {
  bytes: number;
  total: number | null;
  percent: number | null;
  /** bytes/s over the last interval */
  rate: number;
  stage: 'downloading' | 'retrying';
}

export interface DownloadOptions extends SourceOptions {
  signal: AbortSignal;
  retries?: number;
  md5?: boolean;
  sha256?: boolean;
  onProgress?: (p: ProgressSample) => void;
  progressIntervalMs?: number;
  log?: Logger;
  /** extra request headers (http) */
  headers?: Record<string, string>;
  /** fsync the file at the end (default true); false: the caller does (syncFile), e.g. while it checks the file */
  fsync?: boolean;
}

export interface DownloadResult {
  bytes: number;
  md5?: string;
  sha256?: string;
  /** how many times the transfer was resumed after an interruption */
  resumes: number;
}

export function sourceFor(url: string, o: SourceOptions & { headers?: Record<string, string> } = {}): Source {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TStackError('INVALID_ARGUMENT', `url: not a URL`, { field: 'url' });
  }
  switch (u.protocol) {
    case 'http:':
    case 'https:':
      return new HttpSource(u, o.headers);
    case 'ftp:':
      return new FtpSource(u);
    case 'sftp:':
      return new SftpSource(u, o.sshPrivateKey);
    case 'file:':
      if (u.host && u.host !== 'localhost') throw new TStackError('INVALID_ARGUMENT', 'url: file:// URLs name a file on this host (file:///path)', { field: 'url' });
      return new FileSource(u);
    default:
      throw new TStackError('INVALID_ARGUMENT', `url: unsupported scheme ${u.protocol} (http, https, ftp, sftp, file)`, { field: 'url' });
  }
}

/** Stream side of the block writer, for sources that hand out a Readable. */
function blockSink(w: BlockWriter): Writable {
  return new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      try {
        if (w.write(chunk)) cb();
        else w.ready().then(() => cb(), cb);
      } catch (e) {
        cb(e as Error);
      }
    },
  });
}

/** fsync a file written earlier (its dirty pages, whoever wrote them). */
export async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

/**
 * Download url into dest (created or truncated). On failure the partial file is removed
 * and the error says why; a cancelled download throws CANCELLED.
 */
export async function download(url: string, dest: string, o: DownloadOptions): Promise<DownloadResult> {
  const src = sourceFor(url, o);
  const retries = o.retries ?? 5;
  const fh = await open(dest, 'w', 0o644);
  const algos = [...(o.md5 ? ['md5'] : []), ...(o.sha256 ? ['sha256'] : [])];
  const newHasher = (): BlockHasher => (algos.length > 0 ? new ThreadHasher(algos) : new InlineHasher([]));
  let hasher = newHasher();
  /** bytes written and hashed (where a resume starts) */
  let bytes = 0;
  /** bytes arrived (progress; ahead of `bytes` by what is still buffered) */
  let received = 0;
  let total: number | null = null;
  let resumes = 0;
  let lastBytes = 0;
  let lastAt = Date.now();
  const sample = (stage: ProgressSample['stage']): void => {
    const now = Date.now();
    const dt = (now - lastAt) / 1000;
    const rate = dt > 0 ? Math.max(0, (received - lastBytes) / dt) : 0;
    lastBytes = received;
    lastAt = now;
    o.onProgress?.({ bytes: received, total, percent: total ? Math.min(100, Math.round((received / total) * 1000) / 10) : null, rate: Math.round(rate), stage });
  };
  const timer = setInterval(() => sample('downloading'), o.progressIntervalMs ?? 1000);
  let ok = false;
  try {
    sample('downloading');
    for (let attempt = 0; ; attempt++) {
      if (o.signal.aborted) throw new TStackError('CANCELLED', `download of ${src.display} cancelled`);
      try {
        const opened = await src.open(bytes, o.signal);
        if (opened.offset !== bytes) {
          // the server ignored the range: start over
          o.log?.info({ url: src.display, had: bytes }, 'server does not resume; restarting from 0');
          await fh.truncate(0);
          bytes = 0;
          received = 0;
          hasher.close();
          hasher = newHasher();
        }
        if (opened.total !== null) total = opened.total;
        // what arrived is written and hashed even when the transfer breaks: the resume starts after it
        const w = new BlockWriter(fh, bytes, hasher, (n) => (received += n));
        let broke: unknown;
        try {
          if (opened.pump) await opened.pump(w);
          else if (opened.stream) await pipeline(opened.stream, blockSink(w), { signal: o.signal });
        } catch (e) {
          broke = e;
        }
        opened.close?.();
        const written = await w.flush().then(
          () => undefined,
          (e: Error) => e,
        );
        bytes = w.pos;
        received = bytes;
        if (written) throw new FatalDownloadError(`writing ${dest}: ${written.message}`);
        if (broke !== undefined) throw broke;
        if (total !== null && bytes < total) throw new TStackError('DOWNLOAD_FAILED', `${src.display}: connection ended at byte ${bytes} of ${total}`);
        if (total !== null && bytes > total) throw new FatalDownloadError(`${src.display}: got ${bytes} bytes, more than the announced ${total}`);
        break;
      } catch (e) {
        if (o.signal.aborted) throw new TStackError('CANCELLED', `download of ${src.display} cancelled`);
        const err = e instanceof TStackError ? e : new TStackError('DOWNLOAD_FAILED', `${src.display}: ${(e as Error).message}`);
        if (e instanceof FatalDownloadError || attempt >= retries) {
          throw new TStackError('DOWNLOAD_FAILED', attempt > 0 ? `${err.message} (after ${attempt} retries)` : err.message, { ...(err.details ?? {}), url: src.display, bytes });
        }
        resumes++;
        o.log?.info({ url: src.display, bytes, attempt, err: err.message }, 'transfer interrupted; resuming');
        sample('retrying');
        await sleep(Math.min(500 * 2 ** attempt, 10_000), o.signal);
      }
    }
    const [digests] = await Promise.all([hasher.digest(), o.fsync !== false ? fh.sync() : undefined]);
    ok = true;
    sample('downloading'); // the final count; the caller reports verifying/done
    const r: DownloadResult = { bytes, resumes };
    if (o.md5) r.md5 = digests[0];
    if (o.sha256) r.sha256 = digests[algos.indexOf('sha256')];
    return r;
  } finally {
    clearInterval(timer);
    hasher.close();
    await fh.close().catch(() => undefined);
    await src.dispose?.().catch(() => undefined);
    if (!ok) await rm(dest, { force: true });
  }
}
