// Functional tier: placement and cold migration on the fake cloud with three hosts, each with its
// own fake storage agent (so every call is seen on the host it went to).
//  - affinity groups across three hosts: antiHard spreads three VMs over the three hosts and
//    refuses a fourth naming the group and every host; antiSoft places the fourth anyway; a
//    stopped member cannot cold-migrate next to a running one.
//  - cold migration of a Stopped VM on local storage (controller/compute/cold-migrate.ts): the
//    volumes are exported by the source host and imported by the destination, then repointed; the
//    source is freed only after success. An agent failure, a fault injected at any step and a
//    controller killed mid-copy all leave the VM Stopped on the source with its files, and no
//    copy on the destination.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { JOURNALS } from '../../controller/workflow/flow.js';
import { until } from '../harness/assert.js';
import * as S from '../../shared/protocol/storage.js';

const MiB = 1024 * 1024;

describe('functional: three hosts — affinity placement, cold migration of a stopped VM on local storage', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  let h: string[];

  before(async () => {
    fc = await startFakeCloud(cleanup, { extraHosts: 2, storagePerHost: true, psType: 'LocalStorage' });
    h = fc.hosts.map((x) => x.uuid);
    fc.ids.disk = (await fc.api.post('/v1/disk-offerings', { name: 'cm-disk', diskSize: 32 * MiB })).body.uuid;
  });

  const store = () => fc.controller.store;
  const journals = async (): Promise<string[]> => (await store().listDocs<{ flow: string }>(JOURNALS)).map((j) => j.doc.flow);
  /** Calls of a storage command made on host i's agent. */
  const seen = (i: number, command: string): any[] => fc.storages[i]!.callsOf(command);
  const counts = () => fc.storages.map((s) => ({ imp: s.callsOf(S.VolumeImport.name).length, exp: s.callsOf(S.VolumeExport.name).length, del: s.callsOf(S.DeleteVolume.name).length }));
  /** A VM with a root and a data volume on host 0's local storage, stopped. */
  async function stoppedVm(name: string): Promise<{ vm: any; vols: string[] }> {
    const r = await fc.createVm(name, { hostUuid: h[0], dataDiskOfferingUuids: [fc.ids.disk] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await fc.action(r.body.uuid, 'stop')).body.state, 'Stopped');
    const vols = (await store().list({ kind: 'volume', filters: [{ field: 'vmInstanceUuid', op: '=', value: r.body.uuid }] })).items;
    assert.equal(vols.length, 2);
    for (const v of vols) assert.equal(v.hostUuid, h[0]);
    return { vm: r.body, vols: vols.map((v) => v.uuid) };
  }
  /** The VM and its volumes are on host i, Stopped, with no flow left. */
  async function on(i: number, vmUuid: string, vols: string[]): Promise<void> {
    const vm = await store().get(vmUuid);
    assert.equal(vm?.state, 'Stopped');
    assert.equal(vm?.lastHostUuid, h[i]);
    for (const u of vols) assert.equal((await store().get(u))?.hostUuid, h[i], `volume ${u} on host ${i}`);
    assert.deepEqual(await journals(), []);
  }

  const hostsOf = async (uuids: string[]): Promise<string[]> => Promise.all(uuids.map(async (u) => String((await store().get(u))?.hostUuid)));

  it('antiHard across three hosts: three VMs on three hosts, a fourth refused naming the group and each host; antiSoft places the fourth', async () => {
    const hard = (await fc.api.post('/v1/affinity-groups', { name: 'three-hard', policy: 'antiHard' })).body;
    const soft = (await fc.api.post('/v1/affinity-groups', { name: 'three-soft', policy: 'antiSoft' })).body;
    for (const g of [hard, soft]) {
      const made: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await fc.createVm(`${g.name}-${i}`, { affinityGroupUuid: g.uuid });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        made.push(r.body.uuid);
      }
      assert.deepEqual((await hostsOf(made)).sort(), [...h].sort(), `${g.name}: one VM per host`);
      const fourth = await fc.createVm(`${g.name}-3`, { affinityGroupUuid: g.uuid });
      if (g === hard) {
        assert.ok(fourth.status >= 400 && fourth.status < 500, JSON.stringify(fourth.body));
        for (const n of ['fc-host ', 'fc-host2', 'fc-host3']) assert.match(fourth.body.message, new RegExp(`${n}.*affinity group three-hard \\(antiHard\\)`), n);
      } else {
        assert.equal(fourth.status, 200, JSON.stringify(fourth.body));
        made.push(fourth.body.uuid);
      }
      for (const u of made) await fc.api.del(`/v1/vm-instances/${u}?wait=true`);
    }
  });

  it('antiHard and cold migration: a stopped member does not move next to a running one (refused naming the group); it goes to the free host', async () => {
    const g = (await fc.api.post('/v1/affinity-groups', { name: 'cold-hard', policy: 'antiHard' })).body;
    const x0 = (await fc.createVm('cold-hard-0', { hostUuid: h[0], affinityGroupUuid: g.uuid })).body;
    const y = (await fc.createVm('cold-hard-y', { hostUuid: h[2], affinityGroupUuid: g.uuid })).body;
    assert.equal((await fc.action(y.uuid, 'stop')).body.state, 'Stopped');
    const x1 = (await fc.createVm('cold-hard-1', { hostUuid: h[1], affinityGroupUuid: g.uuid })).body;
    assert.equal(x1.hostUuid, h[1]);
    const next = await fc.action(y.uuid, 'migrate', { hostUuid: h[0] });
    assert.ok(next.status >= 400 && next.status < 500, JSON.stringify(next.body));
    assert.match(next.body.message, /affinity group cold-hard \(antiHard\) already has cold-hard-0/);
    const none = await fc.action(y.uuid, 'migrate', {});
    assert.ok(none.status >= 400 && none.status < 500, 'both other hosts run a member');
    await fc.api.del(`/v1/vm-instances/${x1.uuid}?wait=true`);
    const moved = await fc.action(y.uuid, 'migrate', {});
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    assert.equal(moved.body.lastHostUuid, h[1], 'to the host no member runs on');
    for (const u of [x0.uuid, y.uuid]) await fc.api.del(`/v1/vm-instances/${u}?wait=true`);
  });

  it('GET …/migration-targets of a stopped local-storage VM lists the other two hosts', async () => {
    const { vm } = await stoppedVm('cm-targets');
    const t = await fc.api.get(`/v1/vm-instances/${vm.uuid}/migration-targets`);
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.deepEqual(t.body.inventories.map((x: any) => x.uuid).sort(), [h[1], h[2]].sort());
    assert.equal(t.body.rejected.find((x: any) => x.hostUuid === h[0])?.reason, 'the VM runs there');
  });

  it('migrates both volumes to the chosen host: exported by the source, imported by the destination with the source’s ticket, source freed after; it starts there', async () => {
    const { vm, vols } = await stoppedVm('cm-ok');
    const before = counts();
    const r = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions`, { migrate: { hostUuid: h[2] } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    let job: any;
    for (;;) {
      job = (await fc.api.get(`/v1/jobs/${r.body.jobUuid}`)).body;
      if (job.state !== 'Running') break;
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal(job.state, 'Succeeded', JSON.stringify(job));
    assert.equal(job.progress, 100);
    await on(2, vm.uuid, vols);
    const after = counts();
    assert.equal(after[0]!.exp - before[0]!.exp, 2, 'the source exported both volumes');
    assert.equal(after[2]!.imp - before[2]!.imp, 2, 'the destination imported both');
    assert.equal(after[1]!.imp, before[1]!.imp, 'the third host took no part');
    assert.equal(after[0]!.del - before[0]!.del, 2, 'the source files were freed');
    assert.equal(after[2]!.del, before[2]!.del, 'nothing deleted on the destination');
    const imp = seen(2, S.VolumeImport.name).slice(-2);
    const exp = seen(0, S.VolumeExport.name).slice(-2);
    assert.deepEqual(imp.map((x) => x.volumeUuid).sort(), [...vols].sort());
    assert.deepEqual(exp.map((x) => x.volumeUuid).sort(), [...vols].sort());
    for (const x of imp) assert.match(x.from.ticket, /^[0-9a-f]{32}$/);
    assert.equal(imp[0].from.url, fc.storages[0]!.url, 'pulled from the source host’s storage agent');
    assert.equal(imp[0].from.token, fc.storages[0]!.token);
    assert.equal(seen(0, S.VolumeExportEnd.name).length >= 2, true, 'the export tickets were ended');
    const started = await fc.action(vm.uuid, 'start');
    assert.equal(started.status, 200, JSON.stringify(started.body));
    assert.equal(started.body.hostUuid, h[2], 'local storage pins it to its new host');
    assert.ok(fc.hosts[2]!.kvm.driver.domains.has(`tstack-${vm.uuid}`), 'its domain runs on host 2’s hypervisor');
    assert.equal((await fc.action(vm.uuid, 'stop')).body.state, 'Stopped');
  });

  it('refuses with a 4xx: the host it is on, an unknown host, a running VM on local storage (no live storage copy)', async () => {
    const { vm } = await stoppedVm('cm-4xx');
    const same = await fc.action(vm.uuid, 'migrate', { hostUuid: h[0] });
    assert.equal(same.status, 400, JSON.stringify(same.body));
    const unknown = await fc.action(vm.uuid, 'migrate', { hostUuid: '00000000-0000-4000-8000-000000000000' });
    assert.equal(unknown.status, 404, JSON.stringify(unknown.body));
    await fc.action(vm.uuid, 'start');
    const live = await fc.action(vm.uuid, 'migrate', {});
    assert.ok(live.status >= 400 && live.status < 500, JSON.stringify(live.body));
    await fc.action(vm.uuid, 'stop');
  });

  it('the destination’s import fails: rolled back — the VM stays Stopped on the source, the copies on the destination are deleted, the source is not touched', async () => {
    const { vm, vols } = await stoppedVm('cm-fail');
    const before = counts();
    fc.storages[1]!.failNext(S.VolumeImport.name, 'CHECKSUM_MISMATCH', 'sha256 differs');
    const r = await fc.action(vm.uuid, 'migrate', { hostUuid: h[1] });
    assert.equal(r.body.code, 'CHECKSUM_MISMATCH', JSON.stringify(r.body));
    await on(0, vm.uuid, vols);
    const after = counts();
    assert.equal(after[0]!.del, before[0]!.del, 'the source keeps its files');
    assert.deepEqual(seen(1, S.DeleteVolume.name).slice(before[1]!.del).map((x) => x.volumeUuid), [vols[0]], 'the (partial) copy on the destination is deleted');
  });

  for (const step of ['copy', 'switch']) {
    it(`fault injected at the ${step} step: rolled back to the source, the destination’s copies deleted`, async () => {
      const { vm, vols } = await stoppedVm(`cm-fault-${step}`);
      const before = counts();
      process.env.TSTACK_FAULT_INJECT = `vm-cold-migrate:${step}`;
      let r;
      try {
        r = await fc.action(vm.uuid, 'migrate', { hostUuid: h[1] });
      } finally {
        delete process.env.TSTACK_FAULT_INJECT;
      }
      assert.equal(r.body.code, 'INJECTED_FAULT', JSON.stringify(r.body));
      await on(0, vm.uuid, vols);
      const after = counts();
      assert.equal(after[0]!.del, before[0]!.del, 'the source keeps its files');
      const deleted = seen(1, S.DeleteVolume.name).slice(before[1]!.del).map((x) => x.volumeUuid);
      assert.deepEqual(deleted.sort(), (step === 'copy' ? [vols[0]] : [...vols]).sort());
      // it migrates fine afterwards
      const ok = await fc.action(vm.uuid, 'migrate', { hostUuid: h[1] });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      await on(1, vm.uuid, vols);
    });
  }

  it('a controller killed while the destination copies: the restarted controller rolls back — VM Stopped on the source, copy deleted there', async () => {
    const { vm, vols } = await stoppedVm('cm-crash');
    const before = counts();
    const held = fc.storages[2]!.hold(S.VolumeImport.name);
    const r = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions`, { migrate: { hostUuid: h[2] } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    await Promise.race([held.reached, new Promise((_, rej) => setTimeout(() => rej(new Error('import never called')), 20_000))]);
    assert.equal((await store().get(vm.uuid))?.state, 'Migrating');
    await fc.crashController();
    held.release();
    await on(0, vm.uuid, vols);
    // the acknowledged job ends with why (the flow rolled back on resume), not INTERRUPTED
    const j = await until('the migrate job ended', async () => {
      const x = (await fc.api.get(`/v1/jobs/${r.body.jobUuid as string}`)).body;
      return x.state !== 'Running' && x;
    }, 20_000, 100);
    assert.equal(j.state, 'Failed');
    assert.equal(j.error.code, 'CANCELLED', JSON.stringify(j.error));
    assert.match(j.error.message, /restarted during this flow; rolled back/);
    assert.equal(counts()[0]!.del, before[0]!.del, 'the source keeps its files');
    assert.ok(seen(2, S.DeleteVolume.name).slice(before[2]!.del).some((x) => x.volumeUuid === vols[0]), 'the destination’s copy is deleted');
    const started = await fc.action(vm.uuid, 'start');
    assert.equal(started.body.hostUuid, h[0], 'and it starts on the source');
    await fc.action(vm.uuid, 'stop');
  });
});
