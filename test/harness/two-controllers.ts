// Two controllers on one Redis inventory with simulated hosts (issue 19's takeover tests):
// B runs in this process and has set up a simulated cloud; startA() starts controller A in its
// own process on the same inventory, frozen at a fault point (pausingControllerProcess). Both
// take over a dead one's jobs and flows after TTL ms.
//   const c = await twoControllerCloud(cleanup, { tag: 'kc', vms: 32 });
//   const a = await c.startA('vm-create:ips'); … await a.frozen(); await a.kill9();
import { randomUUID } from 'node:crypto';
import type { Cleanup } from './cleanup.js';
import { testController, type ApiClient, type TestController } from './controller.js';
import { pausingControllerProcess, type PausingController } from './cloud-controller-process.js';
import { startRedis } from './redis.js';
import { tmpDir } from './tmp.js';
import { freePort } from './ports.js';
import { setupSimulatedCloud, randomSimFirstIp, type SimCloudIds } from './simulated-cloud.js';
import { Simulator } from '../../simulator/simulator.js';
import { cloudModule } from '../../controller/cloud/install.js';
import type { HostOptions } from '../../controller/host/service.js';

/** Heartbeat/lease TTL of jobs, flows and host tracking: how soon a dead controller's work is taken over. */
const TTL = 1_500;
const hostOptions: HostOptions = { pingIntervalMs: 500, pingTimeoutMs: 3_000, maxMisses: 3, autoReconnectMs: 0, trackerLeaseTtlMs: TTL };

export interface TwoControllerCloud {
  sim: Simulator;
  b: TestController;
  apiB: ApiClient;
  ids: SimCloudIds;
  /** Controller A in its own process, frozen at `point` by the first operation that gets there. */
  startA(point: string): Promise<PausingController>;
}

/** `tag`: names of the cloud's resources and the Redis key prefix; `vms`: the offering's capacity for VMs. */
export async function twoControllerCloud(cleanup: Cleanup, o: { tag: string; vms: number }): Promise<TwoControllerCloud> {
  const password = `${o.tag}-admin-pw-1`;
  const shared = { store: (await startRedis(cleanup)).url, storePrefix: `${o.tag}-${randomUUID().slice(0, 8)}:`, jobStaleMs: TTL, flowLeaseTtlMs: TTL, ha: false as const };
  const sim = new Simulator({ hosts: 3, firstIp: randomSimFirstIp(), port: await freePort() });
  await sim.start();
  cleanup.add(() => sim.stop(), 'simulator');
  const b = await testController(cleanup, { modules: [cloudModule({ hosts: true, hostOptions, ha: false })], store: shared.store, storePrefix: shared.storePrefix, jobStaleMs: TTL, flowLeaseTtlMs: TTL, adminPassword: password });
  const apiB = await b.login('admin', password);
  const ids = await setupSimulatedCloud(apiB, sim.hosts.map((h) => sim.info(h)), { prefix: o.tag, vms: o.vms });
  return {
    sim,
    b,
    apiB,
    ids,
    startA: async (point) => pausingControllerProcess({ point, dataDir: await tmpDir(`${o.tag}-a`, cleanup), adminPassword: password, port: await freePort(), hostOptions, cleanup, shared }),
  };
}
