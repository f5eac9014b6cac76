// A real controller in a child process (see controller-child.ts), with the same client helpers
// as testController(): for tests that measure the server (latency under load, fuzzing) and must
// not share its event loop.
//   const c = await controllerProcess(cleanup, { store: redis.url, storePrefix: `${runId()}:x:` });
//   const admin = await c.login('admin', c.adminPassword);
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess } from '../../shared/exec.js';
import { globalCleanup, type Cleanup } from './cleanup.js';
import { tmpDir, runId } from './tmp.js';
import { ApiClient, TEST_ADMIN_PASSWORD } from './controller.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ControllerProcess {
  url: string;
  pid: number;
  dataDir: string;
  adminPassword: string;
  anon: ApiClient;
  login(accountName: string, password: string): Promise<ApiClient>;
  account(name: string, password?: string): Promise<ApiClient & { accountUuid: string }>;
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

export async function controllerProcess(cleanup: Cleanup = globalCleanup, o: { store?: string; storePrefix?: string; maxInFlight?: number } = {}): Promise<ControllerProcess> {
  const dataDir = await tmpDir('ctlp', cleanup);
  const logFile = join(dataDir, 'controller.log');
  const opts = { ...o, dataDir, adminPassword: TEST_ADMIN_PASSWORD };
  const p = await startProcess(process.execPath, ['--import', 'tsx', join(ROOT, 'test/harness/controller-child.ts'), JSON.stringify(opts)], {
    cwd: ROOT,
    logFile,
    env: { TSTACK_LOG_LEVEL: process.env.TSTACK_LOG_LEVEL ?? 'warn' },
  });
  const stop = (): Promise<void> => p.stop(10_000);
  cleanup.add(stop, `controller pid ${p.pid}`);
  const logTail = (lines = 30): string => {
    try {
      return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  };
  const urlFile = join(dataDir, 'url');
  const deadline = Date.now() + 120_000;
  while (!existsSync(urlFile)) {
    if (!p.running) throw new Error(`controller exited during start-up:\n${logTail()}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`controller did not start within 120 s:\n${logTail()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const url = readFileSync(urlFile, 'utf8').trim();
  const login = async (accountName: string, password: string): Promise<ApiClient> => {
    const r = await new ApiClient(url).post('/v1/sessions', { accountName, password });
    if (r.status !== 200) throw new Error(`login ${accountName}: ${r.status} ${JSON.stringify(r.body)}`);
    return new ApiClient(url, r.body.token);
  };
  return {
    url,
    pid: p.pid,
    dataDir,
    adminPassword: TEST_ADMIN_PASSWORD,
    anon: new ApiClient(url),
    login,
    logTail,
    stop,
    async account(name: string, password = 'account-pw-123') {
      const admin = await login('admin', TEST_ADMIN_PASSWORD);
      const r = await admin.post('/v1/accounts', { name: `${runId()}-${name}`, password });
      if (r.status !== 201) throw new Error(`create account ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      const cl = await login(`${runId()}-${name}`, password);
      return Object.assign(cl, { accountUuid: r.body.uuid as string });
    },
  };
}
