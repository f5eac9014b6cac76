// The cloud module on a real in-process controller (SQLite), without agents: what must be
// refused or rolled back before any host is involved.
import assert from 'node:assert/strict';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { cloudModule } from '../../../controller/cloud/install.js';
import { ipNamespace } from '../../../controller/allocator/ip.js';

const MiB = 1024 * 1024;

describe('cloud API without agents', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let c: TestController;
  let api: ApiClient;
  const ids: Record<string, string> = {};

  before(async () => {
    c = await testController(cleanup, { modules: [cloudModule({ hosts: true, tracker: false })] } as never);
    api = await c.login('admin', c.adminPassword);
    const mk = async (path: string, body: unknown): Promise<string> => {
      const r = await api.post(`${path}?wait=true`, body);
      assert.ok(r.status < 300, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.uuid;
    };
    ids.zone = await mk('/v1/zones', { name: 'z' });
    ids.cluster = await mk('/v1/clusters', { name: 'c', zoneUuid: ids.zone });
    ids.l2 = await mk('/v1/l2-networks', { name: 'l2', zoneUuid: ids.zone, physicalInterface: 'eth9' });
    ids.l3 = await mk('/v1/l3-networks', { name: 'l3', l2NetworkUuid: ids.l2 });
    await mk('/v1/ip-ranges', { l3NetworkUuid: ids.l3, networkCidr: '10.9.9.0/29' });
    ids.offering = await mk('/v1/instance-offerings', { name: 'o', cpuNum: 1, memorySize: 64 * MiB });
    // an image record as if downloaded (no image server here)
    const img = await c.store.create({ uuid: '11111111-1111-4111-8111-111111111111', kind: 'image', name: 'img', createDate: '', lastOpDate: '', ownerAccountUuid: c.auth.adminAccountUuid, tags: [], state: 'Enabled', status: 'Ready', mediaType: 'RootVolumeTemplate', format: 'qcow2', size: 64 * MiB, backupStorageRefs: [] });
    ids.image = img.uuid;
  });

  it('an image server must be on a known host (400 naming hostname)', async () => {
    const r = await api.post('/v1/backup-storage?wait=true', { name: 'bs', hostname: '192.0.2.7', url: '/srv/images' });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.field ?? r.body.details?.field, 'hostname');
    assert.equal((await api.get('/v1/backup-storage?count=true')).body.total, 0, 'nothing created');
  });

  it('attaching an L2 to a cluster without hosts works and is refused twice; detach works', async () => {
    const a = await api.post(`/v1/clusters/${ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: ids.l2 } });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    const again = await api.post(`/v1/clusters/${ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: ids.l2 } });
    assert.equal(again.status, 409);
    const d = await api.post(`/v1/clusters/${ids.cluster}/actions?wait=true`, { detachL2Network: { l2NetworkUuid: ids.l2 } });
    assert.equal(d.status, 200, JSON.stringify(d.body));
    const back = await api.post(`/v1/clusters/${ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: ids.l2 } });
    assert.equal(back.status, 200);
  });

  it('a VM that no host can run fails at the host step, names why, and leaves no VM, NIC or IP', async () => {
    const r = await api.post('/v1/vm-instances?wait=true', { name: 'vm', instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
    assert.equal(r.body.code, 'CAPACITY_EXCEEDED', JSON.stringify(r.body));
    assert.match(r.body.message, /no host can run 1 vCPU/);
    assert.match(r.body.message, /step host; rolled back/);
    assert.equal((await api.get('/v1/vm-instances?count=true')).body.total, 0);
    assert.equal((await api.get('/v1/vm-nics?count=true')).body.total, 0);
    assert.deepEqual(await c.store.claims(ipNamespace(ids.l3)), []);
    assert.deepEqual(await c.store.listDocs('flow-journals'), [], 'no journal left');
  });

  it('VM actions check the state (409) and an ISO image without a root disk size is a 400', async () => {
    const vm = await c.store.create({ uuid: '22222222-2222-4222-8222-222222222222', kind: 'vm-instance', name: 'v', createDate: '', lastOpDate: '', ownerAccountUuid: c.auth.adminAccountUuid, tags: [], state: 'Stopped', l3NetworkUuids: [ids.l3] });
    for (const [action, body] of [['stop', {}], ['reboot', {}], ['pause', {}], ['resume', {}], ['expunge', {}], ['recover', {}]] as const) {
      const r = await api.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { [action]: body });
      assert.equal(r.status, 409, `${action}: ${JSON.stringify(r.body)}`);
    }
    await c.store.delete(vm.uuid);
    const iso = await c.store.create({ uuid: '33333333-3333-4333-8333-333333333333', kind: 'image', name: 'iso', createDate: '', lastOpDate: '', ownerAccountUuid: c.auth.adminAccountUuid, tags: [], state: 'Enabled', status: 'Ready', mediaType: 'ISO', format: 'iso', size: MiB, backupStorageRefs: [] });
    const r = await api.post('/v1/vm-instances?wait=true', { name: 'vm', instanceOfferingUuid: ids.offering, imageUuid: iso.uuid, l3NetworkUuids: [ids.l3] });
    assert.equal(r.status, 400);
    assert.equal(r.body.field ?? r.body.details?.field, 'rootDiskOfferingUuid', JSON.stringify(r.body));
  });

  it('fault injection names the step and rolls back (record step)', async () => {
    process.env.TSTACK_FAULT_INJECT = 'vm-create:record';
    try {
      const r = await api.post('/v1/vm-instances?wait=true', { name: 'vm', instanceOfferingUuid: ids.offering, imageUuid: ids.image, l3NetworkUuids: [ids.l3] });
      assert.equal(r.body.code, 'INJECTED_FAULT');
      assert.equal(r.body.details.step, 'record');
    } finally {
      delete process.env.TSTACK_FAULT_INJECT;
    }
    assert.equal((await api.get('/v1/vm-instances?count=true')).body.total, 0);
  });
});
