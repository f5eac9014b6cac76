// Two controllers on one Redis inventory with simulated hosts (issue 19): each host is tracked
// by exactly one controller (a lease per host); when that controller dies (its tracker stops
// renewing, its job heartbeat stops, its API is gone) the other takes every host over within
// the lease TTL, gets the agents' events, sees a host power off and come back, settles the dead
// controller's Running VM create (it ends Running), and serves the API for everything.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { Cleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { startRedis } from '../../harness/redis.js';
import { cloudModule } from '../../../controller/cloud/install.js';
import { Simulator } from '../../../simulator/simulator.js';
import { setupSimulatedCloud, type SimCloudIds, randomSimFirstIp } from '../../harness/simulated-cloud.js';
import { freePort } from '../../harness/ports.js';
import { leaseUuid } from '../../../controller/workflow/lease.js';

type CloudModule = ReturnType<typeof cloudModule>;

const waitFor = async (what: string, f: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe('two controllers on one Redis: host tracking leases and takeover', function () {
  this.timeout(60_000);
  const cleanup = new Cleanup();
  const TTL = 2_000;
  let sim: Simulator;
  let modA: CloudModule;
  let modB: CloudModule;
  let a: TestController;
  let b: TestController;
  let apiA: ApiClient;
  let apiB: ApiClient;
  let ids: SimCloudIds;

  const controller = async (): Promise<{ mod: CloudModule; c: TestController }> => {
    const mod = cloudModule({ hosts: true, hostOptions: { pingIntervalMs: 300, pingTimeoutMs: 3_000, maxMisses: 3, autoReconnectMs: 0, trackerLeaseTtlMs: TTL }, ha: false });
    const c = await testController(cleanup, { modules: [mod], store: redisUrl, storePrefix: prefix, jobStaleMs: 2_000, adminPassword: 'takeover-admin-pw-1' } as never);
    return { mod, c };
  };
  let redisUrl = '';
  const prefix = `tk-${randomUUID().slice(0, 8)}:`;
  const leased = (m: CloudModule): number => m.installed?.hosts?.tracker?.leased()?.size ?? -1;

  before(async () => {
    redisUrl = (await startRedis(cleanup)).url;
    const firstIp = randomSimFirstIp();
    sim = new Simulator({ hosts: 4, firstIp, port: await freePort() });
    await sim.start();
    cleanup.add(() => sim.stop(), 'simulator');
    ({ mod: modA, c: a } = await controller());
    apiA = await a.login('admin', 'takeover-admin-pw-1');
    ids = await setupSimulatedCloud(apiA, sim.hosts.map((h) => sim.info(h)), { prefix: 'tk', vms: 8 });
  });
  after(() => cleanup.run());

  it('one controller tracks every host; a second one started later takes none while the first renews', async () => {
    await waitFor('A tracking the 4 hosts', () => leased(modA) === 4);
    ({ mod: modB, c: b } = await controller());
    apiB = await b.login('admin', 'takeover-admin-pw-1');
    await new Promise((r) => setTimeout(r, 2 * TTL));
    assert.equal(leased(modB), 0, 'B holds no host lease while A is alive');
    assert.equal(leased(modA), 4);
    // either controller serves the API: a VM created through B runs on a simulated host
    const r = await apiB.post('/v1/vm-instances?wait=true', { name: 'tk-vm0', instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
    assert.ok(r.status < 300, JSON.stringify(r.body));
    assert.equal((r.body.result ?? r.body).state, 'Running');
  });

  it('A dies: B takes every host within the TTL, tracks them (power off / on) and settles A\'s Running job', async () => {
    // a job in flight on A: its start of a VM waits on a slow simulated host
    sim.setFaults({ 'vm/start': { latencyMs: 8_000 } });
    const started = await apiA.post('/v1/vm-instances', { name: 'tk-vm1', instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
    assert.equal(started.status, 202, JSON.stringify(started.body));
    const jobUuid = started.body.uuid ?? started.body.jobUuid;
    await waitFor('the create reaching vm/start', async () => (await apiB.get(`/v1/vm-instances?q=name=tk-vm1`)).body.inventories?.[0]?.state === 'Starting', 15_000).catch(() => undefined);

    // A dies: the tracker keeps its leases (no release), the job heartbeat stops, the API is gone
    const t0 = Date.now();
    await modA.installed!.hosts!.tracker!.halt();
    await a.close();
    sim.setFaults({});
    await waitFor('B tracking the 4 hosts', () => leased(modB) === 4, 4 * TTL + 5_000);
    const takeoverMs = Date.now() - t0;
    assert.ok(takeoverMs < 4 * TTL + 5_000, `takeover took ${takeoverMs} ms`);
    // the lease records name B's tracker now
    const holder = modB.installed!.hosts!.tracker!.holder;
    for (const h of ids.hosts) {
      const l = (await b.store.get(leaseUuid(`host-tracker:${h}`)))!;
      assert.ok(String(l.state).startsWith(`${holder}#`), `lease of ${h}: ${String(l.state)}`);
    }

    // B tracks: a host that powers off goes Disconnected, and Connected again when it is back
    await sim.powerOff(2);
    const hostUuid = ids.hosts[2]!;
    await waitFor('host 2 Disconnected', async () => (await apiB.get(`/v1/hosts/${hostUuid}`)).body.status === 'Disconnected', 10_000);
    await sim.powerOn(2);
    await waitFor('host 2 Connected', async () => (await apiB.get(`/v1/hosts/${hostUuid}`)).body.status === 'Connected', 10_000);

    // A's job does not stay Running: B adopts it once A's heartbeat is stale and finishes the
    // create (its vm/start, sent again with the same task id, joins the slow first one)
    await waitFor('A\'s job settled by B', async () => (await apiB.get(`/v1/jobs/${jobUuid}`)).body.state !== 'Running', 30_000);
    const j = (await apiB.get(`/v1/jobs/${jobUuid}`)).body;
    assert.equal(j.state, 'Succeeded', JSON.stringify(j.error));
    assert.equal((await apiB.get(`/v1/vm-instances/${j.resourceUuid as string}`)).body.state, 'Running');
  });
});
