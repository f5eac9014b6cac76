// Entry point of cloudControllerProcess() (cloud-controller-process.ts): a real controller with
// the host and cloud modules in its own process (SQLite under dataDir), so that a test can
// SIGKILL it in the middle of a flow and start it again on the same inventory. Options come as
// JSON in argv[2]; the URL is written to <dataDir>/url.<pid> once listening.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startController } from '../../controller/main.js';
import { cloudModule } from '../../controller/cloud/install.js';
import type { HostOptions } from '../../controller/host/service.js';

const o = JSON.parse(process.argv[2] ?? '{}') as { dataDir: string; adminPassword: string; port: number; hostOptions: HostOptions; store?: string; storePrefix?: string; jobStaleMs?: number; flowLeaseTtlMs?: number; ha?: false };
const c = await startController({
  dataDir: o.dataDir,
  adminPassword: o.adminPassword,
  listenHost: '127.0.0.1',
  listenPort: o.port,
  // a shared (Redis) inventory and short takeover timings: several controllers, one of them killed
  ...(o.store ? { store: o.store } : {}),
  ...(o.storePrefix ? { storePrefix: o.storePrefix } : {}),
  ...(o.jobStaleMs !== undefined ? { jobStaleMs: o.jobStaleMs } : {}),
  ...(o.flowLeaseTtlMs !== undefined ? { flowLeaseTtlMs: o.flowLeaseTtlMs } : {}),
  modules: [cloudModule({ hosts: true, hostOptions: o.hostOptions, ...(o.ha === false ? { ha: false as const } : {}) })],
});
writeFileSync(join(o.dataDir, `url.${process.pid}`), c.url);
const stop = (): void => {
  void c.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
