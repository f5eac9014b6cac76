// The host tracker skips the ping of an agent that answered real requests since the host's last
// round (issue 19: pings were a third of the agent requests per VM created): every command
// answer carries X-Agent-Info (what a ping tells). A host with traffic is not pinged, an idle
// one is; an agent restarted under traffic is seen restarted from its answers (rebound, its new
// start time stored); a host that goes silent under traffic is Disconnected after maxMisses as
// before. The simulator's three agents of a host are one server on one port: its answers prove
// all three.
import { strict as assert } from 'node:assert';
import { Cleanup } from '../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../harness/controller.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { Simulator } from '../../simulator/simulator.js';
import { setupSimulatedCloud, type SimCloudIds, randomSimFirstIp } from '../harness/simulated-cloud.js';
import { freePort } from '../harness/ports.js';
import { common } from '../../shared/protocol/index.js';
import type { HostAgents } from '../../controller/host/service.js';

const INTERVAL = 300;
const MISSES = 2;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('functional: host liveness from agent answers (pings skipped under traffic)', function () {
  this.timeout(60_000);
  const cleanup = new Cleanup();
  let sim: Simulator;
  let c: TestController;
  let api: ApiClient;
  let ids: SimCloudIds;

  before(async () => {
    sim = new Simulator({ hosts: 2, firstIp: randomSimFirstIp(), port: await freePort() });
    await sim.start();
    cleanup.add(() => sim.stop(), 'simulator');
    c = await testController(cleanup, { modules: [cloudModule({ hosts: true, hostOptions: { pingIntervalMs: INTERVAL, pingTimeoutMs: 500, maxMisses: MISSES, autoReconnectMs: 0 }, ha: false })] } as never);
    api = await c.login('admin', c.adminPassword);
    ids = await setupSimulatedCloud(api, sim.hosts.map((h) => sim.info(h)), { prefix: 'lv', vms: 1 });
  });
  after(() => cleanup.run());

  const hostRecord = async (i: number): Promise<Record<string, unknown>> => (await c.store.get(ids.hosts[i]!))!;

  /** Echo to host i's kvmagent every 50 ms (errors ignored) until stopped: real requests. */
  const traffic = (i: number): { stop: () => Promise<void> } => {
    let on = true;
    const loop = (async (): Promise<void> => {
      const h = sim.hosts[i]!;
      while (on) {
        await c.agentClient.call(common.Echo, { url: `http://${h.managementIp}:${h.port}`, token: h.token }, { message: 'x' }, { timeoutMs: 500 }).catch(() => undefined);
        await sleep(50);
      }
    })();
    return {
      stop: async () => {
        on = false;
        await loop;
      },
    };
  };

  it('a host with traffic is not pinged; an idle host is', async () => {
    const t = traffic(0);
    try {
      await sleep(INTERVAL); // the traffic has begun: from the next round on, host 0 is proven
      sim.traffic.reset();
      await sleep(5 * INTERVAL);
      const r = sim.traffic.report();
      assert.ok((r.hostRoutes[0]?.['/echo'] ?? 0) > 10, `traffic reached host 0: ${JSON.stringify(r.hostRoutes[0])}`);
      assert.equal(r.hostRoutes[0]?.['/ping'] ?? 0, 0, `host 0 answered traffic, yet was pinged: ${JSON.stringify(r.hostRoutes[0])}`);
      assert.ok((r.hostRoutes[1]?.['/ping'] ?? 0) >= 3, `idle host 1 pinged each round: ${JSON.stringify(r.hostRoutes[1])}`);
      assert.equal((await hostRecord(0)).status, 'Connected');
    } finally {
      await t.stop();
    }
    // traffic over: pinged again
    await sleep(INTERVAL);
    sim.traffic.reset();
    await sleep(3 * INTERVAL);
    assert.ok((sim.traffic.report().hostRoutes[0]?.['/ping'] ?? 0) >= 1, 'host 0 pinged once its traffic stopped');
  });

  it('an agent restarted under traffic is seen restarted from its answers: rebound, new start time stored', async () => {
    const t = traffic(0);
    try {
      await sleep(2 * INTERVAL);
      const before = ((await hostRecord(0))._agents as HostAgents).kvmagent.startedAt;
      // off and on again at once: a new agent process (new startedAt, not bound to any controller)
      await sim.powerOff(0);
      await sleep(5); // startedAt has millisecond resolution
      await sim.powerOn(0);
      const now = sim.hosts[0]!.server!.info().startedAt;
      assert.notEqual(now, before);
      sim.traffic.reset();
      const end = Date.now() + 10 * INTERVAL + 5_000;
      while (((await hostRecord(0))._agents as HostAgents).kvmagent.startedAt !== now) {
        assert.ok(Date.now() < end, 'the restart was never noticed');
        await sleep(50);
      }
      // rebound: the agent knows its host again (it answers with the hostUuid)
      const r = sim.traffic.report();
      assert.ok((r.hostRoutes[0]?.['/connect'] ?? 0) >= 1, `host 0 connected again: ${JSON.stringify(r.hostRoutes[0])}`);
      assert.equal(sim.hosts[0]!.server!.hostUuid, ids.hosts[0]);
      assert.equal((await hostRecord(0)).status, 'Connected');
    } finally {
      await t.stop();
    }
  });

  it('a host that goes silent under traffic is Disconnected after maxMisses rounds, as before', async () => {
    const t = traffic(0);
    try {
      await sleep(2 * INTERVAL);
      assert.equal((await hostRecord(0)).status, 'Connected');
      await sim.powerOff(0);
      const off = Date.now();
      const end = off + (MISSES + 3) * (INTERVAL + 500) + 5_000;
      while ((await hostRecord(0)).status !== 'Disconnected') {
        assert.ok(Date.now() < end, `still ${String((await hostRecord(0)).status)}`);
        await sleep(50);
      }
      // not before maxMisses rounds without an answer (each round at least INTERVAL apart)
      assert.ok(Date.now() - off >= (MISSES - 1) * INTERVAL, `Disconnected after ${Date.now() - off} ms`);
      assert.match(String((await hostRecord(0)).statusReason), /no answer from/);
    } finally {
      await t.stop();
      await sim.powerOn(0);
    }
  });
});
