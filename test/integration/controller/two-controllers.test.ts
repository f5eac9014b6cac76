// Two controllers in one process (as in the functional tier and in one mocha run of many
// files): each has its own ControllerContext — registry, flow engine, host runtime — so
// neither sees the other's handlers, and one keeps working after the other is gone.
import assert from 'node:assert/strict';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import type { ControllerModule } from '../../../controller/main.js';
import { cloudModule } from '../../../controller/cloud/install.js';
import { Obj } from '../../../shared/protocol/schema.js';

const MiB = 1024 * 1024;

/** A module that adds an action to zones (only on the controller it is installed on). */
const touchModule = (): ControllerModule => ({
  name: 'touch',
  install: (ctx) => ctx.registry.registerAction('zones', 'touch', { schema: Obj({}), run: async (zone, _p, oc) => ({ zone: zone.uuid, sameStore: oc.store === ctx.store }) }),
});

describe('two controllers in one process', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let a: TestController;
  let b: TestController;
  let apiA: ApiClient;
  let apiB: ApiClient;

  before(async () => {
    // neither passes a registry: each controller makes its own
    a = await testController(cleanup, { modules: [cloudModule({ hosts: true, tracker: false }), touchModule()] });
    b = await testController(cleanup, { modules: [cloudModule({ hosts: true, tracker: false })] });
    apiA = await a.login('admin', a.adminPassword);
    apiB = await b.login('admin', b.adminPassword);
  });

  it('each has its own context: registry, flow engine, host runtime', () => {
    assert.notEqual(a.registry, b.registry);
    assert.notEqual(a.engine, b.engine);
    assert.notEqual(a.hostRuntime, b.hostRuntime);
    assert.equal(a.engine.controller!().store, a.store);
    assert.equal(b.engine.controller!().store, b.store);
  });

  it('a handler registered on one controller is neither advertised nor served by the other', async () => {
    const za = (await apiA.post('/v1/zones', { name: 'za' })).body;
    const zb = (await apiB.post('/v1/zones', { name: 'zb' })).body;
    const ta = await apiA.post(`/v1/zones/${za.uuid}/actions`, { touch: {} });
    assert.equal(ta.status, 200, JSON.stringify(ta.body));
    assert.deepEqual(ta.body, { zone: za.uuid, sameStore: true });
    const tb = await apiB.post(`/v1/zones/${zb.uuid}/actions`, { touch: {} });
    assert.ok(tb.status >= 400 && tb.status < 500, `${tb.status} ${JSON.stringify(tb.body)}`);
    const docB = (await b.anon.get('/v1/openapi.json')).body;
    assert.doesNotMatch(JSON.stringify(docB.paths['/v1/zones/{uuid}/actions'] ?? {}), /"touch"/);
  });

  it('the cloud handlers and flows of the second controller work on its own inventory after the first closes', async () => {
    await a.close();
    const mk = async (path: string, body: unknown): Promise<string> => {
      const r = await apiB.post(`${path}?wait=true`, body);
      assert.ok(r.status < 300, `${path}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.uuid;
    };
    const zone = await mk('/v1/zones', { name: 'z' });
    const cluster = await mk('/v1/clusters', { name: 'c', zoneUuid: zone });
    const l2 = await mk('/v1/l2-networks', { name: 'l2', zoneUuid: zone, physicalInterface: 'eth9' });
    const l3 = await mk('/v1/l3-networks', { name: 'l3', l2NetworkUuid: l2 });
    await mk('/v1/ip-ranges', { l3NetworkUuid: l3, networkCidr: '10.9.9.0/29' });
    const offering = await mk('/v1/instance-offerings', { name: 'o', cpuNum: 1, memorySize: 64 * MiB });
    const attach = await apiB.post(`/v1/clusters/${cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: l2 } });
    assert.equal(attach.status, 200, JSON.stringify(attach.body));
    const img = await b.store.create({ uuid: '11111111-1111-4111-8111-111111111111', kind: 'image', name: 'img', createDate: '', lastOpDate: '', ownerAccountUuid: b.auth.adminAccountUuid, tags: [], state: 'Enabled', status: 'Ready', mediaType: 'RootVolumeTemplate', format: 'qcow2', size: 64 * MiB, backupStorageRefs: [] });
    // the vm-create flow runs on b's engine with b's context: it fails at the host step (no hosts) and rolls back
    const vm = await apiB.post('/v1/vm-instances?wait=true', { name: 'vm', instanceOfferingUuid: offering, imageUuid: img.uuid, l3NetworkUuids: [l3] });
    assert.equal(vm.body.code, 'CAPACITY_EXCEEDED', JSON.stringify(vm.body));
    assert.deepEqual(await b.store.listDocs('flow-journals'), [], 'no journal left');
  });
});
