// Account isolation on EVERY collection (table-driven from the registry): account B gets 404
// for every resource of account A — read, update, delete, actions — and never sees it in a
// list, a count, a job or the event stream; A and the admin do see it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { builtinModules } from '../../../controller/main.js';
import type { Resource } from '../../../controller/store/types.js';

describe('controller API: account isolation on every collection', function () {
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;
  let a: ApiClient & { accountUuid: string };
  let b: ApiClient & { accountUuid: string };
  const owned = new Map<string, Resource>();
  const registry = new ApiRegistry();

  before(async function () {
    // the real modules: what a controller serves (unhandled operations are not advertised)
    c = await testController(cleanup, { registry, modules: builtinModules() });
    admin = await c.login('admin', c.adminPassword);
    a = await c.account('iso-a');
    b = await c.account('iso-b');
    // one resource of A in every collection (written straight to the inventory: many kinds
    // are admin-only to create, but ownership is what isolation is about)
    for (const spec of registry.collections()) {
      if (spec.collection === 'accounts') {
        owned.set(spec.collection, (await c.store.get(a.accountUuid))!);
        continue;
      }
      const now = new Date().toISOString();
      const r = await c.store.create<Resource>({ uuid: randomUUID(), kind: spec.kind, name: `iso-${spec.kind}`, ownerAccountUuid: a.accountUuid, tags: [], createDate: now, lastOpDate: now, state: spec.initialState ?? 'Enabled' });
      owned.set(spec.collection, r);
    }
  });

  it('covers every collection of the registry (the model\'s kinds and accounts)', function () {
    const names = registry.collections().map((s) => s.collection);
    for (const expected of ['zones', 'clusters', 'hosts', 'primary-storage', 'backup-storage', 'images', 'instance-offerings', 'disk-offerings', 'l2-networks', 'l3-networks', 'vm-instances', 'volumes', 'volume-snapshots', 'accounts']) {
      assert.ok(names.includes(expected), `collection ${expected} missing from the registry`);
    }
    assert.equal(owned.size, names.length);
  });

  it('B gets 404 (never 403) for A\'s resource on GET, PUT, PATCH, DELETE and actions, in every collection', async function () {
    const failures: string[] = [];
    for (const spec of registry.collections()) {
      const r = owned.get(spec.collection)!;
      const base = `/v1/${spec.collection}/${r.uuid}`;
      const actions = registry.actions(spec.collection).map((x) => x.name);
      const tries: Array<[string, () => Promise<{ status: number; body: any }>]> = [
        ['GET', () => b.get(base)],
        ['PUT', () => b.put(base, { description: 'mine now' })],
        ['PATCH', () => b.patch(base, { description: 'mine now' })],
        ['DELETE', () => b.del(base)],
        ['POST actions', () => b.post(`${base}/actions`, { [actions[0] ?? 'anything']: {} })],
      ];
      for (const [what, call] of tries) {
        const res = await call();
        if (res.status !== 404 || res.body?.code !== 'NOT_FOUND') failures.push(`${spec.collection} ${what}: ${res.status} ${JSON.stringify(res.body)}`);
        else if (JSON.stringify(res.body).includes(r.name)) failures.push(`${spec.collection} ${what}: the error leaks the name`);
      }
    }
    assert.deepEqual(failures, []);
    // nothing changed
    for (const [col, r] of owned) {
      const now = await c.store.get(r.uuid);
      assert.ok(now, `${col}: deleted by B`);
      assert.equal(now!.description, undefined, `${col}: updated by B`);
    }
  });

  it('B\'s lists and counts never include A\'s resources, even when filtered by uuid', async function () {
    for (const spec of registry.collections()) {
      const r = owned.get(spec.collection)!;
      const l = await b.get(`/v1/${spec.collection}?q=uuid=${r.uuid}`);
      assert.equal(l.status, 200, `${spec.collection}: ${JSON.stringify(l.body)}`);
      assert.equal(l.body.total, 0, spec.collection);
      assert.deepEqual(l.body.inventories, []);
      const all = await b.get(`/v1/${spec.collection}`);
      assert.ok(!all.body.inventories.some((x: any) => x.ownerAccountUuid === a.accountUuid), spec.collection);
      const cnt = await b.get(`/v1/${spec.collection}?count=true&q=ownerAccountUuid=${a.accountUuid}`);
      assert.deepEqual(cnt.body, { total: 0 }, spec.collection);
    }
  });

  it('A and the admin see A\'s resources', async function () {
    for (const spec of registry.collections()) {
      const r = owned.get(spec.collection)!;
      for (const [who, cl] of [['A', a], ['admin', admin]] as const) {
        const g = await cl.get(`/v1/${spec.collection}/${r.uuid}`);
        assert.equal(g.status, 200, `${who} ${spec.collection}: ${JSON.stringify(g.body)}`);
        assert.equal(g.body.uuid, r.uuid);
        const l = await cl.get(`/v1/${spec.collection}?q=uuid=${r.uuid}`);
        assert.equal(l.body.total, 1, `${who} list ${spec.collection}`);
      }
    }
  });

  it('B cannot reference A\'s resources in a create body (400 naming the field, same as a missing one); A owns what it creates', async function () {
    const zoneOfA = owned.get('zones')!;
    const r = await admin.post('/v1/clusters', { name: 'iso-c', zoneUuid: zoneOfA.uuid, hypervisorType: 'KVM' });
    assert.equal(r.status, 201, 'the admin may use anything');
    const vm = await b.post('/v1/vm-instances', { name: 'x', imageUuid: owned.get('images')!.uuid, l3NetworkUuids: [owned.get('l3-networks')!.uuid], instanceOfferingUuid: owned.get('instance-offerings')!.uuid });
    assert.equal(vm.status, 400, 'long creates check references before starting a job');
    assert.match(vm.body.field, /^(instanceOfferingUuid|imageUuid|l3NetworkUuids\.0)$/);
    const theirs = await b.post('/v1/volumes', { name: 'iso-v', diskOfferingUuid: owned.get('disk-offerings')!.uuid });
    assert.equal(theirs.status, 400, JSON.stringify(theirs.body));
    assert.equal(theirs.body.field, 'diskOfferingUuid');
    const missing = await b.post('/v1/volumes', { name: 'iso-v', diskOfferingUuid: randomUUID() });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.message.replace(/[0-9a-f-]{36}/g, 'U'), theirs.body.message.replace(/[0-9a-f-]{36}/g, 'U'), 'same answer as for a uuid that does not exist');
    const mine = await a.post('/v1/volumes', { name: 'iso-v', diskOfferingUuid: owned.get('disk-offerings')!.uuid });
    assert.equal(mine.status, 201, JSON.stringify(mine.body));
    assert.equal(mine.body.ownerAccountUuid, a.accountUuid, 'normal accounts own what they create');
    assert.equal((await b.get(`/v1/volumes/${mine.body.uuid}`)).status, 404);
  });

  it('admin-owned resources of shared kinds (zones, images, offerings, L3 networks) are readable by all but writable by the admin only', async function () {
    const z = (await admin.post('/v1/zones', { name: 'iso-shared-zone' })).body;
    const seen = await b.get(`/v1/zones/${z.uuid}`);
    assert.equal(seen.status, 200);
    assert.ok((await b.get('/v1/zones')).body.inventories.some((x: any) => x.uuid === z.uuid));
    assert.equal((await b.put(`/v1/zones/${z.uuid}`, { description: 'x' })).status, 403);
    assert.equal((await b.del(`/v1/zones/${z.uuid}`)).status, 403);
    // clusters are not shared: B sees none of the admin's
    const cl = (await admin.post('/v1/clusters', { name: 'iso-admin-cluster', zoneUuid: z.uuid, hypervisorType: 'KVM' })).body;
    assert.equal((await b.get(`/v1/clusters/${cl.uuid}`)).status, 404);
  });

  it('B never sees A\'s jobs', async function () {
    const now = new Date().toISOString();
    await c.store.putDoc('jobs', 'job-of-a', { uuid: 'job-of-a', type: 'x', state: 'Succeeded', accountUuid: a.accountUuid, createDate: now, lastOpDate: now });
    assert.equal((await b.get('/v1/jobs/job-of-a')).status, 404);
    assert.equal((await a.get('/v1/jobs/job-of-a')).status, 200);
    assert.ok(!(await b.get('/v1/jobs')).body.inventories.some((j: any) => j.uuid === 'job-of-a'));
  });
});
