// A controller restart with 50 simulated hosts (issue 19, the small version of
// `scale.ts --restart`): the restarted controller (same data directory, so the same SQLite
// inventory) binds every host again within a few ping rounds, without a storm: the requests in
// progress at the hosts stay within the tracker's concurrency and each host is asked a bounded
// number of things (a connect per agent first, no ping before it); and a VM that stopped while
// no controller was there (its event had nowhere to go) is Stopped in the inventory after the
// reconnect. A host powered off meanwhile goes Disconnected, and Connected when it is back.
import { strict as assert } from 'node:assert';
import { Cleanup } from '../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../harness/controller.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { Simulator } from '../../simulator/simulator.js';
import { setupSimulatedCloud, type SimCloudIds, randomSimFirstIp } from '../harness/simulated-cloud.js';
import { freePort } from '../harness/ports.js';

const HOSTS = 50;
const CONCURRENCY = 8;
const INTERVAL = 500;
const hostOptions = { pingIntervalMs: INTERVAL, pingTimeoutMs: 5_000, maxMisses: 2, autoReconnectMs: 0, trackerConcurrency: CONCURRENCY };
const controller = (cleanup: Cleanup, dataDir?: string): Promise<TestController> =>
  testController(cleanup, { modules: [cloudModule({ hosts: true, hostOptions, ha: false })], ...(dataDir ? { dataDir } : {}) } as never);

describe('functional: 50 simulated hosts reconnect after a controller restart', function () {
  this.timeout(90_000);
  const cleanup = new Cleanup();
  let sim: Simulator;
  let a: TestController;
  let api: ApiClient;
  let ids: SimCloudIds;

  before(async () => {
    const firstIp = randomSimFirstIp();
    sim = new Simulator({ hosts: HOSTS, firstIp, port: await freePort() });
    await sim.start();
    cleanup.add(() => sim.stop(), 'simulator');
    a = await controller(cleanup);
    api = await a.login('admin', a.adminPassword);
    ids = await setupSimulatedCloud(api, sim.hosts.map((h) => sim.info(h)), { prefix: 'rc', vms: 4 });
  });
  after(() => cleanup.run());

  it('binds every host again within a few rounds, bounded in flight, and reads the VM states again', async () => {
    const vms = await Promise.all(
      Array.from({ length: 4 }, async (_, i) => {
        const r = await api.post('/v1/vm-instances?wait=true', { name: `rc${i}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
        assert.ok(r.status < 300, JSON.stringify(r.body));
        return r.body.result ?? r.body;
      }),
    );
    await a.stop();
    // while no controller runs, a guest powers itself off: its event reaches nobody
    const victim = vms[0];
    const host = sim.hosts[ids.hosts.indexOf(victim.hostUuid)]!;
    host.driver.guestPowerOff([...host.driver.domains.values()].find((d) => d.uuid === victim.uuid)!.name);
    // and a host without VMs is powered off: the restarted controller's connect finds no one
    const off = ids.hosts.findIndex((u) => !vms.some((v) => v.hostUuid === u));
    await sim.powerOff(off);
    sim.traffic.reset();

    const t0 = Date.now();
    const b = await controller(cleanup, a.dataDir);
    const apiB = await b.login('admin', b.adminPassword);
    const end = t0 + 30_000;
    while (Object.keys(sim.traffic.report().connectedAt).length < HOSTS - 1) {
      assert.ok(Date.now() < end, `only ${Object.keys(sim.traffic.report().connectedAt).length}/${HOSTS - 1} hosts bound again after 30 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const reconnectMs = Date.now() - t0;
    // the first round (spread over half the interval, CONCURRENCY hosts at a time) does it;
    // a loaded machine gets a few more
    assert.ok(reconnectMs < 20_000, `reconnect took ${reconnectMs} ms`);
    // each bound host's VM states are read once; a round later nothing more was asked
    while ((sim.traffic.report().byRoute['/vm/sync'] ?? 0) < HOSTS - 1) {
      assert.ok(Date.now() < end, `VM syncs: ${JSON.stringify(sim.traffic.report().byRoute)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 2 * INTERVAL));
    const t = sim.traffic.report();
    // in flight: a host's three pings (or connects, or one VM sync) at a time, CONCURRENCY hosts
    // in the tracker, plus the start-up reconcile passes' applies
    assert.ok(t.peakInFlight <= 3 * CONCURRENCY + 16, `peak in flight ${t.peakInFlight}: ${JSON.stringify(t.byRoute)}`);
    assert.equal(t.byRoute['/connect'], 3 * (HOSTS - 1), `one connect per agent and host: ${JSON.stringify(t.byRoute)}`);
    assert.equal(t.byRoute['/vm/sync'], HOSTS - 1, `one VM sync per host: ${JSON.stringify(t.byRoute)}`);
    // a host recorded Connected is connected straight away (the connect answers what a ping would)
    const pingedFirst = Object.entries(t.firstRoute).filter(([, r]) => r === '/ping');
    assert.equal(pingedFirst.length, 0, `hosts pinged before their connect: ${JSON.stringify(pingedFirst.slice(0, 5))}`);
    // the powered-off host: Disconnected after its misses (connects refused count as silence),
    // and Connected again once it answers
    const status = async (): Promise<string> => (await apiB.get(`/v1/hosts/${ids.hosts[off]!}`)).body.status as string;
    for (const until = Date.now() + 20_000; (await status()) !== 'Disconnected'; await new Promise((r) => setTimeout(r, 200))) assert.ok(Date.now() < until, `the powered-off host is still ${await status()}`);
    await sim.powerOn(off);
    for (const until = Date.now() + 20_000; (await status()) !== 'Connected'; await new Promise((r) => setTimeout(r, 200))) assert.ok(Date.now() < until, `the powered-on host is still ${await status()}`);
    assert.equal((await apiB.get(`/v1/hosts?q=status=Connected&count=true`)).body.total, HOSTS);
    const vm = (await apiB.get(`/v1/vm-instances/${victim.uuid}`)).body;
    assert.equal(vm.state, 'Stopped', 'the power-off during the restart is in the inventory');
    for (const other of vms.slice(1)) assert.equal((await apiB.get(`/v1/vm-instances/${other.uuid}`)).body.state, 'Running');
  });
});
