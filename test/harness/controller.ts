// A real controller (real SQLite file, real HTTP) started in-process for a test, plus a
// tiny typed HTTP client.
//   const c = await testController(cleanup);             // admin password 'admin-secret-pw'
//   const admin = await c.login('admin', c.adminPassword);
//   const r = await admin.post('/v1/zones', { name: 'z1' });   // { status, body, headers }
// No feature modules by default (pass `modules: builtinModules()` for hosts, storage…).
import { join } from 'node:path';
import { globalCleanup, type Cleanup } from './cleanup.js';
import { tmpDir, runId } from './tmp.js';
import { startController, type ControllerOptions, type RunningController } from '../../controller/main.js';

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export class ApiClient {
  constructor(
    readonly url: string,
    readonly token?: string,
  ) {}

  async req<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse<T>> {
    const h: Record<string, string> = { ...headers };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      h['content-type'] ??= 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(this.url + path, { method, headers: h, body: payload ?? null });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  get = <T = any>(p: string) => this.req<T>('GET', p);
  post = <T = any>(p: string, b?: unknown) => this.req<T>('POST', p, b ?? {});
  put = <T = any>(p: string, b?: unknown) => this.req<T>('PUT', p, b ?? {});
  patch = <T = any>(p: string, b?: unknown) => this.req<T>('PATCH', p, b ?? {});
  del = <T = any>(p: string) => this.req<T>('DELETE', p);
}

export interface TestController extends RunningController {
  dataDir: string;
  adminPassword: string;
  anon: ApiClient;
  login(accountName: string, password: string): Promise<ApiClient>;
  /** Admin creates a normal account and logs it in. */
  account(name: string, password?: string): Promise<ApiClient & { accountUuid: string }>;
  /** Stop (and keep the data dir for a restart). */
  stop(): Promise<void>;
}

export const TEST_ADMIN_PASSWORD = 'admin-secret-pw';

export async function testController(cleanup: Cleanup = globalCleanup, o: Partial<ControllerOptions> & { dataDir?: string } = {}): Promise<TestController> {
  const dataDir = o.dataDir ?? (await tmpDir('ctl'));
  const adminPassword = o.adminPassword ?? TEST_ADMIN_PASSWORD;
  const c = await startController({ listenHost: '127.0.0.1', listenPort: 0, modules: [], ...o, dataDir, adminPassword });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await c.close();
  };
  cleanup.add(stop, `controller ${c.url}`);
  const login = async (accountName: string, password: string): Promise<ApiClient> => {
    const r = await new ApiClient(c.url).post('/v1/sessions', { accountName, password });
    if (r.status !== 200) throw new Error(`login ${accountName}: ${r.status} ${JSON.stringify(r.body)}`);
    return new ApiClient(c.url, r.body.token);
  };
  return Object.assign(c, {
    dataDir,
    adminPassword,
    anon: new ApiClient(c.url),
    login,
    stop,
    async account(name: string, password = 'account-pw-123') {
      const admin = await login('admin', adminPassword);
      const r = await admin.post('/v1/accounts', { name: `${runId()}-${name}`, password });
      if (r.status !== 201) throw new Error(`create account ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      const cl = await login(`${runId()}-${name}`, password);
      return Object.assign(cl, { accountUuid: r.body.uuid as string });
    },
  });
}

export const dbPath = (dataDir: string): string => join(dataDir, 'inventory.db');
