// Functional tier: a controller killed in the middle of a volume snapshot, a revert or a VM
// clone (fake cloud: the storage agent holds the call, the controller is closed without waiting
// for its flows, a fresh one starts on the same inventory and resumes them). Whatever the moment,
// what is left is whole: a Ready snapshot that the agent has too, a volume record matching a
// finished revert, finished clones, and no template, half-made VM, volume or image.
// Then the same with an agent killed instead (the fake storage agent restarted mid-call, or the
// kvmagent while QEMU switches to a snapshot's new top): the job fails or completes, nothing is
// half-made, and the same request made again succeeds. And clones that copy data volumes.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';
import { JOURNALS, OUTCOMES } from '../../controller/workflow/flow.js';
import * as S from '../../shared/protocol/storage.js';
import { randomUUID } from 'node:crypto';

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

  /** POST, expecting a job (202): its uuid. */
  async function start(path: string, body: unknown): Promise<string> {
    const r = await fc.api.post(path, body);
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.jobUuid as string;
  }
  /** The job once it ended (the restarted controller took it over). */
  async function jobEnd(uuid: string): Promise<any> {
    const end = Date.now() + 20_000;
    for (;;) {
      const j = (await fc.api.get(`/v1/jobs/${uuid}`)).body;
      if (j.state !== 'Running' || Date.now() > end) return j;
      await new Promise((r) => setTimeout(r, 100));
    }
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
  async function crashDuring(command: string, o: { after?: boolean; skip?: number }, path: string, body: unknown): Promise<string> {
    const h = fc.storage.hold(command, o);
    const job = await start(path, body);
    await Promise.race([h.reached, new Promise((_, rej) => setTimeout(() => rej(new Error(`${command} was never called`)), 20_000))]);
    await fc.crashController();
    h.release();
    // the restarted controller resumes unfinished flows in the background (it serves meanwhile)
    const end = Date.now() + 20_000;
    while ((await journals()).length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    return job;
  }

  for (const after of [true, false]) {
    it(`snapshot: killed while the agent takes it (${after ? 'it did' : 'it did not'}); the restarted controller completes it`, async () => {
      const vol = await volume(`crash-snap-${after}`);
      const job = await crashDuring(S.CreateSnapshot.name, { after }, '/v1/volume-snapshots', { name: 's1', volumeUuid: vol.uuid });
      assert.deepEqual(await journals(), [], 'no unfinished flow');
      const snaps = await store().byParent('volume-snapshot', vol.uuid);
      assert.equal(snaps.length, 1);
      assert.equal(snaps[0]!.status, 'Ready');
      // the acknowledged job ends with the snapshot, not INTERRUPTED
      const j = await jobEnd(job);
      assert.equal(j.state, 'Succeeded', JSON.stringify(j.error));
      assert.equal(j.result?.uuid, snaps[0]!.uuid);
      assert.equal(j.result?.status, 'Ready');
      assert.deepEqual(fc.storageState.snapshots.get(vol.uuid)?.map((x) => x.snapshotUuid), [snaps[0]!.uuid], 'the agent has exactly that snapshot');
      assert.equal((await store().get(vol.uuid))?._currentSnapshotUuid, snaps[0]!.uuid);
    });
  }

  it('snapshot through the volume action: killed while the agent takes it; the job ends with the snapshot (its uuid chosen before the job started)', async () => {
    const vol = await volume('crash-snap-action');
    const job = await crashDuring(S.CreateSnapshot.name, { after: true }, `/v1/volumes/${vol.uuid}/actions`, { createSnapshot: { name: 's1' } });
    assert.deepEqual(await journals(), [], 'no unfinished flow');
    const snaps = await store().byParent('volume-snapshot', vol.uuid);
    assert.deepEqual(snaps.map((x) => x.status), ['Ready']);
    const j = await jobEnd(job);
    assert.equal(j.state, 'Succeeded', JSON.stringify(j.error));
    assert.equal(j.result?.uuid, snaps[0]!.uuid);
    assert.deepEqual([j.result?.status, j.result?.volumeUuid], ['Ready', vol.uuid], 'the snapshot, not the volume');
    // the flow's outcome was for the resumer: it goes once the job's end is stored
    for (let i = 0; i < 100 && (await store().getDoc(OUTCOMES, job)); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await store().getDoc(OUTCOMES, job), undefined, 'the outcome is deleted');
  });

  it('revert: killed while the agent reverts; the restarted controller reverts again and records it', async () => {
    const vol = await volume('crash-revert');
    const s1 = await ok('/v1/volume-snapshots', { name: 's1', volumeUuid: vol.uuid });
    const s2 = await ok(`/v1/volumes/${vol.uuid}/actions`, { createSnapshot: { name: 's2' } });
    assert.equal((await store().get(vol.uuid))?._currentSnapshotUuid, s2.uuid);
    const before = fc.storageState.reverts.length;
    const job = await crashDuring(S.RevertSnapshot.name, { after: true }, `/v1/volume-snapshots/${s1.uuid}/actions`, { revert: {} });
    assert.deepEqual(await journals(), []);
    const j = await jobEnd(job);
    assert.equal(j.state, 'Succeeded', JSON.stringify(j.error));
    assert.equal(j.result?.uuid, s1.uuid);
    assert.deepEqual(fc.storageState.reverts.slice(before), [{ volumeUuid: vol.uuid, snapshotUuid: s1.uuid }, { volumeUuid: vol.uuid, snapshotUuid: s1.uuid }], 'reverted again after the restart');
    const v = await store().get(vol.uuid);
    assert.equal(v?._currentSnapshotUuid, s1.uuid, 'the record matches the disk');
    assert.equal(v?.status, 'Ready');
  });

  it('revert: the storage agent loses it several times (TASK_LOST, then unreachable while it starts); it is sent again until answered, and recorded', async () => {
    const vol = await volume('revert-retry');
    const s1 = await ok('/v1/volume-snapshots', { name: 's1', volumeUuid: vol.uuid });
    await ok(`/v1/volumes/${vol.uuid}/actions`, { createSnapshot: { name: 's2' } });
    for (const code of ['TASK_LOST', 'AGENT_UNREACHABLE', 'AGENT_UNREACHABLE']) fc.storage.failNext(S.RevertSnapshot.name, code);
    const before = fc.storageState.reverts.length;
    await ok(`/v1/volume-snapshots/${s1.uuid}/actions`, { revert: {} });
    assert.deepEqual(fc.storageState.reverts.slice(before), [{ volumeUuid: vol.uuid, snapshotUuid: s1.uuid }]);
    assert.equal((await store().get(vol.uuid))?._currentSnapshotUuid, s1.uuid, 'the record matches the disk');
    assert.deepEqual(await journals(), []);
  });

  it('revert through the common path: refused (409) while a running VM uses the volume, nothing left behind', async () => {
    const vm = (await fc.createVm('crash-revert-vm')).body;
    const s = await ok('/v1/volume-snapshots', { name: 'root-s', volumeUuid: vm.rootVolumeUuid });
    const r = await fc.api.post(`/v1/volume-snapshots/${s.uuid}/actions?wait=true`, { revert: {} });
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.deepEqual(await journals(), []);
    assert.equal((await fc.action(vm.uuid, 'stop')).body.state, 'Stopped');
  });

  it('clone: killed while the template is copied (its image flow rolls back); the restarted controller makes the template again and finishes the clone', async () => {
    const vm = (await fc.createVm('crash-clone-src', { strategy: 'CreateStopped' })).body;
    const vms = await count('vm-instance');
    const vols = await count('volume');
    const images = await count('image');
    const job = await crashDuring(S.VolumeToImage.name, { after: true }, `/v1/vm-instances/${vm.uuid}/actions`, { clone: { names: ['cc1', 'cc2'] } });
    const j = await jobEnd(job);
    assert.equal(j.state, 'Succeeded', JSON.stringify(j.error));
    assert.deepEqual(await journals(), []);
    assert.equal(await count('image'), images, 'the template record is gone');
    assert.deepEqual([...fc.storageState.images], [], 'and so is its copy in the image store');
    const clones = (await store().list({ kind: 'vm-instance' })).items.filter((x) => x.name === 'cc1' || x.name === 'cc2');
    assert.deepEqual(clones.map((c) => [c.name, c.state]).sort(), [['cc1', 'Stopped'], ['cc2', 'Stopped']]);
    assert.deepEqual([...(j.result.cloneUuids as string[])].sort(), clones.map((c) => c.uuid).sort());
    assert.equal(await count('vm-instance'), vms + 2);
    assert.equal(await count('volume'), vols + 2, 'a root volume each');
  });

  it("clone: killed while the second clone's root volume is made, and the agent then fails that task (its caller went away); the restarted controller's clone fails with it: the first clone is whole, the second and the template are gone", async () => {
    const vm = (await fc.createVm('crash-clone-src2', { strategy: 'CreateStopped' })).body;
    const vms = await count('vm-instance');
    const vols = await count('volume');
    const images = await count('image');
    const job = await crashDuring(S.CreateRootVolume.name, { skip: 1 }, `/v1/vm-instances/${vm.uuid}/actions`, { clone: { names: ['cd1', 'cd2'] } });
    const j = await jobEnd(job);
    assert.equal(j.error?.code, 'AGENT_UNREACHABLE', `${j.state} ${JSON.stringify(j.error)}`);
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
    assert.equal((await store().listDocs(OUTCOMES)).filter((o) => o.id.startsWith(`${job}.`)).length, 0, "no nested flow's outcome left");
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
  });

  /** A second image store on the fake host (the image goes to both). */
  async function secondBs(): Promise<string> {
    const now = new Date().toISOString();
    const bs = await store().create({ uuid: randomUUID(), kind: 'backup-storage', name: 'fc-bs2', createDate: now, lastOpDate: now, ownerAccountUuid: fc.controller.auth.adminAccountUuid, tags: [], type: 'ImageStoreBackupStorage', hostname: '127.0.0.1', url: '/fake/bs2', state: 'Enabled', status: 'Connected', _hostUuid: fc.ids.host });
    return bs.uuid;
  }
  /** A VM created stopped with one data volume (64 MiB, from a disk offering). */
  async function vmWithData(name: string, extra: Record<string, unknown> = {}): Promise<{ vm: any; data: any }> {
    fc.ids.disk ??= (await ok('/v1/disk-offerings', { name: 'fc-disk', diskSize: 64 * 1024 * 1024 })).uuid;
    const r = await fc.createVm(name, { strategy: 'CreateStopped', dataDiskOfferingUuids: [fc.ids.disk], ...extra });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const data = (await store().list({ kind: 'volume', filters: [{ field: 'vmInstanceUuid', op: '=', value: r.body.uuid }] })).items.find((v) => v.type === 'Data');
    assert.ok(data, 'the data volume');
    return { vm: r.body, data };
  }
  const imagesNamed = async (name: string): Promise<any[]> => (await store().list({ kind: 'image', filters: [{ field: 'name', op: '=', value: name }] })).items;

  it('image of a root volume: killed while the agent uploads it (it did); no image, no copy; the same request then succeeds', async () => {
    const vol = await volume('crash-img-root');
    const body = { name: 'img-root', rootVolumeUuid: vol.uuid, backupStorageUuids: [fc.ids.bs] };
    await crashDuring(S.VolumeToImage.name, { after: true }, '/v1/images', body);
    assert.deepEqual(await journals(), []);
    assert.deepEqual(await imagesNamed('img-root'), [], 'no image left Creating');
    assert.deepEqual([...fc.storageState.images], [], 'no copy in the image store');
    const img = await ok('/v1/images', body);
    assert.equal(img.status, 'Ready');
    assert.equal(img.mediaType, 'RootVolumeTemplate');
    assert.deepEqual([...fc.storageState.images], [img.uuid]);
    assert.equal((await fc.api.del(`/v1/images/${img.uuid}?wait=true`)).status, 200);
  });

  it('image of a data volume: killed before the agent made it; nothing is left', async () => {
    const { data } = await vmWithData('crash-img-data');
    await crashDuring(S.VolumeToImage.name, { after: false }, '/v1/images', { name: 'img-data', volumeUuid: data.uuid, mediaType: 'DataVolumeTemplate', backupStorageUuids: [fc.ids.bs] });
    assert.deepEqual(await journals(), []);
    assert.deepEqual(await imagesNamed('img-data'), []);
    assert.deepEqual([...fc.storageState.images], []);
  });

  it('image of a snapshot on two image stores: killed during the second upload; the first copy goes too', async () => {
    const vol = await volume('crash-img-snap');
    const snap = await ok('/v1/volume-snapshots', { name: 's', volumeUuid: vol.uuid });
    const bs2 = await secondBs();
    await crashDuring(S.VolumeToImage.name, { after: true, skip: 1 }, '/v1/images', { name: 'img-snap', volumeSnapshotUuid: snap.uuid, backupStorageUuids: [fc.ids.bs, bs2] });
    assert.deepEqual(await journals(), []);
    assert.deepEqual(await imagesNamed('img-snap'), []);
    assert.deepEqual([...fc.storageState.images], [], 'neither copy is left');
    const deletes = (fc.storage.callsOf(S.ImageStoreDelete.name) as Array<{ store: { uuid: string } }>).map((c) => c.store.uuid);
    assert.ok(deletes.includes(fc.ids.bs) && deletes.includes(bs2), 'deleted on both stores');
    await store().delete(bs2);
  });

  it('clone with data volumes: each clone gets its own copy of each data volume; full clones flatten them too', async () => {
    const { vm, data } = await vmWithData('clone-data-src');
    const images = await count('image');
    const r = await fc.action(vm.uuid, 'clone', { names: ['cdv1', 'cdv2'], withDataVolumes: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const uploads = fc.storage.callsOf(S.VolumeToImage.name).slice(-2) as Array<{ volumeUuid: string }>;
    assert.deepEqual(uploads.map((u) => u.volumeUuid), [vm.rootVolumeUuid, data.uuid], 'a template of the root and of the data volume');
    const copies = new Set<string>();
    for (const c of r.body.clones) {
      assert.equal(c.state, 'Stopped');
      const vols = (await store().list({ kind: 'volume', filters: [{ field: 'vmInstanceUuid', op: '=', value: c.uuid }] })).items;
      const d = vols.filter((v) => v.type === 'Data');
      assert.equal(d.length, 1, 'one data volume');
      assert.equal(d[0]!.status, 'Ready');
      assert.equal(d[0]!.deviceId, 1);
      assert.ok(c.allVolumes.includes(d[0]!.uuid));
      copies.add(d[0]!.uuid);
    }
    assert.equal(copies.size, 2);
    assert.ok(!copies.has(data.uuid));
    assert.equal(await count('image'), images, 'the templates are gone');
    assert.deepEqual([...fc.storageState.images], []);
    assert.deepEqual(await journals(), []);
    const full = await fc.action(vm.uuid, 'clone', { names: ['cdv-full'], withDataVolumes: true, full: true });
    assert.equal(full.status, 200, JSON.stringify(full.body));
    const c = full.body.clones[0];
    const flat = (fc.storage.callsOf(S.FlattenVolume.name) as Array<{ volumeUuid: string }>).map((x) => x.volumeUuid);
    const cd = (c.allVolumes as string[]).filter((u) => u !== c.rootVolumeUuid);
    assert.equal(cd.length, 1);
    assert.ok(flat.includes(c.rootVolumeUuid) && flat.includes(cd[0]!), 'root and data volume flattened');
  });

  it('clone with data volumes of a running VM: the data volume is copied from an online snapshot; the clones run with it', async () => {
    fc.ids.disk ??= (await ok('/v1/disk-offerings', { name: 'fc-disk', diskSize: 64 * 1024 * 1024 })).uuid;
    const vm = (await fc.createVm('clone-data-run', { dataDiskOfferingUuids: [fc.ids.disk] })).body;
    assert.equal(vm.state, 'Running');
    const r = await fc.action(vm.uuid, 'clone', { names: ['cdr1'], withDataVolumes: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const c = r.body.clones[0];
    assert.equal(c.state, 'Running');
    assert.equal(c.allVolumes.length, 2);
    const up = fc.storage.callsOf(S.VolumeToImage.name).slice(-2) as Array<{ snapshotUuid?: string }>;
    assert.ok(up.every((u) => typeof u.snapshotUuid === 'string'), 'both templates from snapshots');
    const xml = fc.kvm.driver.domains.get(`tstack-${c.uuid}`)?.xml ?? '';
    assert.equal((xml.match(/<disk /g) ?? []).length, 2, 'the clone runs with its data volume');
  });

  it('clone with data volumes: killed while the data template is uploaded; the restarted controller makes it again and finishes the clone, no template left', async () => {
    const { vm } = await vmWithData('crash-clone-data');
    const [vms, vols, images] = [await count('vm-instance'), await count('volume'), await count('image')];
    const job = await crashDuring(S.VolumeToImage.name, { after: true, skip: 1 }, `/v1/vm-instances/${vm.uuid}/actions`, { clone: { names: ['ccd1'], withDataVolumes: true } });
    const j = await jobEnd(job);
    assert.equal(j.state, 'Succeeded', JSON.stringify(j.error));
    assert.deepEqual(await journals(), []);
    assert.deepEqual([await count('vm-instance'), await count('volume'), await count('image')], [vms + 1, vols + 2, images], 'the clone with a root and a data volume');
    assert.deepEqual([...fc.storageState.images], []);
  });

  it('a VM from a RootVolumeTemplate as a data volume template: 400', async () => {
    const r = await fc.createVm('bad-dvt', { dataVolumeTemplateUuids: [fc.ids.image] });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(r.body.message, /dataVolumeTemplateUuids\.0/);
  });
});

describe('functional: an agent killed mid snapshot / revert / clone / image upload', function () {
  this.timeout(60_000);
  const cleanup = useCleanup('all');
  let fc: FakeCloud;

  before(async () => {
    fc = await startFakeCloud(cleanup);
  });

  const store = () => fc.controller.store;
  const journals = async (): Promise<string[]> => (await store().listDocs<{ flow: string }>(JOURNALS)).map((j) => j.doc.flow);
  const count = async (kind: string): Promise<number> => (await store().list({ kind })).total;
  const creating = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const kind of ['volume', 'volume-snapshot', 'image', 'vm-instance']) for (const r of (await store().list({ kind })).items) if (r.status === 'Creating' || r.state === 'Starting') out.push(`${kind} ${r.name}`);
    return out;
  };
  async function ok(path: string, body: unknown): Promise<any> {
    const r = await fc.api.post(`${path}?wait=true`, body);
    assert.ok(r.status === 200 || r.status === 201, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }
  const volume = async (name: string): Promise<any> => {
    const r = await fc.createVm(name, { strategy: 'CreateStopped' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return store().get(r.body.rootVolumeUuid);
  };

  /** Start the operation, restart the storage agent while it holds `command`; the job's outcome. */
  async function killDuring(command: string, o: { after?: boolean; skip?: number }, path: string, body: unknown): Promise<{ status: number; body: any }> {
    const h = fc.storage.hold(command, o);
    const res = fc.api.post(`${path}?wait=true`, body);
    await Promise.race([h.reached, new Promise((_, rej) => setTimeout(() => rej(new Error(`${command} was never called`)), 20_000))]);
    await fc.restartStorageAgent();
    h.release();
    return res;
  }
  /** Nothing half-made: no unfinished flow, nothing Creating. */
  async function whole(): Promise<void> {
    assert.deepEqual(await journals(), [], 'no unfinished flow');
    assert.deepEqual(await creating(), [], 'nothing half-made');
  }

  for (const after of [true, false]) {
    it(`snapshot: the storage agent restarts while it takes it (${after ? 'it did' : 'it did not'}); the job fails, no snapshot on either side; again: Ready`, async () => {
      const vol = await volume(`kill-snap-${after}`);
      const r = await killDuring(S.CreateSnapshot.name, { after }, '/v1/volume-snapshots', { name: 's1', volumeUuid: vol.uuid });
      assert.ok(r.status >= 500 || r.status === 409, JSON.stringify(r.body));
      assert.match(JSON.stringify(r.body), /TASK_LOST|AGENT_UNREACHABLE/);
      await whole();
      assert.deepEqual(await store().byParent('volume-snapshot', vol.uuid), []);
      assert.deepEqual(fc.storageState.snapshots.get(vol.uuid) ?? [], [], 'the agent dropped what it had made');
      const s = await ok('/v1/volume-snapshots', { name: 's1', volumeUuid: vol.uuid });
      assert.equal(s.status, 'Ready');
      assert.deepEqual(fc.storageState.snapshots.get(vol.uuid)?.map((x) => x.snapshotUuid), [s.uuid]);
    });
  }

  it('snapshot online: the kvmagent restarts while QEMU switches to the new top; what is left is whole either way, and a second snapshot succeeds', async () => {
    const vm = (await fc.createVm('kill-live')).body;
    const drv = fc.kvm.driver;
    const orig = drv.snapshotDisks.bind(drv);
    let reached!: () => void;
    const r0 = new Promise<void>((res) => (reached = res));
    let gate!: () => void;
    const g = new Promise<void>((res) => (gate = res));
    drv.snapshotDisks = async (name, disks, o) => {
      drv.snapshotDisks = orig;
      await orig(name, disks, { ...o, quiesce: false }); // QEMU switched; the answer is lost with the agent
      reached();
      await g;
    };
    const res = fc.api.post('/v1/volume-snapshots?wait=true', { name: 'live', volumeUuid: vm.rootVolumeUuid });
    await r0;
    await fc.restartKvmAgent();
    gate();
    const r = await res;
    await whole();
    const snaps = await store().byParent('volume-snapshot', vm.rootVolumeUuid);
    const agent = (fc.storageState.snapshots.get(vm.rootVolumeUuid) ?? []).map((x) => x.snapshotUuid);
    assert.deepEqual(agent, snaps.map((x) => x.uuid), `record and agent agree (job: ${r.status} ${JSON.stringify(r.body)})`);
    assert.ok(snaps.every((x) => x.status === 'Ready'));
    // QEMU writes into the new top: the snapshot exists and is kept
    assert.equal(snaps.length, 1);
    const again = await ok('/v1/volume-snapshots', { name: 'live2', volumeUuid: vm.rootVolumeUuid });
    assert.equal(again.status, 'Ready');
  });

  it('revert: the storage agent restarts mid-revert; the revert is sent again and the job completes with the record matching the disk', async () => {
    const vol = await volume('kill-revert');
    const s1 = await ok('/v1/volume-snapshots', { name: 's1', volumeUuid: vol.uuid });
    await ok(`/v1/volumes/${vol.uuid}/actions`, { createSnapshot: { name: 's2' } });
    const before = fc.storageState.reverts.length;
    const r = await killDuring(S.RevertSnapshot.name, { after: true }, `/v1/volume-snapshots/${s1.uuid}/actions`, { revert: {} });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await whole();
    // sent again at least once (the agent client may also have resent it on a fresh connection)
    const sent = fc.storageState.reverts.slice(before).map((x) => x.snapshotUuid);
    assert.ok(sent.length >= 2 && sent.every((u) => u === s1.uuid), `reverted again to s1: ${JSON.stringify(sent)}`);
    assert.equal((await store().get(vol.uuid))?._currentSnapshotUuid, s1.uuid);
  });

  it('image upload: the storage agent restarts mid-upload; the job fails, no image, no copy; again: Ready', async () => {
    const vol = await volume('kill-img');
    const body = { name: 'kill-img', rootVolumeUuid: vol.uuid, backupStorageUuids: [fc.ids.bs] };
    const r = await killDuring(S.VolumeToImage.name, { after: true }, '/v1/images', body);
    assert.ok(r.status >= 500, JSON.stringify(r.body));
    await whole();
    assert.equal((await store().list({ kind: 'image', filters: [{ field: 'name', op: '=', value: 'kill-img' }] })).total, 0);
    assert.deepEqual([...fc.storageState.images], []);
    const img = await ok('/v1/images', body);
    assert.equal(img.status, 'Ready');
    assert.equal((await fc.api.del(`/v1/images/${img.uuid}?wait=true`)).status, 200);
  });

  it('clone: the storage agent restarts while the template is made, then while a clone is made; each job fails whole; again: the clones', async () => {
    const vm = (await fc.createVm('kill-clone-src', { strategy: 'CreateStopped' })).body;
    const [vms, vols, images] = [await count('vm-instance'), await count('volume'), await count('image')];
    const r1 = await killDuring(S.VolumeToImage.name, { after: true }, `/v1/vm-instances/${vm.uuid}/actions`, { clone: { names: ['kc1'] } });
    assert.ok(r1.status >= 500, JSON.stringify(r1.body));
    await whole();
    assert.deepEqual([await count('vm-instance'), await count('volume'), await count('image')], [vms, vols, images]);
    assert.deepEqual([...fc.storageState.images], []);
    const r2 = await killDuring(S.CreateRootVolume.name, { after: true }, `/v1/vm-instances/${vm.uuid}/actions`, { clone: { names: ['kc1'] } });
    assert.ok(r2.status >= 500, JSON.stringify(r2.body));
    await whole();
    assert.deepEqual([await count('vm-instance'), await count('volume'), await count('image')], [vms, vols, images], 'the half-made clone was rolled back');
    assert.deepEqual([...fc.storageState.images], []);
    const r3 = await fc.action(vm.uuid, 'clone', { names: ['kc1'] });
    assert.equal(r3.status, 200, JSON.stringify(r3.body));
    assert.equal(r3.body.clones[0].state, 'Stopped');
  });
});
