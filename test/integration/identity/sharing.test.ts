// Sharing (issue 18) on a real controller — SQLite and Redis — with the fake-cloud host: the
// all-in-one catalog is shared with all until the admin decides; a revoked image is invisible
// (404, missing from lists and counts, 400 as a reference) and shared again with chosen
// accounts only; an account's own image is never another account's. VXLAN pools are shared per
// pool (none until the admin shares one): a tenant creates VXLAN networks in a pool shared with
// it, may not change the pool, and never sees the admin's physical L2s.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { startFakeCloud, type FakeCloud } from '../../harness/fake-cloud.js';
import type { ApiClient } from '../../harness/controller.js';
import { identityModule } from '../../../controller/identity/module.js';
import type { Resource } from '../../../controller/store/types.js';
import { SHAREABLE } from '../../../controller/identity/sharing.js';
import { vniNamespace } from '../../../controller/network/vxlan.js';

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`identity: sharing (${backend})`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let fc: FakeCloud;
    let a: ApiClient & { accountUuid: string };
    let b: ApiClient & { accountUuid: string };
    const vmBody = (name: string, image: string): Record<string, unknown> => ({ name, instanceOfferingUuid: fc.ids.offering, imageUuid: image, l3NetworkUuids: [fc.ids.l3] });
    const imageUuids = async (c: ApiClient): Promise<string[]> => (await c.get('/v1/images')).body.inventories.map((i: { uuid: string }) => i.uuid);

    before(async function () {
      const o: Parameters<typeof startFakeCloud>[1] = { modules: [identityModule({ repairPeriodMs: 0 }) as never] };
      if (backend === 'redis') {
        const redis = await startRedis(cleanup);
        o.store = redis.url;
        o.storePrefix = `s-${randomUUID().slice(0, 8)}:`;
      }
      fc = await startFakeCloud(cleanup, o);
      a = await fc.controller.account(`share-a-${backend}`);
      b = await fc.controller.account(`share-b-${backend}`);
    });

    it('the catalog is shared with all by default: a new account creates a VM at once', async function () {
      assert.ok((await imageUuids(a)).includes(fc.ids.image));
      const vm = await a.post('/v1/vm-instances?wait=true', vmBody('share-vm', fc.ids.image));
      assert.equal(vm.status, 200, JSON.stringify(vm.body));
    });

    it('revoke from all, then share with A only: B neither sees nor uses it; share with all again', async function () {
      const img = fc.ids.image;
      assert.equal((await a.post(`/v1/images/${img}/actions`, { revoke: { toPublic: true } })).status, 403, 'admin only');
      const rv = await fc.api.post(`/v1/images/${img}/actions`, { revoke: { toPublic: true } });
      assert.equal(rv.status, 200, JSON.stringify(rv.body));
      assert.deepEqual(rv.body.sharing, { public: false, accountUuids: [] });
      for (const c of [a, b]) {
        assert.equal((await c.get(`/v1/images/${img}`)).status, 404);
        assert.ok(!(await imageUuids(c)).includes(img));
        assert.equal((await c.get('/v1/images?count=true')).body.total, 0);
        const r = await c.post('/v1/vm-instances?wait=true', vmBody('nope', img));
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.equal(r.body.field, 'imageUuid');
      }
      const sh = await fc.api.post(`/v1/images/${img}/actions`, { share: { accountUuids: [a.accountUuid] } });
      assert.equal(sh.status, 200, JSON.stringify(sh.body));
      assert.equal((await a.get(`/v1/images/${img}`)).status, 200);
      assert.equal((await b.get(`/v1/images/${img}`)).status, 404);
      assert.equal((await a.post('/v1/vm-instances?wait=true', vmBody('shared-vm', img))).status, 200);
      assert.equal((await b.post('/v1/vm-instances?wait=true', vmBody('unshared-vm', img))).status, 400);
      assert.equal((await fc.api.post(`/v1/images/${img}/actions`, { share: { toPublic: true } })).status, 200);
      assert.equal((await b.get(`/v1/images/${img}`)).status, 200);
      assert.equal((await fc.api.post(`/v1/images/${img}/actions`, { share: {} })).status, 400);
    });

    it("an account's own image is never visible to another account, and the admin cannot share it", async function () {
      const now = new Date().toISOString();
      const own = await fc.controller.store.create<Resource>({ uuid: randomUUID(), kind: 'image', name: 'a-private', ownerAccountUuid: a.accountUuid, tags: [], createDate: now, lastOpDate: now, state: 'Enabled', status: 'Ready', mediaType: 'RootVolumeTemplate', format: 'qcow2', size: 1 << 26 });
      assert.equal((await a.get(`/v1/images/${own.uuid}`)).status, 200);
      assert.equal((await b.get(`/v1/images/${own.uuid}`)).status, 404);
      assert.equal((await b.post('/v1/vm-instances?wait=true', vmBody('steal', own.uuid))).status, 400);
      assert.equal((await fc.api.post(`/v1/images/${own.uuid}/actions`, { share: { toPublic: true } })).status, 409);
    });

    it('router offerings are shared and revoked the same way (every SHARED_KINDS kind but zones opts in)', async function () {
      assert.ok(SHAREABLE.includes('virtual-router-offerings'));
      const pub = await fc.api.post('/v1/l3-networks', { name: 'share-pub', l2NetworkUuid: fc.ids.l2, category: 'Public' });
      assert.equal(pub.status, 201, JSON.stringify(pub.body));
      const vro = await fc.api.post('/v1/virtual-router-offerings', { name: 'share-vro', zoneUuid: fc.ids.zone, publicNetworkUuid: pub.body.uuid });
      assert.equal(vro.status, 201, JSON.stringify(vro.body));
      const u = vro.body.uuid as string;
      assert.equal((await b.get(`/v1/virtual-router-offerings/${u}`)).status, 200, 'shared with all by default');
      assert.equal((await fc.api.post(`/v1/virtual-router-offerings/${u}/actions`, { revoke: { toPublic: true } })).status, 200);
      assert.equal((await fc.api.post(`/v1/virtual-router-offerings/${u}/actions`, { share: { accountUuids: [a.accountUuid] } })).status, 200);
      assert.equal((await a.get(`/v1/virtual-router-offerings/${u}`)).status, 200);
      assert.equal((await b.get(`/v1/virtual-router-offerings/${u}`)).status, 404);
      assert.equal((await b.get('/v1/virtual-router-offerings?count=true')).body.total, 0);
      assert.equal((await b.post(`/v1/virtual-router-offerings/${u}/actions`, { share: { toPublic: true } })).status, 404);
    });

    it('VXLAN pools: shared per pool; a tenant makes a VXLAN network in a shared pool (VNI from the pool), cannot change the pool, never sees unshared L2s', async function () {
      assert.ok(SHAREABLE.includes('l2-networks'));
      const pool = await fc.api.post('/v1/l2-networks', { name: 'share-pool', zoneUuid: fc.ids.zone, type: 'VxlanNetworkPool', vniStartInclusive: 300, vniEndInclusive: 301 });
      assert.equal(pool.status, 201, JSON.stringify(pool.body));
      const p = pool.body.uuid as string;
      const att = await fc.api.post(`/v1/clusters/${fc.ids.cluster}/actions?wait=true`, { attachL2Network: { l2NetworkUuid: p, vtepCidr: '127.0.0.0/8' } });
      assert.equal(att.status, 200, JSON.stringify(att.body));
      const l2Uuids = async (c: ApiClient): Promise<string[]> => (await c.get('/v1/l2-networks')).body.inventories.map((i: { uuid: string }) => i.uuid).sort();
      const searched = async (c: ApiClient): Promise<string[]> => (await c.get('/v1/resources?q=kind=l2-network')).body.inventories.map((i: { uuid: string }) => i.uuid).sort();
      const vxnet = (c: ApiClient, name: string) => c.post('/v1/l2-networks', { name, zoneUuid: fc.ids.zone, poolUuid: p });

      // not shared yet (pools are shared with nobody until the admin decides); physical L2s never
      for (const c of [a, b]) {
        assert.equal((await c.get(`/v1/l2-networks/${p}`)).status, 404);
        assert.equal((await c.get(`/v1/l2-networks/${fc.ids.l2}`)).status, 404);
        assert.deepEqual(await l2Uuids(c), []);
        assert.equal((await c.get('/v1/l2-networks?count=true')).body.total, 0);
        assert.deepEqual(await searched(c), []);
      }
      const early = await vxnet(a, 'too-early');
      assert.equal(early.status, 400, JSON.stringify(early.body));
      assert.equal(early.body.field, 'poolUuid');
      const phys = await fc.api.post(`/v1/l2-networks/${fc.ids.l2}/actions`, { share: { toPublic: true } });
      assert.equal(phys.status, 409, JSON.stringify(phys.body));
      assert.match(phys.body.message, /only VXLAN pools/);
      assert.equal((await a.get(`/v1/l2-networks/${fc.ids.l2}`)).status, 404);

      assert.equal((await fc.api.post(`/v1/l2-networks/${p}/actions`, { share: { accountUuids: [a.accountUuid] } })).status, 200);
      assert.equal((await a.get(`/v1/l2-networks/${p}`)).status, 200);
      assert.deepEqual(await l2Uuids(a), [p]);
      assert.deepEqual(await searched(a), [p]);
      assert.equal((await b.get(`/v1/l2-networks/${p}`)).status, 404);
      assert.deepEqual(await l2Uuids(b), []);

      const net = await vxnet(a, 'a-vx');
      assert.equal(net.status, 201, JSON.stringify(net.body));
      assert.equal(net.body.type, 'L2VxlanNetwork');
      assert.equal(net.body.vni, 300, 'the VNI comes from the pool');
      assert.equal(net.body.ownerAccountUuid, a.accountUuid);
      const n = net.body.uuid as string;
      assert.deepEqual((await fc.controller.store.claims(vniNamespace(p))).map((c) => [c.key, c.owner]), [['300', n]]);
      assert.deepEqual(await l2Uuids(a), [n, p].sort());
      assert.equal((await b.get(`/v1/l2-networks/${n}`)).status, 404);
      const used = (await a.get(`/v1/quotas?q=identityUuid=${a.accountUuid}`)).body.inventories.find((q: { name: string }) => q.name === 'vxlan.num');
      assert.equal(used?.used, 1);
      assert.equal((await vxnet(b, 'b-vx')).status, 400, 'not shared with B');

      // the pool and the other L2 types stay the admin's
      assert.equal((await a.post('/v1/l2-networks', { name: 'a-phys', zoneUuid: fc.ids.zone, physicalInterface: 'eth9' })).status, 403);
      assert.equal((await a.post('/v1/l2-networks', { name: 'a-pool', zoneUuid: fc.ids.zone, type: 'VxlanNetworkPool', vniStartInclusive: 1, vniEndInclusive: 9 })).status, 403);
      assert.equal((await a.put(`/v1/l2-networks/${p}`, { description: 'mine' })).status, 403);
      assert.equal((await a.del(`/v1/l2-networks/${p}`)).status, 403);
      assert.equal((await a.post(`/v1/l2-networks/${p}/actions`, { share: { toPublic: true } })).status, 403);
      assert.equal((await fc.api.get(`/v1/l2-networks/${p}`)).body.description ?? '', '');
      // its own VXLAN network: renamed and deleted by the tenant, the VNI back in the pool
      assert.equal((await a.put(`/v1/l2-networks/${n}`, { description: 'mine' })).status, 200);
      const del = await a.del(`/v1/l2-networks/${n}`);
      assert.equal(del.status, 200, JSON.stringify(del.body));
      assert.deepEqual(await fc.controller.store.claims(vniNamespace(p)), []);

      assert.equal((await fc.api.post(`/v1/l2-networks/${p}/actions`, { revoke: { accountUuids: [a.accountUuid] } })).status, 200);
      assert.equal((await a.get(`/v1/l2-networks/${p}`)).status, 404);
      assert.equal((await vxnet(a, 'after-revoke')).status, 400);
      assert.equal((await fc.api.post(`/v1/l2-networks/${p}/actions`, { share: { toPublic: true } })).status, 200);
      assert.deepEqual(await l2Uuids(b), [p], 'shared with all: still no physical L2');
    });
  });
}
