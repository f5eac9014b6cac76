// Two controllers on one Redis inventory with simulated hosts (issue 19: killing a controller
// loses no acknowledged request and leaves nothing stuck), for VM destroy, recover and expunge,
// volume attach and detach, snapshot delete, and clone (one source, also frozen inside its nested
// image and VM create flows). As in controller-kill-actions: controller A,
// in its own process, is frozen (TSTACK_FAULT_PAUSE) at a point of the operation's flow with the
// operation in flight on three VMs, then SIGKILLed; B takes over A's journals and jobs. Every job
// A persisted ends Succeeded with its target in the operation's end state (a target whose request
// A never took stays as it was), each host command ran once per target (a command B sent again
// joined its first run through the task id), and the host reservations are the Running VMs'.
import { strict as assert } from 'node:assert';
import { Cleanup } from '../../harness/cleanup.js';
import type { ApiClient, ApiResponse, TestController } from '../../harness/controller.js';
import { twoControllerCloud, type TwoControllerCloud } from '../../harness/two-controllers.js';
import type { SimCloudIds } from '../../harness/simulated-cloud.js';
import type { Simulator } from '../../../simulator/simulator.js';
import { until } from '../../harness/assert.js';
import { capacityNamespace } from '../../../controller/allocator/capacity.js';
import { JOURNALS, OUTCOMES } from '../../../controller/workflow/flow.js';
import { domainName } from '../../../kvmagent/domain-xml.js';
import * as S from '../../../shared/protocol/storage.js';

interface Job {
  uuid: string;
  state: string;
  resourceUuid?: string;
  result?: Record<string, unknown>;
  error?: unknown;
}

/** One VM of a case and what its preparation made (a volume, a snapshot). */
interface Target {
  vm: string;
  /** The job's resource: the VM, or the snapshot. */
  resource: string;
  volume?: string;
}

interface Case {
  /** The flow's name (its fault points are `<flow>:<point>`) and the job's type. */
  flow: string;
  jobType: string;
  points: string[];
  /** The state the case's VMs are brought to, and what each then gets (through B). */
  from: 'Running' | 'Stopped' | 'Destroyed';
  prepare?: (vm: string) => Promise<Partial<Target>>;
  send: (api: ApiClient, t: Target) => Promise<ApiResponse>;
  /** The target's state after the case: `took` when A persisted its job (it must be done), else untouched. */
  check: (t: Target, took: boolean, job: Job | undefined) => Promise<void>;
  /** The host commands of the operation on a target, by [where, command, on what]. */
  calls: (t: Target) => Array<['driver' | 'storage', string, string]>;
}

describe('two controllers on one Redis: a controller killed mid-destroy, -recover, -expunge, -attach, -detach, -snapshot-delete or -clone, the other finishes its jobs', function () {
  this.timeout(900_000);
  const cleanup = new Cleanup();
  let c: TwoControllerCloud;
  let sim: Simulator;
  let b: TestController;
  let apiB: ApiClient;
  let ids: SimCloudIds;
  let n = 0;

  before(async () => {
    c = await twoControllerCloud(cleanup, { tag: 'kl', vms: 12 });
    ({ sim, b, apiB, ids } = c);
  });
  after(() => cleanup.run());

  const ok = async (r: Promise<ApiResponse>, what: string): Promise<any> => {
    const x = await r;
    assert.ok(x.status >= 200 && x.status < 300, `${what}: ${x.status} ${JSON.stringify(x.body)}`);
    return x.body;
  };
  const vmOf = async (uuid: string): Promise<any> => (await apiB.get(`/v1/vm-instances/${uuid}`)).body;
  const volumeOf = async (uuid: string): Promise<any> => (await apiB.get(`/v1/volumes/${uuid}`)).body;
  const jobsOf = async (type: string): Promise<Job[]> => (await apiB.get(`/v1/jobs?q=type=${type}&limit=1000`)).body.inventories;
  const countCalls = ([where, cmd, on]: ['driver' | 'storage', string, string]): number =>
    sim.hosts.reduce((k, h) => k + (where === 'driver' ? h.driver.calls.filter(([m, x]) => m === cmd && x === domainName(on)) : h.storage.calls.filter(([m, x]) => m === cmd && x === on)).length, 0);
  const act = (api: ApiClient, vm: string, action: string, params: Record<string, unknown> = {}): Promise<ApiResponse> => api.post(`/v1/vm-instances/${vm}/actions`, { [action]: params });

  /** New VMs (through B) in `state`. */
  const pool = async (state: Case['from'], count = 3): Promise<string[]> => {
    const vms: string[] = [];
    for (let i = 0; i < count; i++) vms.push((await ok(apiB.post('/v1/vm-instances?wait=true', { name: `kl-${n++}`, instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] }), 'create')).uuid as string);
    for (const vm of vms) {
      if (state === 'Stopped') await ok(apiB.post(`/v1/vm-instances/${vm}/actions?wait=true`, { stop: {} }), 'stop');
      if (state === 'Destroyed') await ok(apiB.del(`/v1/vm-instances/${vm}?wait=true`), 'destroy');
    }
    for (const vm of vms) await until(`VM ${vm} ${state}`, async () => (await vmOf(vm)).state === state, 30_000, 100);
    return vms;
  };
  /** Everything a case left: its VMs expunged, its volumes deleted. */
  const clear = async (ts: Target[]): Promise<void> => {
    for (const t of ts) {
      const vm = (await apiB.get(`/v1/vm-instances/${t.vm}`)).status === 200 ? await vmOf(t.vm) : undefined;
      if (vm && vm.state !== 'Destroyed') await ok(apiB.del(`/v1/vm-instances/${t.vm}?wait=true`), 'destroy');
      if (vm) await ok(apiB.post(`/v1/vm-instances/${t.vm}/actions?wait=true`, { expunge: {} }), 'expunge');
      await until(`VM ${t.vm} expunged`, async () => (await apiB.get(`/v1/vm-instances/${t.vm}`)).status === 404, 30_000, 100);
      if (t.volume && (await apiB.get(`/v1/volumes/${t.volume}`)).status === 200) await ok(apiB.del(`/v1/volumes/${t.volume}?wait=true`), 'delete volume');
    }
  };

  const CASES: Case[] = [
    {
      flow: 'vm-destroy',
      jobType: 'vm-instances.delete',
      points: ['accepted', 'state', 'domain', 'done'],
      from: 'Running',
      send: (api, t) => api.del(`/v1/vm-instances/${t.vm}`),
      check: async (t, took) => assert.equal((await vmOf(t.vm)).state, took ? 'Destroyed' : 'Running'),
      calls: (t) => [['driver', 'destroy', t.vm]],
    },
    {
      flow: 'vm-recover',
      jobType: 'vm-instances.recover',
      points: ['accepted', 'state', 'done'],
      from: 'Destroyed',
      send: (api, t) => act(api, t.vm, 'recover'),
      check: async (t, took) => assert.equal((await vmOf(t.vm)).state, took ? 'Stopped' : 'Destroyed'),
      calls: () => [],
    },
    {
      flow: 'vm-expunge',
      jobType: 'vm-instances.expunge',
      points: ['accepted', 'state', 'host', 'volumes', 'nics', 'record'],
      from: 'Destroyed',
      prepare: async (vm) => ({ volume: (await vmOf(vm)).rootVolumeUuid as string }),
      send: (api, t) => act(api, t.vm, 'expunge'),
      check: async (t, took, job) => {
        if (!took) return assert.equal((await vmOf(t.vm)).state, 'Destroyed');
        assert.equal((await apiB.get(`/v1/vm-instances/${t.vm}`)).status, 404, 'the VM is gone');
        assert.equal((await apiB.get(`/v1/volumes/${t.volume!}`)).status, 404, 'its root volume is gone');
        assert.equal((await apiB.get(`/v1/vm-nics?q=vmInstanceUuid=${t.vm}`)).body.total, 0, 'its NICs are gone');
        // answered from the outcome the flow kept (the VM record is gone)
        assert.deepEqual([job?.result?.uuid, job?.result?.state], [t.vm, 'Expunged'], JSON.stringify(job?.result));
      },
      // its root volume's files (the second vm/destroy finds no domain: the driver is not called)
      calls: (t) => [['storage', S.DeleteVolume.name, t.volume!]],
    },
    {
      flow: 'vm-volume-attach',
      jobType: 'vm-instances.attachVolume',
      points: ['accepted', 'check', 'volume', 'plug', 'record'],
      from: 'Running',
      // a volume with no files yet: the attach makes them on the VM's host
      prepare: async () => ({ volume: (await ok(apiB.post('/v1/volumes', { name: `kl-vol-${n++}`, diskSize: 1 << 30 }), 'volume')).uuid as string }),
      send: (api, t) => act(api, t.vm, 'attachVolume', { volumeUuid: t.volume }),
      check: async (t, took) => {
        const vol = await volumeOf(t.volume!);
        assert.equal(vol.vmInstanceUuid, took ? t.vm : undefined, `volume ${t.volume!}`);
        assert.equal(((await vmOf(t.vm)).allVolumes as string[]).includes(t.volume!), took);
        if (took) assert.equal(vol.status, 'Ready');
      },
      calls: (t) => [['storage', S.CreateEmptyVolume.name, t.volume!], ['driver', 'attachDevice', t.vm]],
    },
    {
      flow: 'vm-volume-detach',
      jobType: 'vm-instances.detachVolume',
      points: ['accepted', 'check', 'unplug', 'record'],
      from: 'Running',
      prepare: async (vm) => {
        const volume = (await ok(apiB.post('/v1/volumes', { name: `kl-vol-${n++}`, diskSize: 1 << 30 }), 'volume')).uuid as string;
        await ok(apiB.post(`/v1/vm-instances/${vm}/actions?wait=true`, { attachVolume: { volumeUuid: volume } }), 'attach');
        return { volume };
      },
      send: (api, t) => act(api, t.vm, 'detachVolume', { volumeUuid: t.volume }),
      check: async (t, took) => {
        assert.equal((await volumeOf(t.volume!)).vmInstanceUuid, took ? undefined : t.vm, `volume ${t.volume!}`);
        assert.equal(((await vmOf(t.vm)).allVolumes as string[]).includes(t.volume!), !took);
      },
      calls: (t) => [['driver', 'detachDevice', t.vm]],
    },
    {
      flow: 'volume-snapshot-delete',
      jobType: 'volume-snapshots.delete',
      points: ['accepted', 'plan', 'agent', 'delete'],
      // local storage: snapshots of a running VM's disk are not deleted under its QEMU
      from: 'Stopped',
      prepare: async (vm) => ({ resource: (await ok(apiB.post(`/v1/volumes/${(await vmOf(vm)).rootVolumeUuid as string}/actions?wait=true`, { createSnapshot: { name: `kl-snap-${n++}` } }), 'snapshot')).uuid as string }),
      send: (api, t) => api.del(`/v1/volume-snapshots/${t.resource}`),
      check: async (t, took, job) => {
        assert.equal((await apiB.get(`/v1/volume-snapshots/${t.resource}`)).status, took ? 404 : 200, `snapshot ${t.resource}`);
        if (took) assert.deepEqual([job?.result?.uuid, job?.result?.deleted], [t.resource, [t.resource]], JSON.stringify(job?.result));
      },
      calls: (t) => [['storage', S.DeleteSnapshot.name, t.resource]],
    },
  ];

  /** A sends the case's operation on every target, is frozen at `point` and SIGKILLed; the jobs it acknowledged. */
  const killMidway = async (k: Case, point: string, ts: Target[]): Promise<string[]> => {
    const a = await c.startA(point);
    // the operation on three targets at once: the first to reach the point freezes A
    const acked: string[] = [];
    const sends = ts.map((t) =>
      k
        .send(a.api, t)
        .then((r) => void (r.status === 202 && acked.push(r.body.jobUuid as string)))
        .catch(() => undefined), // no answer: A froze before writing it (not acknowledged)
    );
    await a.frozen();
    await a.kill9();
    await Promise.all(sends);
    return acked;
  };

  for (const k of CASES) {
    for (const at of k.points) {
      const point = `${k.flow}:${at}`;
      it(`A SIGKILLed at ${point}: every ${k.jobType} job it took ends Succeeded through B`, async () => {
        const vms = await pool(k.from);
        const ts: Target[] = [];
        for (const vm of vms) ts.push({ vm, resource: vm, ...(k.prepare ? await k.prepare(vm) : {}) });
        try {
          const earlier = new Set((await jobsOf(k.jobType)).map((j) => j.uuid));
          const before = new Map(ts.map((t) => [t, k.calls(t).map(countCalls)]));
          const acked = await killMidway(k, point, ts);

          const jobs = await until(`every ${k.jobType} job of A settled`, async () => {
            const js = (await jobsOf(k.jobType)).filter((j) => !earlier.has(j.uuid));
            return js.every((j) => j.state !== 'Running') && js;
          }, 90_000, 300);
          assert.ok(jobs.length >= 1, 'A persisted at least the job that froze it');
          for (const uuid of acked) assert.ok(jobs.some((j) => j.uuid === uuid), `acknowledged job ${uuid} exists`);
          for (const j of jobs) assert.equal(j.state, 'Succeeded', `job ${j.uuid}: ${JSON.stringify(j.error)}`);
          for (const t of ts) {
            const mine = jobs.filter((j) => j.resourceUuid === t.resource);
            assert.ok(mine.length <= 1, `one job per target: ${mine.length}`);
            await k.check(t, mine.length === 1, mine[0]);
            // the host did the work once (a command B sent again joined its first run), and none for a target A never took
            const now = k.calls(t).map(countCalls);
            k.calls(t).forEach((call, i) => assert.equal(now[i]! - before.get(t)![i]!, mine.length, `${call.join(' ')} (job ${mine[0]?.uuid ?? 'none'})`));
          }
          assert.equal((await b.store.listDocs(JOURNALS)).length, 0, 'no flow journal left');
          // the outcomes kept for the resumers go once the jobs' ends are stored
          await until('the jobs\' flow outcomes deleted', async () => {
            for (const j of jobs) if (await b.store.getDoc(OUTCOMES, j.uuid)) return false;
            return true;
          }, 10_000, 100);
          await checkHosts(vms);
        } finally {
          await clear(ts);
        }
      });
    }
  }

  // clone: its nested operations (template images, each clone's create) are flows of their own,
  // under ids derived from the clone's; B finishes the clone and what A left of them (an image
  // flow rolled back by the takeover is made again), each clone made once
  const CLONE = ['vm-clone:accepted', 'image-from-volume:upload', 'vm-clone:template', 'vm-create:root-volume', 'vm-clone:clones', 'vm-clone:cleanup'];
  for (const point of CLONE) {
    it(`A SIGKILLed at ${point} of a clone: B ends the clone job Succeeded with both clones, each made once, and no template left`, async () => {
      const [source] = await pool('Stopped', 1);
      const ts: Target[] = [{ vm: source!, resource: source! }];
      try {
        const vmsBefore = new Set((await b.store.list({ kind: 'vm-instance' })).items.map((v) => v.uuid));
        const images = (await b.store.list({ kind: 'image' })).items.length;
        const earlier = new Set((await jobsOf('vm-instances.clone')).map((j) => j.uuid));
        const names = [`kl-c${n++}`, `kl-c${n++}`];
        const a = await c.startA(point);
        const sent = a.api.post(`/v1/vm-instances/${source!}/actions`, { clone: { names } }).catch(() => undefined);
        await a.frozen();
        await a.kill9();
        await sent;
        const [job, ...more] = await until('the clone job of A settled', async () => {
          const js = (await jobsOf('vm-instances.clone')).filter((j) => !earlier.has(j.uuid));
          return js.length > 0 && js.every((j) => j.state !== 'Running') && js;
        }, 90_000, 300);
        assert.equal(more.length, 0);
        const made = (await b.store.list({ kind: 'vm-instance' })).items.filter((v) => !vmsBefore.has(v.uuid));
        for (const v of made) ts.push({ vm: v.uuid, resource: v.uuid });
        assert.equal(job!.state, 'Succeeded', JSON.stringify(job!.error));
        assert.deepEqual([...(job!.result?.cloneUuids as string[])].sort(), made.map((v) => v.uuid).sort());
        // answered live (the clones' records, as the API shows VMs) or from the kept outcome (their uuids)
        for (const v of (job!.result?.clones as Array<Record<string, unknown>> | undefined) ?? []) assert.deepEqual(Object.keys(v).filter((f) => f.startsWith('_')), [], 'clones as the API shows VMs');
        // the clones are whole (Stopped like their source), one per name, each root volume made once
        assert.deepEqual(made.map((v) => [v.name, v.state]).sort(), names.map((x) => [x, 'Stopped']));
        for (const v of made) assert.equal(countCalls(['storage', S.CreateRootVolume.name, String(v.rootVolumeUuid)]), 1, `root volume of ${String(v.name)}`);
        assert.equal((await b.store.listDocs(OUTCOMES)).filter((o) => o.id.startsWith(`${job!.uuid}.`)).length, 0, "no nested flow's outcome left");
        assert.equal((await b.store.list({ kind: 'image' })).items.length, images, 'no template image left');
        assert.equal((await b.store.listDocs(JOURNALS)).length, 0, 'no flow journal left');
        await checkHosts(ts.map((t) => t.vm));
      } finally {
        await clear(ts);
      }
    });
  }

  /** Each Running VM has its domain and its one reservation on its host; any other VM has neither. */
  const checkHosts = async (vms: string[]): Promise<void> => {
    const all = await Promise.all(vms.map(async (v) => ((await apiB.get(`/v1/vm-instances/${v}`)).status === 200 ? vmOf(v) : { uuid: v, state: 'Expunged' })));
    for (const v of all) {
      const on = sim.hosts.filter((h) => h.driver.domains.has(domainName(v.uuid))).length;
      assert.equal(on, v.state === 'Running' ? 1 : 0, `domains of VM ${v.uuid} (${v.state})`);
    }
    for (const h of ids.hosts) {
      const consumers = new Set((await b.store.claims(capacityNamespace('host', h))).map((x) => x.key));
      for (const v of all) assert.equal(consumers.has(v.uuid), v.state === 'Running' && v.hostUuid === h, `host ${h} reservation of VM ${v.uuid} (${v.state})`);
    }
  };
});
