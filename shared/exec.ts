// The only way tstack runs external programs: execFile with an argument array (never a shell
// string), a timeout, optional stdin, stderr kept in the error, and one log line per call.
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { TStackError } from './errors.js';
import { logger } from './log.js';

const log = logger('exec');

export interface ExecOptions {
  timeoutMs?: number;
  stdin?: string | Buffer;
  env?: Record<string, string>;
  cwd?: string;
  /** Exit codes that count as success (default [0]). */
  okCodes?: number[];
  /** Max bytes kept of stdout (default 64 MiB) and stderr (default 1 MiB). */
  maxStdout?: number;
  /** Error code to use on failure (default EXEC_FAILED). */
  errorCode?: string;
  /** Run inside this network namespace (`ip netns exec <ns> ...`). */
  netns?: string;
  /** Kill the program when this aborts (task timeout or cancel). */
  signal?: AbortSignal;
  /** Log a failure at debug level only (probes where failing is an expected answer). */
  quiet?: boolean;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
  durationMs: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_STDERR = 1 << 20;
const NETNS_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export async function exec(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (!cmd || cmd.includes('\0') || args.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    throw new TStackError('INVALID_ARGUMENT', `exec: bad command or argument for ${cmd}`);
  }
  let file = cmd;
  let argv = [...args];
  if (opts.netns !== undefined) {
    if (!NETNS_RE.test(opts.netns)) throw new TStackError('INVALID_ARGUMENT', `exec: bad netns name ${opts.netns}`);
    file = 'ip';
    argv = ['netns', 'exec', opts.netns, cmd, ...args];
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxStdout = opts.maxStdout ?? 64 << 20;
  const started = Date.now();
  const display = [file, ...argv].join(' ');

  return new Promise<ExecResult>((resolve, reject) => {
    let child;
    try {
      child = spawn(file, argv, {
        cwd: opts.cwd,
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    } catch (e) {
      reject(new TStackError(opts.errorCode ?? 'EXEC_FAILED', `${file}: cannot start: ${(e as Error).message}`, { command: display }));
      return;
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let timedOut = false;
    let settled = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    let aborted = false;
    const onAbort = (): void => {
      aborted = true;
      child.kill('SIGKILL');
    };
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (b: Buffer) => {
      if (outLen < maxStdout) out.push(b);
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errLen < MAX_STDERR) err.push(b);
      errLen += b.length;
    });
    child.stdin.on('error', () => undefined); // a program that exits without reading stdin
    if (opts.stdin !== undefined) child.stdin.end(opts.stdin);
    else child.stdin.end();

    const finish = (code: number | null, spawnErr?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      const durationMs = Date.now() - started;
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8').trim();
      const rc = code ?? -1;
      const ok = !spawnErr && !timedOut && (opts.okCodes ?? [0]).includes(rc);
      log.debug({ cmd: display, rc, durationMs }, 'exec');
      if (ok) {
        resolve({ stdout, stderr, code: rc, durationMs });
        return;
      }
      const details = { command: display, exitCode: rc, stderr: stderr.slice(-4000), durationMs };
      if (aborted) {
        reject(new TStackError('CANCELLED', `${file} was cancelled`, details));
      } else if (timedOut) {
        log.warn(details, 'exec timed out');
        reject(new TStackError('TIMEOUT', `${file} timed out after ${timeoutMs} ms`, details));
      } else if (spawnErr) {
        reject(new TStackError(opts.errorCode ?? 'EXEC_FAILED', `${file}: ${spawnErr.message}`, details));
      } else {
        if (opts.quiet) log.debug(details, 'exec failed');
        else log.info(details, 'exec failed');
        const first = stderr.split('\n').filter(Boolean).slice(-1)[0] ?? `exit code ${rc}`;
        reject(new TStackError(opts.errorCode ?? 'EXEC_FAILED', `${file} failed: ${first}`, details));
      }
    };
    child.on('error', (e) => finish(null, e));
    child.on('close', (code) => finish(code));
  });
}

/** exec() returning only trimmed stdout. */
export async function execOut(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<string> {
  return (await exec(cmd, args, opts)).stdout.trim();
}

/** True when the program exits 0; false on any failure (for probes like `ip link show x`). */
export async function execOk(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<boolean> {
  try {
    await exec(cmd, args, { quiet: true, ...opts });
    return true;
  } catch {
    return false;
  }
}

export interface StartOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Append the program's stdout and stderr to this file (default: discarded). */
  logFile?: string;
  /** Run inside this network namespace (`ip netns exec <ns> ...`). */
  netns?: string;
}

export interface RunningProcess {
  readonly pid: number;
  readonly command: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  readonly running: boolean;
  /** Send a signal to this process (only this PID). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after graceMs; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Start a long-running program (a daemon kept in the foreground: redis-server, dnsmasq -k,
 * an agent) with an argument array, never a shell. The caller owns the returned PID.
 */
export async function startProcess(cmd: string, args: readonly string[], opts: StartOptions = {}): Promise<RunningProcess> {
  if (!cmd || cmd.includes('\0') || args.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    throw new TStackError('INVALID_ARGUMENT', `startProcess: bad command or argument for ${cmd}`);
  }
  let file = cmd;
  let argv = [...args];
  if (opts.netns !== undefined) {
    if (!NETNS_RE.test(opts.netns)) throw new TStackError('INVALID_ARGUMENT', `startProcess: bad netns name ${opts.netns}`);
    file = 'ip';
    argv = ['netns', 'exec', opts.netns, cmd, ...args];
  }
  const display = [file, ...argv].join(' ');
  let out: number | 'ignore' = 'ignore';
  if (opts.logFile) out = openSync(opts.logFile, 'a', 0o644);
  const child = spawn(file, argv, {
    cwd: opts.cwd,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    stdio: ['ignore', out, out],
    detached: false,
  });
  if (typeof out === 'number') closeSync(out);
  let running = true;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      log.debug({ cmd: display, pid: child.pid, code, signal }, 'process exited');
      resolve({ code, signal });
    });
    child.once('error', () => {
      running = false;
      resolve({ code: -1, signal: null });
    });
  });
  // wait for spawn (or its failure) so a missing program is an error here, not later
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (e) => reject(new TStackError('EXEC_FAILED', `${file}: cannot start: ${e.message}`, { command: display })));
  });
  const pid = child.pid!;
  log.debug({ cmd: display, pid }, 'process started');
  return {
    pid,
    command: display,
    exited,
    get running() {
      return running;
    },
    kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (running) child.kill(signal);
    },
    async stop(graceMs = 5_000) {
      if (!running) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => {
        if (running) child.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}
