// Two controllers on one Redis inventory with simulated hosts (issue 19: killing a controller
// loses no acknowledged request and leaves nothing stuck), for VM stop, start and reboot.
// Controller A runs in its own process and is frozen (TSTACK_FAULT_PAUSE) at a chosen point of
// the action's flow with the action in flight on three VMs, then SIGKILLed; B, in this process,
// takes over A's flow journals and jobs: every job A persisted ends Succeeded with its VM in the
// action's final state (a VM whose request A never took stays as it was), the host ran each
// command once per VM (a command re-sent by B joined its first run through the task id), and
// the host reservations are exactly the Running VMs'.
import { strict as assert } from 'node:assert';
import { Cleanup } from '../../harness/cleanup.js';
import type { ApiClient, TestController } from '../../harness/controller.js';
import { twoControllerCloud, type TwoControllerCloud } from '../../harness/two-controllers.js';
import type { SimCloudIds } from '../../harness/simulated-cloud.js';
import type { Simulator } from '../../../simulator/simulator.js';
import { until } from '../../harness/assert.js';
import { capacityNamespace } from '../../../controller/allocator/capacity.js';
import { JOURNALS } from '../../../controller/workflow/flow.js';
import { domainName } from '../../../kvmagent/domain-xml.js';

interface Job {
  uuid: string;
  state: string;
  resourceUuid?: string;
  error?: unknown;
}

/** The action, the state it needs and the one it leaves, the fault points in its flow, and the host call it makes once. */
const CASES = [
  { op: 'stop', from: 'Running', to: 'Stopped', points: ['accepted', 'state', 'command', 'done'], call: 'shutdown' },
  { op: 'start', from: 'Stopped', to: 'Running', points: ['accepted', 'state', 'host', 'dhcp', 'start', 'done'], call: 'defineAndStart' },
  { op: 'reboot', from: 'Running', to: 'Running', points: ['accepted', 'state', 'command', 'done'], call: 'reboot' },
];

describe('two controllers on one Redis: a controller killed mid-start, stop or reboot, the other finishes its jobs', function () {
  this.timeout(600_000);
  const cleanup = new Cleanup();
  let c: TwoControllerCloud;
  let sim: Simulator;
  let b: TestController;
  let apiB: ApiClient;
  let ids: SimCloudIds;
  const vms: string[] = [];

  before(async () => {
    c = await twoControllerCloud(cleanup, { tag: 'ka', vms: 8 });
    ({ sim, b, apiB, ids } = c);
    for (let i = 0; i < 3; i++) {
      const r = await apiB.post('/v1/vm-instances?wait=true', { name: `ka-${i}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      vms.push(r.body.uuid as string);
    }
  });
  after(() => cleanup.run());

  const vmOf = async (uuid: string): Promise<{ uuid: string; state: string; hostUuid?: string }> => (await apiB.get(`/v1/vm-instances/${uuid}`)).body;
  /** The pool's VMs in `state`, through B. */
  const bring = async (state: string): Promise<void> => {
    for (const uuid of vms) {
      if ((await vmOf(uuid)).state === state) continue;
      const r = await apiB.post(`/v1/vm-instances/${uuid}/actions?wait=true`, { [state === 'Running' ? 'start' : 'stop']: {} });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
  };
  const jobsOf = async (op: string): Promise<Job[]> => (await apiB.get(`/v1/jobs?q=type=vm-instances.${op}&limit=1000`)).body.inventories;
  const callsOf = (method: string, vmUuid: string): number => sim.hosts.reduce((n, h) => n + h.driver.calls.filter(([m, name]) => m === method && name === domainName(vmUuid)).length, 0);

  /** Controller A in its own process sends `op` on every pool VM, is frozen at `point` and SIGKILLed; the jobs it acknowledged. */
  const killMidway = async (op: string, point: string): Promise<string[]> => {
    const a = await c.startA(point);
    // the action on three VMs at once: the first to reach the point freezes A
    const acked: string[] = [];
    const posts = vms.map((uuid) =>
      a.api
        .post(`/v1/vm-instances/${uuid}/actions`, { [op]: {} })
        .then((r) => void (r.status === 202 && acked.push(r.body.jobUuid as string)))
        .catch(() => undefined), // no answer: A froze before writing it (not acknowledged)
    );
    await a.frozen();
    await a.kill9();
    await Promise.all(posts);
    return acked;
  };
  /** The jobs of `op` not in `earlier`, once none is Running. */
  const settled = (op: string, earlier: Set<string>): Promise<Job[]> =>
    until(`every ${op} job of A settled`, async () => {
      const js = (await jobsOf(op)).filter((j) => !earlier.has(j.uuid));
      return js.every((j) => j.state !== 'Running') && js;
    }, 90_000, 300);

  for (const c of CASES) {
    for (const at of c.points) {
      const point = `vm-${c.op}:${at}`;
      it(`A SIGKILLed at ${point}: every ${c.op} job it took ends Succeeded through B`, async () => {
        await bring(c.from);
        const earlier = new Set((await jobsOf(c.op)).map((j) => j.uuid));
        const calls = new Map(vms.map((v) => [v, callsOf(c.call, v)]));
        const acked = await killMidway(c.op, point);

        const jobs = await settled(c.op, earlier);
        assert.ok(jobs.length >= 1, 'A persisted at least the job that froze it');
        for (const uuid of acked) assert.ok(jobs.some((j) => j.uuid === uuid), `acknowledged job ${uuid} exists`);
        for (const j of jobs) assert.equal(j.state, 'Succeeded', `job ${j.uuid}: ${JSON.stringify(j.error)}`);
        for (const uuid of vms) {
          const mine = jobs.filter((j) => j.resourceUuid === uuid);
          assert.ok(mine.length <= 1, `one job per VM: ${mine.length}`);
          const vm = await vmOf(uuid);
          // a VM whose request A never persisted was not touched
          assert.equal(vm.state, mine.length ? c.to : c.from, `VM ${uuid} (job ${mine[0]?.uuid ?? 'none'})`);
          // the host did the work once (a command B sent again joined its first run), and none for a VM A never took
          assert.equal(callsOf(c.call, uuid) - calls.get(uuid)!, mine.length, `${c.call} of VM ${uuid}`);
        }
        assert.equal((await b.store.listDocs(JOURNALS)).length, 0, 'no flow journal left');
        await checkHosts();
      });
    }
  }

  it('A SIGKILLed mid-start and the resumed starts fail on B: the jobs fail with the error, the VMs are Stopped with nothing left on the hosts', async () => {
    await bring('Stopped');
    const earlier = new Set((await jobsOf('start')).map((j) => j.uuid));
    // B's resumed runs fail right after the domain started: the rollback must destroy it and release the host
    process.env.TSTACK_FAULT_INJECT = 'vm-start:start';
    try {
      await killMidway('start', 'vm-start:dhcp');
      const jobs = await settled('start', earlier);
      assert.ok(jobs.length >= 1);
      for (const j of jobs) assert.equal((j.error as { code?: string } | undefined)?.code, 'INJECTED_FAULT', `job ${j.uuid}: ${j.state} ${JSON.stringify(j.error)}`);
    } finally {
      delete process.env.TSTACK_FAULT_INJECT;
    }
    for (const uuid of vms) assert.equal((await vmOf(uuid)).state, 'Stopped', `VM ${uuid}`);
    assert.equal((await b.store.listDocs(JOURNALS)).length, 0, 'no flow journal left');
    await checkHosts();
    // and they start again
    await bring('Running');
    await checkHosts();
  });

  /** Each Running VM has its domain and its one reservation on its host; a Stopped VM has neither. */
  const checkHosts = async (): Promise<void> => {
    const all = await Promise.all(vms.map(vmOf));
    for (const v of all) {
      const on = sim.hosts.filter((h) => h.driver.domains.has(domainName(v.uuid))).length;
      assert.equal(on, v.state === 'Running' ? 1 : 0, `domains of VM ${v.uuid} (${v.state})`);
    }
    for (const h of ids.hosts) {
      const consumers = (await b.store.claims(capacityNamespace('host', h))).map((x) => x.key).sort();
      assert.deepEqual(consumers, all.filter((v) => v.state === 'Running' && v.hostUuid === h).map((v) => v.uuid).sort(), `host ${h} reservations`);
    }
  };
});
