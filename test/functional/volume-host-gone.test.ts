// Functional tier: a VM on shared primary storage whose volumes were made on a host that is gone
// (the VM migrated away, then the host was removed — scripts/aio remove-host does exactly this)
// is expunged through another connected host of the storage's clusters (it failed with a 404
// naming the removed host), and likewise when that host is still there but dead (the expunge
// failed with 503: the delete went to the dead host).
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import * as S from '../../shared/protocol/storage.js';
import { hostCapacity } from '../../controller/allocator/host.js';
import { ipNamespace } from '../../controller/allocator/ip.js';


/** The DeleteVolume calls each host's storage agent got (in `fc.hosts` order), and which hosts deleted a volume since `before`. */
function deleteCalls(cloud: () => FakeCloud): { deletes: () => string[][]; deletedBy: (before: string[][], volume: string) => number[] } {
  const deletes = (): string[][] => cloud().storages.map((s) => s.callsOf(S.DeleteVolume.name).map((x: any) => String(x.volumeUuid)));
  const deletedBy = (before: string[][], volume: string): number[] => deletes().flatMap((calls, i) => (calls.slice(before[i]!.length).includes(volume) ? [i] : []));
  return { deletes, deletedBy };
}

/** What the host tracker does when a host goes silent: the host Disconnected, its VM Unknown. */
async function hostDies(fc: FakeCloud, host: FakeCloud['hosts'][number], vmUuid: string): Promise<void> {
  await host.kill();
  await fc.controller.store.update(host.uuid, { status: 'Disconnected' });
  await fc.controller.store.update(vmUuid, { state: 'Unknown' });
}

describe('functional: expunging a VM on shared storage whose volume’s host was removed or died', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const { deletes, deletedBy } = deleteCalls(() => fc);

  before(async () => {
    fc = await startFakeCloud(cleanup, { extraHosts: 2, storagePerHost: true, psType: 'SharedMountPoint' });
  });

  it('the volume’s files are deleted through a connected host; the VM and its volume records go', async () => {
    const [h1, h2] = fc.hosts.map((x) => x.uuid);
    const vm = (await fc.createVm('gone-host-vm', { hostUuid: h2 })).body;
    assert.equal(vm.hostUuid, h2);
    const root = String(vm.rootVolumeUuid);
    assert.equal((await fc.controller.store.get(root))?.hostUuid, h2, 'the volume records the host it was made on');
    // as after a migration to host 1: the VM is no longer on host 2, then host 2 is removed
    assert.equal((await fc.action(vm.uuid, 'stop')).body.state, 'Stopped');
    await fc.controller.store.update(vm.uuid, { lastHostUuid: h1 });
    await fc.controller.store.delete(h2!);
    assert.equal((await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`)).status, 200);
    const before = deletes();
    const r = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { expunge: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const by = deletedBy(before, root);
    assert.equal(by.length, 1, `deleted once, by ${JSON.stringify(by)}`);
    assert.notEqual(by[0], 1, 'not through the removed host 2’s agent');
    assert.equal(await fc.controller.store.get(root), undefined);
    assert.equal(await fc.controller.store.get(vm.uuid), undefined);
  });

  it('the host is dead, not removed: the files are deleted through a connected host all the same', async () => {
    const h3 = fc.hosts[2]!.uuid;
    const vm = (await fc.createVm('dead-host-vm', { hostUuid: h3 })).body;
    const root = String(vm.rootVolumeUuid);
    assert.equal((await fc.controller.store.get(root))?.hostUuid, h3);
    assert.equal((await fc.action(vm.uuid, 'stop')).body.state, 'Stopped');
    await fc.hosts[2]!.kill();
    await fc.controller.store.update(h3, { status: 'Disconnected' });
    assert.equal((await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`)).status, 200);
    const before = deletes();
    const r = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { expunge: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(deletedBy(before, root), [0], 'through host 1’s storage agent, the only connected one left');
    assert.equal(await fc.controller.store.get(root), undefined);
    assert.equal(await fc.controller.store.get(vm.uuid), undefined);
  });
});

describe('functional: a VM Unknown on a dead host with local storage', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;

  before(async () => {
    fc = await startFakeCloud(cleanup, { extraHosts: 1, storagePerHost: true });
  });

  it('is destroyed and expunged; its local files stay on the host and are named in the result', async () => {
    const h2 = fc.hosts[1]!;
    const vm = (await fc.createVm('unknown-local-vm', { hostUuid: h2.uuid })).body;
    const root = String(vm.rootVolumeUuid);
    const installPath = (await fc.controller.store.get(root))!.installPath;
    await hostDies(fc, h2, vm.uuid);
    const del = await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    const calls = fc.storages.map((s) => s.callsOf(S.DeleteVolume.name).length);
    const ex = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { expunge: {} });
    assert.equal(ex.status, 200, JSON.stringify(ex.body));
    const result = ex.body.result ?? ex.body;
    assert.deepEqual(result.leftFiles, [{ volumeUuid: root, hostUuid: h2.uuid, primaryStorageUuid: fc.ids.ps, ...(installPath ? { installPath } : {}) }]);
    assert.deepEqual(fc.storages.map((s) => s.callsOf(S.DeleteVolume.name).length), calls, 'no storage agent was asked: only the dead host has the files');
    assert.equal(await fc.controller.store.get(root), undefined);
    assert.equal(await fc.controller.store.get(vm.uuid), undefined);
  });
});

describe('functional: a VM Unknown on a dead host with shared storage', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;
  const { deletes, deletedBy } = deleteCalls(() => fc);

  before(async () => {
    fc = await startFakeCloud(cleanup, { extraHosts: 1, storagePerHost: true, psType: 'SharedMountPoint' });
  });

  // ZStack's way: a VM Unknown on a host that is down can be destroyed and expunged; the
  // controller lets go of its capacity, addresses and volumes (shared files through a connected
  // host); the domain is destroyed when the host comes back (vmsync fences it)
  it('a VM Unknown on a dead host is destroyed and expunged: capacity, address and shared files released', async () => {
    const h2 = fc.hosts[1]!;
    const vm = (await fc.createVm('unknown-vm', { hostUuid: h2.uuid })).body;
    const root = String(vm.rootVolumeUuid);
    const ip = String((await fc.api.get(`/v1/vm-instances/${vm.uuid}`)).body.vmNics[0].ip);
    await hostDies(fc, h2, vm.uuid);
    const del = await fc.api.del(`/v1/vm-instances/${vm.uuid}?wait=true`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal((await fc.api.get(`/v1/vm-instances/${vm.uuid}`)).body.state, 'Destroyed');
    const cap = await hostCapacity(fc.controller.store, (await fc.controller.store.get(h2.uuid))!);
    assert.equal(cap.usedCpu, 0, 'the dead host holds no capacity for it');
    const before = deletes();
    const ex = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { expunge: {} });
    assert.equal(ex.status, 200, JSON.stringify(ex.body));
    assert.deepEqual(deletedBy(before, root), [0], 'the shared file through host 1');
    assert.equal(await fc.controller.store.get(root), undefined);
    assert.equal(await fc.controller.store.get(vm.uuid), undefined);
    const claims = await fc.controller.store.claims(ipNamespace(fc.ids.l3));
    assert.equal(claims.some((c) => c.key === ip), false, 'its address is free');
    assert.deepEqual((await fc.controller.store.get(h2.uuid))!._fenceOnReturn, [vm.uuid], 'its domain goes when the host returns (vmsync)');
  });
});
