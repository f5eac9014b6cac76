// Start a real agent process (kvmagent, storageagent, vrouteragent) for an integration test:
//   node --import tsx <kind>/main.ts --listen 127.0.0.1:<free port> --data-dir <tmp> --token-file <tmp>/token
// and wait for GET /health.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess, type RunningProcess } from '../../shared/exec.js';
import { globalCleanup, type Cleanup } from './cleanup.js';
import { REPO_ROOT } from './guest.js';
import { freePort } from './ports.js';
import { tmpDir } from './tmp.js';

export { freePort } from './ports.js';

export type AgentKind = 'kvmagent' | 'storageagent' | 'vrouteragent';

export interface StartAgentOptions {
  cleanup?: Cleanup;
  /** Reuse a port / data dir (e.g. to restart an agent in place). */
  port?: number;
  dataDir?: string;
  controllerUrl?: string;
  logLevel?: string;
  /** More command-line flags. */
  args?: string[];
  env?: Record<string, string>;
  /** How long to wait for /health (default 60 s: tsx compiles on first start). */
  startTimeoutMs?: number;
}

export interface AgentProcess {
  kind: AgentKind;
  url: string;
  port: number;
  token: string;
  tokenFile: string;
  dataDir: string;
  logFile: string;
  pid: number;
  process: RunningProcess;
  /** SIGTERM (graceful), SIGKILL after 5 s. */
  stop(): Promise<void>;
  /** SIGKILL at once (a crash); resolves when it is gone. */
  kill9(): Promise<void>;
  /** The last lines of the agent's log. */
  logTail(lines?: number): string;
}

export async function startAgentProcess(kind: AgentKind, opts: StartAgentOptions = {}): Promise<AgentProcess> {
  return startAgentScript(kind, join(REPO_ROOT, kind, 'main.ts'), opts) as Promise<AgentProcess>;
}

/** Like startAgentProcess, for any agent entry script (e.g. a test fixture built on startAgent()). */
export async function startAgentScript(kind: string, script: string, opts: StartAgentOptions = {}): Promise<Omit<AgentProcess, 'kind'> & { kind: string }> {
  const cleanup = opts.cleanup ?? globalCleanup;
  const dataDir = opts.dataDir ?? (await tmpDir(kind, cleanup));
  const port = opts.port ?? (await freePort());
  const tokenFile = join(dataDir, 'token');
  const logFile = join(dataDir, `${kind}.log`);
  const args = ['--import', 'tsx', script, '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--token-file', tokenFile];
  if (opts.controllerUrl) args.push('--controller-url', opts.controllerUrl);
  if (opts.logLevel) args.push('--log-level', opts.logLevel);
  args.push(...(opts.args ?? []));
  const p = await startProcess(process.execPath, args, { cwd: REPO_ROOT, logFile, env: { TSTACK_LOG_LEVEL: opts.logLevel ?? process.env.TSTACK_LOG_LEVEL ?? 'info', ...(opts.env ?? {}) } });
  const stop = (): Promise<void> => p.stop(5_000);
  cleanup.add(stop, `${kind} pid ${p.pid}`);
  const logTail = (lines = 20): string => {
    try {
      return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (!p.running) throw new Error(`${kind} exited during start-up:\n${logTail()}`);
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${kind} did not answer /health within the start timeout:\n${logTail()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const token = readFileSync(tokenFile, 'utf8').trim();
  return {
    kind,
    url,
    port,
    token,
    tokenFile,
    dataDir,
    logFile,
    pid: p.pid,
    process: p,
    stop,
    kill9: async () => {
      p.kill('SIGKILL');
      await p.exited;
    },
    logTail,
  };
}
