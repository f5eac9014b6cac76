// tstack-simulator hosts behind a real controller (issue 19): the hosts are added through the
// host API with ssh: false, VMs are created through the REST API and land as domains in the
// simulated hosts' fake drivers; a powered-off host goes Disconnected and comes back; the
// simulated-host add path is validated (4xx) and admin only.
import { strict as assert } from 'node:assert';
import { Cleanup } from '../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../harness/controller.js';
import { cloudModule } from '../../controller/cloud/install.js';
import { Simulator } from '../../simulator/simulator.js';
import { setupSimulatedCloud, type SimCloudIds, randomSimFirstIp } from '../harness/simulated-cloud.js';
import { freePort } from '../harness/ports.js';
import { randomUUID } from 'node:crypto';
import { startControl } from '../../simulator/control.js';
import type { Resource } from '../../controller/store/types.js';

const waitFor = async (what: string, f: () => Promise<boolean>, ms = 15_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe('functional: tstack-simulator hosts behind a controller', function () {
  this.timeout(60_000);
  const cleanup = new Cleanup();
  let sim: Simulator;
  let c: TestController;
  let api: ApiClient;
  let ids: SimCloudIds;

  before(async () => {
    const firstIp = randomSimFirstIp();
    sim = new Simulator({ hosts: 4, firstIp, port: await freePort() });
    await sim.start();
    cleanup.add(() => sim.stop(), 'simulator');
    c = await testController(cleanup, { modules: [cloudModule({ hosts: true, hostOptions: { pingIntervalMs: 200, maxMisses: 2, autoReconnectMs: 0 }, ha: false })] } as never);
    api = await c.login('admin', c.adminPassword);
    ids = await setupSimulatedCloud(api, sim.hosts.slice(0, 3).map((h) => sim.info(h)), { prefix: 'sim', vms: 20 });
  });
  after(() => cleanup.run());

  it('adds simulated hosts through the host API: Connected, facts read, no SSH', async () => {
    const r = await api.get(`/v1/hosts?q=clusterUuid=${ids.cluster}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.total, 3);
    for (const h of r.body.inventories) {
      assert.equal(h.status, 'Connected');
      assert.equal(h.simulated, true);
      assert.equal(h.totalCpu, 64);
      assert.equal(h.agentToken, undefined, 'the token is never shown');
      assert.equal(h._agents, undefined);
    }
  });

  it('creates VMs through the API; each is a domain on the simulated host it was placed on', async () => {
    const made = await Promise.all(
      Array.from({ length: 6 }, (_, i) => api.post('/v1/vm-instances?wait=true', { name: `simvm${i}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] })),
    );
    for (const m of made) assert.ok(m.status === 200 || m.status === 201, JSON.stringify(m.body));
    const vms = made.map((m) => m.body.result ?? m.body);
    for (const vm of vms) {
      assert.equal(vm.state, 'Running');
      const i = ids.hosts.indexOf(vm.hostUuid);
      assert.ok(i >= 0, `placed on a simulated host: ${vm.hostUuid}`);
      assert.equal([...sim.hosts[i]!.driver.domains.values()].find((d) => d.uuid === vm.uuid)?.state, 'Running', 'a Running domain on that host');
    }
    assert.equal(sim.stats().vms, 6);
  });

  it('a powered-off host goes Disconnected and its VMs Unknown; powered on, it is Connected again', async () => {
    const h = ids.hosts[1]!;
    await sim.powerOff(1);
    await waitFor('Disconnected', async () => (await api.get(`/v1/hosts/${h}`)).body.status === 'Disconnected');
    let states: string[] = [];
    await waitFor('its VMs Unknown', async () => {
      states = ((await api.get(`/v1/vm-instances?q=hostUuid=${h}`)).body.inventories as Array<{ state: string }>).map((v) => v.state);
      return states.every((st) => st === 'Unknown');
    }).catch((e: Error) => assert.fail(`${e.message}: ${states.join(',')}`));
    await sim.powerOn(1);
    await waitFor('Connected again', async () => (await api.get(`/v1/hosts/${h}`)).body.status === 'Connected');
    const vms = (await api.get(`/v1/vm-instances?q=hostUuid=${h}`)).body.inventories as Array<{ state: string }>;
    assert.ok(vms.length > 0, 'the host has VMs (placement spreads them: least-used)');
    await waitFor('VMs Running again', async () => ((await api.get(`/v1/vm-instances?q=hostUuid=${h}`)).body.inventories as Array<{ state: string }>).every((v) => v.state === 'Running'));
  });

  it("control API: domains for a preloaded inventory's VMs are Running to a VM sync; a VM without one is corrected to Stopped", async () => {
    const token = 'control-token-for-the-test-000000';
    const control = await startControl(sim, token, '127.0.0.1', 0);
    cleanup.add(() => control.close(), 'simulator control');
    const post = (body: unknown, i = 2): Promise<Response> => fetch(`${control.url}/hosts/${i}/domains`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    for (const bad of [{}, { vmUuids: 'x' }, { vmUuids: ['not-a-uuid'] }, { vmUuids: [randomUUID()], cpuNum: 0 }]) assert.equal((await post(bad)).status, 400, JSON.stringify(bad));
    assert.equal((await post({ vmUuids: [randomUUID()] }, 99)).status, 404);
    // two Running records on host 2 written straight into the inventory, a domain for one of them
    const [kept, gone] = [randomUUID(), randomUUID()];
    const host = ids.hosts[2]!;
    const rec = (uuid: string, name: string): Resource => ({ uuid, kind: 'vm-instance', name, createDate: '', lastOpDate: '', ownerAccountUuid: c.adminAccountUuid, tags: [], state: 'Running', hostUuid: host, lastHostUuid: host, zoneUuid: ids.zone, clusterUuid: ids.cluster, imageUuid: ids.image, instanceOfferingUuid: ids.offering, cpuNum: 1, memorySize: 64 * 1024 * 1024, type: 'UserVm', hypervisorType: 'KVM' });
    await c.store.createMany([rec(kept, 'preloaded-kept'), rec(gone, 'preloaded-gone')]);
    const r = await post({ vmUuids: [kept], cpuNum: 1, memoryKiB: 65_536 });
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal([...sim.hosts[2]!.driver.domains.values()].find((d) => d.uuid === kept)?.state, 'Running');
    // a reconnect syncs the host's VM states from its vm/sync
    const rc = await api.post(`/v1/hosts/${host}/actions?wait=true`, { reconnect: {} });
    assert.ok(rc.status < 300, JSON.stringify(rc.body));
    await waitFor('the record without a domain corrected', async () => (await api.get(`/v1/vm-instances/${gone}`)).body.state === 'Stopped');
    assert.equal((await api.get(`/v1/vm-instances/${kept}`)).body.state, 'Running');
  });

  it('resourceUuid: the client names the VM; the same create sent again answers the first one\'s job, never a second VM', async () => {
    const uuid = randomUUID();
    const body = { name: 'named-by-client', instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3], resourceUuid: uuid };
    const [a, b] = await Promise.all([api.post('/v1/vm-instances', body), api.post('/v1/vm-instances', body)]);
    assert.equal(a.status, 202, JSON.stringify(a.body));
    assert.equal(b.status, 202, JSON.stringify(b.body));
    assert.equal(a.body.jobUuid, b.body.jobUuid, 'one job for both');
    assert.equal([a.body.repeated, b.body.repeated].filter(Boolean).length, 1, 'one of them was the repeat');
    await waitFor('the VM Running', async () => (await api.get(`/v1/vm-instances/${uuid}`)).body.state === 'Running');
    // after it finished: still its job (with ?wait=true its result), still one VM of that name
    const again = await api.post('/v1/vm-instances?wait=true', body);
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.uuid, uuid);
    assert.equal((await api.get('/v1/vm-instances?q=name=named-by-client')).body.total, 1);
    // refused: another resource's uuid, a malformed one, a collection whose creates do not take one
    const taken = await api.post('/v1/vm-instances', { ...body, name: 'other', resourceUuid: ids.l3 });
    assert.equal(taken.status, 409, JSON.stringify(taken.body));
    assert.match(JSON.stringify(taken.body), /resourceUuid/);
    const bad = await api.post('/v1/vm-instances', { ...body, resourceUuid: 'ABC' });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /resourceUuid/);
    const zone = await api.post('/v1/zones', { name: 'z-named', resourceUuid: randomUUID() });
    assert.equal(zone.status, 400, JSON.stringify(zone.body));
    // another account sending the same uuid makes nothing of the admin's request
    const user = await c.account('named-user');
    const theirs = await user.post('/v1/vm-instances', { ...body, name: 'theirs' });
    assert.equal(theirs.status, 409, JSON.stringify(theirs.body));
  });

  it('refuses bad simulated-host adds with 4xx: no token, a password, a wrong token, a token without ssh: false', async () => {
    const h = sim.info(sim.hosts[3]!);
    const base = { name: 'sim-bad', clusterUuid: ids.cluster, managementIp: h.managementIp, agentPort: h.port };
    const noToken = await api.post('/v1/hosts?wait=true', { ...base, ssh: false });
    assert.equal(noToken.status, 400, JSON.stringify(noToken.body));
    assert.match(JSON.stringify(noToken.body), /agentToken/);
    const withPw = await api.post('/v1/hosts?wait=true', { ...base, ssh: false, agentToken: h.token, password: 'x' });
    assert.equal(withPw.status, 400);
    const tokenOnly = await api.post('/v1/hosts?wait=true', { ...base, agentToken: h.token, password: 'x' });
    assert.equal(tokenOnly.status, 400);
    const wrong = await api.post('/v1/hosts?wait=true', { ...base, ssh: false, agentToken: 'w'.repeat(48) });
    assert.ok(wrong.status >= 400 && wrong.status !== 500, `status ${wrong.status}`);
    assert.equal((await api.get(`/v1/hosts?q=name=sim-bad`)).body.total, 0, 'a failed add leaves no host');
  });

  it('is admin only', async () => {
    const user = await c.account('simuser');
    const h = sim.info(sim.hosts[3]!);
    const r = await user.post('/v1/hosts?wait=true', { name: 'sim-user', clusterUuid: ids.cluster, managementIp: h.managementIp, agentPort: h.port, ssh: false, agentToken: h.token });
    assert.ok(r.status === 403 || r.status === 404, `status ${r.status}`);
  });
});
