// The host tracker on a shared inventory reads and renews every host's lease in a few store calls
// per round (Leases.tryAcquireMany, issue 19). A round whose lease calls fail tracks nothing and
// keeps what the tracker knew: the hosts it holds and their miss counts, so a store error hands
// no host away and does not restart a silent host's count towards Disconnected.
// The inventory is the controller's SQLite store presented as a shared one (backend 'redis'),
// failing lease reads on demand: the leases are the same compare-and-set on either backend.
import { strict as assert } from 'node:assert';
import { Cleanup } from '../harness/cleanup.js';
import { testController, type TestController } from '../harness/controller.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { HostTracker } from '../../controller/host/tracker.js';
import { newHostRuntime } from '../../controller/host/runtime.js';
import type { InventoryStore, Query } from '../../controller/store/types.js';
import { Simulator } from '../../simulator/simulator.js';
import { setupSimulatedCloud, type SimCloudIds, randomSimFirstIp } from '../harness/simulated-cloud.js';
import { freePort } from '../harness/ports.js';

describe('functional: host tracker leases when the store fails for a round', function () {
  this.timeout(60_000);
  const cleanup = new Cleanup();
  let sim: Simulator;
  let c: TestController;
  let ids: SimCloudIds;

  before(async () => {
    sim = new Simulator({ hosts: 2, firstIp: randomSimFirstIp(), port: await freePort() });
    await sim.start();
    cleanup.add(() => sim.stop(), 'simulator');
    // the controller's own tracker (SQLite: no leases) runs its first round only
    c = await testController(cleanup, { modules: [cloudModule({ hosts: true, hostOptions: { pingIntervalMs: 3_600_000, autoReconnectMs: 0 }, ha: false })] } as never);
    ids = await setupSimulatedCloud(await c.login('admin', c.adminPassword), sim.hosts.map((h) => sim.info(h)), { prefix: 'tl', vms: 0 });
  });
  after(() => cleanup.run());

  it('a round whose lease read fails tracks nothing, keeps the hosts it holds and the miss counts', async () => {
    let failLeases = false;
    const shared: InventoryStore = Object.create(c.store, {
      backend: { value: 'redis' },
      list: { value: (q: Query) => (failLeases && q.kind === 'lease' ? Promise.reject(new Error('store unreachable (test)')) : c.store.list(q)) },
    });
    const t = new HostTracker({ hostRuntime: newHostRuntime(), store: shared, agentClient: c.agentClient, agents: c.agents, bus: c.bus, controllerUrl: c.url, dataDir: c.dataDir, options: { pingIntervalMs: 300, pingTimeoutMs: 500, maxMisses: 2, autoReconnectMs: 0 } });
    const status = async (i: number): Promise<unknown> => (await c.store.get(ids.hosts[i]!))?.status;
    const held = (): string[] => [...(t.leased() ?? [])].sort();
    await t.round();
    assert.deepEqual(held(), [...ids.hosts].sort(), 'both leases taken');
    await sim.powerOff(0);
    try {
      await t.round();
      assert.equal(await status(0), 'Connected', 'one miss');
      failLeases = true;
      await t.round();
      assert.deepEqual(held(), [...ids.hosts].sort(), 'a failed lease read gives nothing away');
      assert.equal(await status(0), 'Connected');
      failLeases = false;
      await t.round();
      assert.equal(await status(0), 'Disconnected', 'the second miss: the count from before the failed round was kept');
      assert.equal(await status(1), 'Connected');
      assert.deepEqual(held(), [...ids.hosts].sort());
    } finally {
      await t.stop();
      await sim.powerOn(0);
    }
  });
});
