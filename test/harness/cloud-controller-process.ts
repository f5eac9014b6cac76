// A real controller with the host and cloud modules in a child process (cloud-controller-child.ts)
// on a given data dir (SQLite) and port: for tests that SIGKILL the controller mid-flow and start
// a fresh one on the same inventory (same port, so deployed agents keep reaching it).
//   const p = await cloudControllerProcess({ dataDir, adminPassword, port, hostOptions, env: { TSTACK_FAULT_PAUSE: 'volume-snapshot:take' } });
//   … p.kill9(); await cloudControllerProcess({ …same… });
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess } from '../../shared/exec.js';
import type { HostOptions } from '../../controller/host/service.js';
import { ApiClient } from './controller.js';
import { until } from './assert.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface CloudControllerProcess {
  url: string;
  pid: number;
  login(): Promise<ApiClient>;
  logTail(lines?: number): string;
  /** SIGKILL, resolves once it is gone. */
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/** `shared`: a Redis inventory shared with other controllers, and their takeover timings. */
export interface SharedStore {
  store: string;
  storePrefix: string;
  jobStaleMs?: number;
  flowLeaseTtlMs?: number;
  ha?: false;
}

export async function cloudControllerProcess(o: { dataDir: string; adminPassword: string; port: number; hostOptions: HostOptions; env?: Record<string, string>; shared?: SharedStore }): Promise<CloudControllerProcess> {
  const logFile = join(o.dataDir, 'controller-process.log');
  const p = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'test/harness/cloud-controller-child.ts'), JSON.stringify({ dataDir: o.dataDir, adminPassword: o.adminPassword, port: o.port, hostOptions: o.hostOptions, ...(o.shared ?? {}) })], {
    cwd: ROOT,
    logFile,
    env: { TSTACK_LOG_LEVEL: process.env.TSTACK_LOG_LEVEL ?? 'warn', TSTACK_FAULT_PAUSE: '', ...(o.env ?? {}) },
  });
  const logTail = (lines = 30): string => {
    try {
      return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const urlFile = join(o.dataDir, `url.${p.pid}`);
  const deadline = Date.now() + 120_000;
  while (!existsSync(urlFile)) {
    if (!p.running) throw new Error(`controller exited during start-up:\n${logTail()}`);
    if (Date.now() > deadline) {
      await p.stop(10_000);
      throw new Error(`controller did not start within 120 s:\n${logTail()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const url = readFileSync(urlFile, 'utf8').trim();
  rmSync(urlFile, { force: true });
  return {
    url,
    pid: p.pid,
    logTail,
    async login() {
      const r = await new ApiClient(url).post('/v1/sessions', { accountName: 'admin', password: o.adminPassword });
      if (r.status !== 200) throw new Error(`login admin: ${r.status} ${JSON.stringify(r.body)}`);
      return new ApiClient(url, r.body.token);
    },
    async kill9() {
      p.kill('SIGKILL');
      await p.exited;
    },
    stop: () => p.stop(10_000),
  };
}

/** Controller A of a two-controller test, set to freeze at a fault point (TSTACK_FAULT_PAUSE). */
export interface PausingController {
  proc: CloudControllerProcess;
  api: ApiClient;
  /** Resolves once A froze at its point. */
  frozen(timeoutMs?: number): Promise<void>;
  /** SIGKILL A (frozen or not) and forget the point it froze at. */
  kill9(): Promise<void>;
}

/**
 * A controller in its own process on a shared (Redis) inventory, frozen by the first operation
 * that reaches `point`; registered with `cleanup`. Its data dir is `dataDir` (a fresh tmp dir).
 */
export async function pausingControllerProcess(o: { point: string; dataDir: string; adminPassword: string; port: number; hostOptions: HostOptions; shared: SharedStore; cleanup: { add(fn: () => unknown, what: string): void } }): Promise<PausingController> {
  const pauseFile = join(o.dataDir, 'paused');
  const proc = await cloudControllerProcess({
    dataDir: o.dataDir,
    adminPassword: o.adminPassword,
    port: o.port,
    hostOptions: o.hostOptions,
    env: { TSTACK_FAULT_PAUSE: o.point, TSTACK_FAULT_PAUSE_FILE: pauseFile },
    shared: o.shared,
  });
  o.cleanup.add(() => proc.stop(), `controller A pid ${proc.pid}`);
  const api = await proc.login();
  return {
    proc,
    api,
    async frozen(timeoutMs = 60_000) {
      await until(`A frozen at ${o.point}`, () => existsSync(pauseFile) && readFileSync(pauseFile, 'utf8').trim() === o.point, timeoutMs, 50);
    },
    async kill9() {
      await proc.kill9();
      rmSync(pauseFile, { force: true });
    },
  };
}
