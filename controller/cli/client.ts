// The CLI's HTTP client: JSON in and out, API errors turned into CliErrors with exit codes,
// and job polling (with a progress bar on a terminal).
import cliProgress from 'cli-progress';
import { CliError, Exit, exitCodeOfStatus } from './exit.js';

export interface Job {
  uuid: string;
  state: 'Running' | 'Succeeded' | 'Failed';
  progress?: number;
  message?: string;
  result?: unknown;
  error?: { code: string; message: string; field?: string };
}

export class Api {
  constructor(
    readonly url: string,
    readonly token?: string,
  ) {}

  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.url + path, { method, headers, body: body === undefined ? null : JSON.stringify(body), signal: AbortSignal.timeout(24 * 3600_000) });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(`cannot reach the controller at ${this.url}: ${cause?.code ?? cause?.message ?? (e as Error).message} (set --url or TSTACK_URL)`, Exit.UNREACHABLE);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (res.status >= 400) {
      const b = (parsed ?? {}) as { code?: string; message?: string; field?: string };
      let msg = b.message ?? `HTTP ${res.status}`;
      if (res.status === 401) msg += this.token ? ' (run: tstack login)' : ' — not logged in (run: tstack login)';
      throw new CliError(msg, exitCodeOfStatus(res.status), b.code, b.field);
    }
    return { status: res.status, body: parsed as T };
  }

  /** Poll a job until it ends; a progress bar on stderr when it is a terminal. */
  async waitJob(jobUuid: string, o: { timeoutMs?: number; quiet?: boolean; label?: string } = {}): Promise<Job> {
    const deadline = Date.now() + (o.timeoutMs ?? 24 * 3600_000);
    const tty = process.stderr.isTTY && !o.quiet;
    const bar = tty ? new cliProgress.SingleBar({ format: `${o.label ?? 'job'} [{bar}] {percentage}% {msg}`, stream: process.stderr, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : undefined;
    bar?.start(100, 0, { msg: '' });
    try {
      let delay = 200;
      for (;;) {
        const j = (await this.call<Job>('GET', `/v1/jobs/${jobUuid}`)).body;
        bar?.update(j.progress ?? 0, { msg: j.message ?? '' });
        if (j.state !== 'Running') {
          bar?.update(j.state === 'Succeeded' ? 100 : (j.progress ?? 0));
          return j;
        }
        if (Date.now() >= deadline) throw new CliError(`job ${jobUuid} is still running (progress ${j.progress ?? 0}%); check it with: tstack job show ${jobUuid}`, Exit.TIMEOUT);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 1.5, 1000);
      }
    } finally {
      bar?.stop();
    }
  }
}
