// Functional tier: a controller killed in the middle of a volume snapshot, a revert or a VM
// clone (fake cloud: the storage agent holds the call, the controller is closed without waiting
// for its flows, a fresh one starts on the same inventory and resumes them). Whatever the moment,
// what is left is whole: a Ready snapshot that the agent has too, a volume record matching a
// finished revert, clones that are complete VMs, and no template, half-made VM or volume.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { JOURNALS } from '../../controller/workflow/flow.js';
import * as S from '../../shared/protocol/storage.js';

describe('functional: controller killed mid snapshot / revert / clone; full clones', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;

  before(async () => {
    fc = await startFakeCloud(cleanup);
  });

  const store = () => fc.controller.store;
  const journals = async (): Promise<string[]> => (await store().listDocs<{ flow: string }>(JOURNALS)).map((j) => j.doc.flow);
  const count = async (kind: string): Promise<number> => (await store().list({ kind })).total;

  /** POST, expecting a job (202); the job's outcome is lost with the controller. */
  async function start(path: string, body: unknown): Promise<void> {
    const r = await fc.api.post(path, body);
    assert.equal(r.status, 202, JSON.stringify(r.body));
  }
  async function ok(path: string, body: unknown): Promise<any> {
    const r = await fc.api.post(`${path}?wait=true`, body);
    assert.ok(r.status === 200 || r.status === 201, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }
  /** A Ready volume no running VM uses: the root volume of a VM created stopped. */
  const volume = async (name: string): Promise<any> => {
    const r = await fc.createVm(name, { strategy: 'CreateStopped' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return store().get(r.body.rootVolumeUuid);
  };

  /** Hold `command` on the storage agent, start the operation, crash the controller while the agent works, let the held call go. */
  async function crashDuring(command: string, o: { after?: boolean; skip?: number }, path: string, body: unknown): Promise<void> {
    const h = fc.storage.hold(command, o);
    await start(path, body);
    await Promise.race([h.reached, new Promise((_, rej) => setTimeout(() => rej(new Error(`${command} was never called`)), 20_000))]);
    await fc.crashController();
    h.release();
  }

  for (const after of [true, false]) {
    it(`snapshot: killed while the agent takes it (${after ? 'it did' : 'it did not'}); the restarted controller completes it`, async () => {
      const vol = await volume(`crash-snap-${after}`);
      await crashDuring(S.CreateSnapshot.name, { after }, '/v1/volume-snapshots', { name: 's1', volumeUuid: vol.uuid });
      assert.deepEqual(await journals(), [], 'no unfinished flow');
      const snaps = await store().byParent('volume-snapshot', vol.uuid);
      assert.equal(snaps.length, 1);
      assert.equal(snaps[0]!.status, 'Ready');
      assert.deepEqual(fc.storageState.snapshots.get(vol.uuid)?.map((x) => x.snapshotUuid), [snaps[0]!.uuid], 'the agent has exactly that snapshot');
      assert.equal((await store().get(vol.uuid))?._currentSnapshotUuid, snaps[0]!.uuid);
    });
  }

  it('revert: killed while the agent reverts; the restarted controller reverts again and records it', async () => {
    const vol = await volume('crash-revert');
    const s1 = await ok('/v1/volume-snapshots', { name: 's1', volumeUuid: vol.uuid });
    const s2 = await ok(`/v1/volumes/${vol.uuid}/actions`, { createSnapshot: { name: 's2' } });
    assert.equal((await store().get(vol.uuid))?._currentSnapshotUuid, s2.uuid);
    const before = fc.storageState.reverts.length;
    await crashDuring(S.RevertSnapshot.name, { after: true }, `/v1/volume-snapshots/${s1.uuid}/actions`, { revert: {} });
    assert.deepEqual(await journals(), []);
    assert.deepEqual(fc.storageState.reverts.slice(before), [{ volumeUuid: vol.uuid, snapshotUuid: s1.uuid }, { volumeUuid: vol.uuid, snapshotUuid: s1.uuid }], 'reverted again after the restart');
    const v = await store().get(vol.uuid);
    assert.equal(v?._currentSnapshotUuid, s1.uuid, 'the record matches the disk');
    assert.equal(v?.status, 'Ready');
  });

  it('revert through the common path: refused (409) while a running VM uses the volume, nothing left behind', async () => {
    const vm = (await fc.createVm('crash-revert-vm')).body;
    const s = await ok('/v1/volume-snapshots', { name: 'root-s', volumeUuid: vm.rootVolumeUuid });
    const r = await fc.api.post(`/v1/volume-snapshots/${s.uuid}/actions?wait=true`, { revert: {} });
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.deepEqual(await journals(), []);
    assert.equal((await fc.action(vm.uuid, 'stop')).body.state, 'Stopped');
  });

  it('clone: killed while the template is copied; no template, no clone, no volume is left', async () => {
    const vm = (await fc.createVm('crash-clone-src', { strategy: 'CreateStopped' })).body;
    const vms = await count('vm-instance');
    const vols = await count('volume');
    const images = await count('image');
    await crashDuring(S.VolumeToImage.name, { after: true }, `/v1/vm-instances/${vm.uuid}/actions`, { clone: { names: ['cc1', 'cc2'] } });
    assert.deepEqual(await journals(), []);
    assert.equal(await count('image'), images, 'the template record is gone');
    assert.deepEqual([...fc.storageState.images], [], 'and so is its copy in the image store');
    assert.equal(await count('vm-instance'), vms);
    assert.equal(await count('volume'), vols);
  });

  it("clone: killed while the second clone's root volume is made; the first clone is whole, the second and the template are gone", async () => {
    const vm = (await fc.createVm('crash-clone-src2', { strategy: 'CreateStopped' })).body;
    const vms = await count('vm-instance');
    const vols = await count('volume');
    const images = await count('image');
    await crashDuring(S.CreateRootVolume.name, { skip: 1 }, `/v1/vm-instances/${vm.uuid}/actions`, { clone: { names: ['cd1', 'cd2'] } });
    assert.deepEqual(await journals(), []);
    assert.equal(await count('image'), images);
    assert.deepEqual([...fc.storageState.images], []);
    const all = (await store().list({ kind: 'vm-instance' })).items;
    assert.equal(all.length, vms + 1, 'one clone');
    const c1 = all.find((x) => x.name === 'cd1');
    assert.ok(c1, 'the first clone stays');
    assert.equal(c1.state, 'Stopped');
    assert.ok(await store().get(String(c1.rootVolumeUuid)), 'with its root volume');
    assert.equal(await count('volume'), vols + 1, 'no volume of the second clone');
  });

  it('clone full: each clone is made stopped, its root volume flattened, then started like the running source', async () => {
    const vm = (await fc.createVm('full-src')).body;
    const r = await fc.action(vm.uuid, 'clone', { names: ['full1'], full: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const c = r.body.clones[0];
    assert.equal(c.state, 'Running');
    const flattened = fc.storage.callsOf(S.FlattenVolume.name) as Array<{ volumeUuid: string }>;
    assert.deepEqual(flattened.map((x) => x.volumeUuid), [c.rootVolumeUuid]);
    assert.deepEqual(await journals(), []);
    assert.deepEqual([...fc.storageState.images], [], 'the template is gone');
    const bad = await fc.action(vm.uuid, 'clone', { names: ['x'], withDataVolumes: true });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
  });
});
