// Functional tier: a VM on shared primary storage whose volumes were made on a host that is gone
// (the VM migrated away, then the host was removed — scripts/aio remove-host does exactly this)
// is expunged through another connected host of the storage's clusters (it failed with a 404
// naming the removed host).
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import * as S from '../../shared/protocol/storage.js';

describe('functional: expunging a VM on shared storage whose volume’s host was removed', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;

  before(async () => {
    fc = await startFakeCloud(cleanup, { extraHosts: 1, storagePerHost: true, psType: 'SharedMountPoint' });
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
    const before = fc.storages[0]!.callsOf(S.DeleteVolume.name).length;
    const r = await fc.api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { expunge: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(fc.storages[0]!.callsOf(S.DeleteVolume.name).slice(before).map((x: any) => x.volumeUuid), [root], 'deleted through host 1’s storage agent');
    assert.equal(await fc.controller.store.get(root), undefined);
    assert.equal(await fc.controller.store.get(vm.uuid), undefined);
  });
});
