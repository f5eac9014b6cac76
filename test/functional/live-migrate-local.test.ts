// Functional tier: live migration of a running VM on local storage (controller/compute/migrate.ts)
// on the fake cloud with two hosts, each with its own fake storage agent. Off by default: the
// global config localStoragePrimaryStorage.liveMigrationWithStorage.allow turns it on. Then the
// destination gets an empty volume of the root's virtual size, the source kvmagent migrates with
// copyStorage, the volume record follows the VM and the source's copy is deleted; a VM with a
// local data volume, or with snapshots, is refused (409). A fault before the disk copy leaves the
// VM and its disk on the source and deletes the empty volume; a fault after it leaves everything
// on the destination.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import type { MigrateOptions } from '../../kvmagent/hypervisor/driver.js';
import { globalConfigUuid } from '../../controller/config/global-config.js';
import * as S from '../../shared/protocol/storage.js';
import { JOURNALS } from '../../controller/workflow/flow.js';
import { until } from '../harness/assert.js';

const MiB = 1024 * 1024;
const CONFIG = 'localStoragePrimaryStorage.liveMigrationWithStorage.allow';

describe('functional: live migration of a VM on local storage (its root disk copied), behind a global config', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  let h: string[];
  /** The options of every live migration the hosts' fake hypervisors did. */
  const migrations: MigrateOptions[] = [];

  before(async () => {
    fc = await startFakeCloud(cleanup, { extraHosts: 1, storagePerHost: true, psType: 'LocalStorage' });
    h = fc.hosts.map((x) => x.uuid);
    fc.ids.disk = (await fc.api.post('/v1/disk-offerings', { name: 'lm-disk', diskSize: 32 * MiB })).body.uuid;
    // the fake hypervisors: a migrated domain arrives on the other host's (both are on 127.0.0.1)
    for (const [i, host] of fc.hosts.entries()) {
      const drv = host.kvm.driver;
      const other = fc.hosts[1 - i]!.kvm.driver;
      const orig = drv.migrate.bind(drv);
      drv.migrate = async (name, o) => {
        const dom = drv.domains.get(name);
        await orig(name, o);
        migrations.push(o);
        if (dom) other.domains.set(name, dom);
      };
    }
  });

  const store = () => fc.controller.store;
  const setAllow = async (value: string) => {
    const r = await fc.api.post(`/v1/global-configs/${globalConfigUuid(CONFIG)}/actions`, { updateGlobalConfig: { value } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  };
  const dels = (i: number): string[] => fc.storages[i]!.callsOf(S.DeleteVolume.name).map((x: any) => x.volumeUuid);
  const creates = (i: number): any[] => fc.storages[i]!.callsOf(S.CreateEmptyVolume.name);
  /** The VM (Running) and its root volume are on host i; its domain runs there only. */
  async function on(i: number, vmUuid: string): Promise<void> {
    const vm = await store().get(vmUuid);
    assert.equal(vm?.state, 'Running');
    assert.equal(vm?.hostUuid, h[i]);
    assert.equal((await store().get(String(vm?.rootVolumeUuid)))?.hostUuid, h[i], `root volume on host ${i}`);
    assert.deepEqual(fc.hosts.map((x) => x.kvm.driver.domains.has(`tstack-${vmUuid}`)), [i === 0, i === 1], 'the domain runs on that host only');
  }
  async function runningVm(name: string, extra: Record<string, unknown> = {}): Promise<any> {
    const r = await fc.createVm(name, { hostUuid: h[0], ...extra });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await on(0, r.body.uuid);
    return r.body;
  }

  it('refused while the global config is false (its default), naming the config; the VM stays where it is', async () => {
    const cfg = (await fc.api.get(`/v1/global-configs/${globalConfigUuid(CONFIG)}`)).body;
    assert.deepEqual([cfg.category, cfg.name, cfg.value, cfg.defaultValue], ['localStoragePrimaryStorage', 'liveMigrationWithStorage.allow', 'false', 'false']);
    const vm = await runningVm('lm-off');
    const t = (await fc.api.get(`/v1/vm-instances/${vm.uuid}/migration-targets`)).body;
    assert.deepEqual(t.inventories, [], 'no migration target while the config is false');
    assert.match(t.rejected.find((x: any) => x.hostUuid === h[1])?.reason, /liveMigrationWithStorage\.allow/);
    const r = await fc.action(vm.uuid, 'migrate', {});
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.match(r.body.message, new RegExp(CONFIG.replace(/\./g, '\\.')));
    await on(0, vm.uuid);
    assert.equal(migrations.length, 0);
  });

  it('allowed: an empty volume of the root’s virtual size on the destination, migrated with copyStorage; the volume follows the VM, the source copy is deleted', async () => {
    await setAllow('true');
    const vm = await runningVm('lm-ok');
    assert.deepEqual((await fc.api.get(`/v1/vm-instances/${vm.uuid}/migration-targets`)).body.inventories.map((x: any) => x.uuid), [h[1]], 'the other host can take it now');
    const before = { c1: creates(1).length, d0: dels(0).length, d1: dels(1).length };
    const r = await fc.action(vm.uuid, 'migrate', {});
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await on(1, vm.uuid);
    const made = creates(1).slice(before.c1);
    const info = fc.storages[0]!.callsOf(S.VolumeInfoCmd.name).at(-1) as any;
    assert.equal(info?.volumeUuid, vm.rootVolumeUuid, 'the source agent was asked for the root volume’s virtual size');
    // (the fake source answers 64 MiB)
    assert.deepEqual(made.map((x) => [x.volumeUuid, x.size]), [[vm.rootVolumeUuid, 64 * MiB]], 'the destination volume has the source’s virtual size');
    assert.equal(migrations.at(-1)?.copyStorage, true, 'libvirt copies the disk');
    assert.deepEqual(dels(0).slice(before.d0), [vm.rootVolumeUuid], 'the source’s copy is deleted after the move');
    assert.deepEqual(dels(1).slice(before.d1), [vm.rootVolumeUuid], 'only the stale-copy clean-up before the create ran on the destination');
    assert.equal((await store().claims(`host-capacity:${h[0]}`)).some((x) => x.key === vm.uuid), false);
    // and back, without a host named
    const back = await fc.action(vm.uuid, 'migrate', {});
    assert.equal(back.status, 200, JSON.stringify(back.body));
    await on(0, vm.uuid);
    await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
  });

  it('refused (409) for a VM with a data volume on local storage, and for a root volume with snapshots', async () => {
    const withData = await runningVm('lm-data', { dataDiskOfferingUuids: [fc.ids.disk] });
    const r = await fc.action(withData.uuid, 'migrate', {});
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.match(r.body.message, /data volume/);
    await on(0, withData.uuid);
    await fc.api.del(`/v1/vm-instances/${withData.uuid}?wait=true`);
    const snapped = await runningVm('lm-snap');
    const s = await fc.api.post(`/v1/volumes/${snapped.rootVolumeUuid}/actions?wait=true`, { createSnapshot: { name: 'lm-s1' } });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    const r2 = await fc.action(snapped.uuid, 'migrate', {});
    assert.equal(r2.status, 409, JSON.stringify(r2.body));
    assert.match(r2.body.message, /snapshot/);
    await on(0, snapped.uuid);
    await fc.api.del(`/v1/vm-instances/${snapped.uuid}?wait=true`);
  });

  for (const step of ['disks', 'migrate']) {
    it(`fault injected at the ${step} step: the VM and its disk are on exactly one host, the records say which`, async () => {
      const vm = await runningVm(`lm-fault-${step}`);
      const before = { d0: dels(0).length, d1: dels(1).length };
      process.env.TSTACK_FAULT_INJECT = `vm-migrate:${step}`;
      let r;
      try {
        r = await fc.action(vm.uuid, 'migrate', {});
      } finally {
        delete process.env.TSTACK_FAULT_INJECT;
      }
      assert.equal(r.body.code, 'INJECTED_FAULT', JSON.stringify(r.body));
      if (step === 'disks') {
        await on(0, vm.uuid);
        assert.deepEqual(dels(0).slice(before.d0), [], 'the source keeps its disk');
        assert.deepEqual(dels(1).slice(before.d1), [vm.rootVolumeUuid, vm.rootVolumeUuid], 'the empty volume on the destination is deleted again');
      } else {
        await on(1, vm.uuid);
        assert.deepEqual(dels(0).slice(before.d0), [vm.rootVolumeUuid], 'the disk moved: the source’s copy is deleted');
      }
      assert.equal((await store().claims(`host-capacity:${h[step === 'disks' ? 1 : 0]}`)).some((x) => x.key === vm.uuid), false, 'no reservation left on the other host');
      await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
    });
  }

  it('a controller killed while the VM migrates: the restarted one completes the flow and the job (Succeeded, the VM on the destination), migrated once, the source copy deleted', async () => {
    await setAllow('true');
    const vm = await runningVm('lm-crash');
    const before = { n: migrations.length, d0: dels(0).length };
    // the source's hypervisor holds the migration until the controller is gone
    const drv = fc.hosts[0]!.kvm.driver;
    const orig = drv.migrate;
    let reached!: () => void;
    let release!: () => void;
    const inMigrate = new Promise<void>((r) => (reached = r));
    const gate = new Promise<void>((r) => (release = r));
    drv.migrate = async (name, o) => {
      reached();
      await gate;
      return orig(name, o);
    };
    let job: any;
    try {
      const r = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions`, { migrate: {} });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      await Promise.race([inMigrate, new Promise((_, rej) => setTimeout(() => rej(new Error('the migration never started')), 20_000))]);
      await fc.crashController();
      release();
      job = await until('the migrate job ended', async () => {
        const j = (await fc.api.get(`/v1/jobs/${r.body.jobUuid as string}`)).body;
        return j.state !== 'Running' && j;
      }, 30_000, 100);
    } finally {
      release();
      drv.migrate = orig;
    }
    assert.equal(job.state, 'Succeeded', JSON.stringify(job.error));
    assert.equal(job.result?.hostUuid, h[1]);
    await on(1, vm.uuid);
    assert.equal(migrations.length - before.n, 1, 'migrated once: the vm/migrate sent again joined the first run');
    assert.deepEqual(dels(0).slice(before.d0), [vm.rootVolumeUuid], 'the source’s copy is deleted');
    assert.deepEqual((await store().listDocs(JOURNALS)).map((j) => j.id), []);
    assert.equal((await store().claims(`host-capacity:${h[0]}`)).some((x) => x.key === vm.uuid), false, 'no reservation left on the source');
    await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
  });

  it('false again: refused again', async () => {
    await setAllow('false');
    const vm = await runningVm('lm-off-again');
    assert.equal((await fc.action(vm.uuid, 'migrate', {})).status, 409);
    await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
  });
});
