// Two controllers on one Redis inventory with simulated hosts (issue 19: killing a controller
// loses no acknowledged request and leaves nothing stuck). Controller A runs in its own process
// and is frozen (TSTACK_FAULT_PAUSE) at a chosen point of the VM create flow with a few creates
// in flight, then SIGKILLed; B, in this process, takes over A's flow journals and jobs and
// finishes every create: each acknowledged (and each persisted) create ends Succeeded with its
// VM Running, the hosts were asked to start each domain once (the re-sent vm/start joined its
// first run through the task id), and no IP, MAC, host or storage reservation or volume is left
// without its owner.
import { strict as assert } from 'node:assert';
import { Cleanup } from '../../harness/cleanup.js';
import type { ApiClient, TestController } from '../../harness/controller.js';
import { twoControllerCloud, type TwoControllerCloud } from '../../harness/two-controllers.js';
import type { SimCloudIds } from '../../harness/simulated-cloud.js';
import type { Simulator } from '../../../simulator/simulator.js';
import { until } from '../../harness/assert.js';
import { capacityNamespace } from '../../../controller/allocator/capacity.js';
import { usedIps } from '../../../controller/allocator/ip.js';
import { MAC_NAMESPACE } from '../../../controller/allocator/mac.js';
import { JOURNALS } from '../../../controller/workflow/flow.js';

describe('two controllers on one Redis: a controller killed mid-create, the other finishes its creates', function () {
  this.timeout(240_000);
  const cleanup = new Cleanup();
  let c: TwoControllerCloud;
  let sim: Simulator;
  let b: TestController;
  let apiB: ApiClient;
  let ids: SimCloudIds;
  let n = 0;

  before(async () => {
    c = await twoControllerCloud(cleanup, { tag: 'kc', vms: 32 });
    ({ sim, b, apiB, ids } = c);
  });
  after(() => cleanup.run());

  const createJobs = async (): Promise<Array<{ uuid: string; state: string; resourceUuid?: string; error?: unknown }>> =>
    (await apiB.get('/v1/jobs?q=type=vm-instances.create&limit=1000')).body.inventories;

  // record: the journal's first write is the VM's (one batch); start: Running rides on the flow's end
  for (const point of ['vm-create:accepted', 'vm-create:record', 'vm-create:host', 'vm-create:ips', 'vm-create:root-volume', 'vm-create:start']) {
    it(`A SIGKILLed at ${point}: every create it took ends Running through B`, async () => {
      const a = await c.startA(point);
      // three creates at once: the first to reach the point freezes A, the others are wherever they are
      const acked: string[] = [];
      const posts = Array.from({ length: 3 }, (_, i) =>
        a.api
          .post('/v1/vm-instances', { name: `kc-${n}-${i}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] })
          .then((r) => void (r.status === 202 && acked.push(r.body.jobUuid as string)))
          .catch(() => undefined), // no answer: A froze before writing it (not acknowledged)
      );
      n++;
      await a.frozen();
      await a.kill9();
      await Promise.all(posts);

      // B adopts A's journals and jobs: every create job ends, Succeeded, its VM Running
      const jobs = await until('every create job settled', async () => {
        const js = await createJobs();
        return js.every((j) => j.state !== 'Running') && js;
      }, 60_000, 300);
      for (const uuid of acked) assert.ok(jobs.some((j) => j.uuid === uuid), `acknowledged job ${uuid} exists`);
      for (const j of jobs) {
        assert.equal(j.state, 'Succeeded', `job ${j.uuid}: ${JSON.stringify(j.error)}`);
        const vm = await apiB.get(`/v1/vm-instances/${j.resourceUuid!}`);
        assert.equal(vm.body.state, 'Running', `VM of job ${j.uuid}`);
      }
      assert.equal((await b.store.listDocs(JOURNALS)).length, 0, 'no flow journal left');
    });
  }

  it('nothing leaked: one domain started per VM, every reservation and volume has its owner', async () => {
    const vms = (await apiB.get('/v1/vm-instances?limit=1000')).body.inventories as Array<{ uuid: string; state: string; hostUuid: string }>;
    assert.ok(vms.length >= 4, `${vms.length} VMs`);
    assert.deepEqual(vms.filter((v) => v.state !== 'Running').map((v) => v.state), []);
    // the hosts: exactly these domains, each started once
    const started = sim.hosts.flatMap((h) => h.driver.calls.filter(([m]) => m === 'defineAndStart').map(([, name]) => name));
    assert.equal(started.length, vms.length, `vm/start ran ${started.length} times for ${vms.length} VMs`);
    assert.equal(sim.hosts.reduce((s, h) => s + h.driver.domains.size, 0), vms.length);
    const store = b.store;
    const exists = async (uuid: string): Promise<boolean> => (await store.get(uuid)) !== undefined;
    // host capacity: the consumers of each host are its VMs
    for (const h of ids.hosts) {
      const consumers = (await store.claims(capacityNamespace('host', h))).map((c) => c.key).sort();
      assert.deepEqual(consumers, vms.filter((v) => v.hostUuid === h).map((v) => v.uuid).sort(), `host ${h} reservations`);
    }
    // IPs and MACs: every claim's owner is a NIC that exists (or a host's DHCP server)
    const nics = (await apiB.get('/v1/vm-nics?limit=1000')).body.inventories as Array<{ uuid: string }>;
    assert.equal(nics.length, vms.length, 'one NIC per VM');
    const nicSet = new Set(nics.map((x) => x.uuid));
    const ipOwners = (await usedIps(store, ids.l3)).map((c) => c.owner);
    for (const o of ipOwners) assert.ok(nicSet.has(o) || !/^[0-9a-f-]{36}$/.test(o) || (await exists(o)), `IP claim of ${o}: no such owner`);
    assert.equal(ipOwners.filter((o) => nicSet.has(o)).length, nics.length, 'one address per NIC');
    const macOwners = (await store.claims(MAC_NAMESPACE)).map((c) => c.owner);
    assert.deepEqual(macOwners.filter((o) => !nicSet.has(o)), [], 'MAC claims without a NIC');
    // storage: the PS reservations are the volumes, and the hosts hold exactly those volumes
    const vols = (await apiB.get('/v1/volumes?limit=1000')).body.inventories as Array<{ uuid: string }>;
    assert.equal(vols.length, vms.length, 'one root volume per VM');
    const psConsumers = (await store.claims(capacityNamespace('ps', ids.ps))).map((c) => c.key).sort();
    assert.deepEqual(psConsumers, vols.map((v) => v.uuid).sort(), 'primary storage reservations');
    const onHosts = sim.hosts.flatMap((h) => [...h.storage.volumes.keys()]).sort();
    assert.deepEqual(onHosts, vols.map((v) => v.uuid).sort(), 'volumes on the hosts');
  });
});
