// Entry point of controllerProcess() (controller-process.ts): a real controller in its own
// process, so that a test's client-side work (building huge bodies, generating fuzz cases)
// never blocks the server it measures. Options come as JSON in argv[2]; the URL is written to
// <dataDir>/url once listening. No feature modules; zones get a long `touch` action (jobs).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startController, type ControllerOptions } from '../../controller/main.js';
import { ApiRegistry } from '../../controller/api/registry.js';
import { Obj } from '../../shared/protocol/schema.js';

const o = JSON.parse(process.argv[2] ?? '{}') as Pick<ControllerOptions, 'dataDir' | 'adminPassword' | 'store' | 'storePrefix' | 'maxInFlight'>;
const registry = new ApiRegistry();
registry.registerAction('zones', 'touch', { long: true, schema: Obj({}), run: async () => ({ touched: true }) });
const c = await startController({ ...o, listenHost: '127.0.0.1', listenPort: 0, modules: [], registry });
writeFileSync(join(o.dataDir, 'url'), c.url);
const stop = (): void => {
  void c.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
