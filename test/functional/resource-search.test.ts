// User tags searchable across kinds: GET /v1/resources?q=tags=… on the fake cloud finds a VM
// and an L3 with the same tag, shapes them as their own lists do, pages and counts; a normal
// account finds only its own (and shared) resources; fields outside the common ones are 400.
import assert from 'node:assert/strict';
import { useCleanup } from '../harness/cleanup.js';
import { startFakeCloud, type FakeCloud } from '../harness/fake-cloud.js';

describe('functional: tags searchable across kinds (GET /v1/resources)', function () {
  this.timeout(120_000);
  const cleanup = useCleanup();
  let fc: FakeCloud;

  before(async () => {
    fc = await startFakeCloud(cleanup);
  });

  it('finds every kind carrying the tag, newest first, with paging and count', async () => {
    const vm = (await fc.createVm('tagged-vm', { tags: ['env::prod'] })).body;
    assert.deepEqual(vm.tags, ['env::prod']);
    const l3 = await fc.api.patch(`/v1/l3-networks/${fc.ids.l3}`, { tags: ['env::prod', 'team::net'] });
    assert.equal(l3.status, 200, JSON.stringify(l3.body));
    await fc.api.patch(`/v1/zones/${fc.ids.zone}`, { tags: ['env::dev'] });
    const r = await fc.api.get('/v1/resources?q=tags=env::prod');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.total, 2);
    assert.deepEqual(r.body.inventories.map((x: any) => x.kind).sort(), ['l3-network', 'vm-instance']);
    // the VM is newer than the L3
    assert.equal(r.body.inventories[0].uuid, vm.uuid);
    assert.ok(!Object.keys(r.body.inventories[0]).some((k) => k.startsWith('_')), 'internal fields stay hidden');
    assert.deepEqual((await fc.api.get('/v1/resources?q=tags=env::prod&count=true')).body, { total: 2 });
    const page = await fc.api.get('/v1/resources?q=tags=env::prod&limit=1&start=1&fields=uuid,kind');
    assert.deepEqual(page.body.inventories, [{ uuid: fc.ids.l3, kind: 'l3-network' }]);
    assert.deepEqual((await fc.api.get('/v1/resources?q=tags=env::prod&q=kind=vm-instance')).body.inventories.map((x: any) => x.uuid), [vm.uuid]);
  });

  it('a normal account sees its own and the shared ones; only common fields are searchable', async () => {
    const acct = await fc.controller.account('tagger');
    const own = await acct.post('/v1/sns-topics', { name: 'mine', tags: ['env::prod'] });
    assert.equal(own.status, 201, JSON.stringify(own.body));
    const r = await acct.get('/v1/resources?q=tags=env::prod');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const uuids = r.body.inventories.map((x: any) => x.uuid as string);
    assert.ok(uuids.includes(own.body.uuid), 'its own');
    assert.ok(uuids.includes(fc.ids.l3), 'the shared L3 of the admin');
    assert.ok(!r.body.inventories.some((x: any) => x.kind === 'vm-instance'), "not the admin's VM");
    assert.equal((await fc.api.get('/v1/resources?q=cpuNum=1')).status, 400);
    assert.equal((await fc.api.get('/v1/resources?bogus=1')).status, 400);
    assert.equal((await fc.controller.anon.get('/v1/resources?q=tags=env::prod')).status, 401);
  });
});
