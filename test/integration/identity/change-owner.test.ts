// changeOwner (issue 18) on a real controller — SQLite and Redis — with the fake-cloud host: the
// admin gives a VM (with its root volume and NIC) to another account after checking that
// account's quotas (a refusal names the quota and moves nothing), the usage moves with it, and
// the old owner no longer sees it; images move too; only the admin may do it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { startFakeCloud, type FakeCloud } from '../../harness/fake-cloud.js';
import type { ApiClient } from '../../harness/controller.js';
import { identityModule } from '../../../controller/identity/module.js';
import type { Resource } from '../../../controller/store/types.js';

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`identity: changeOwner (${backend})`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let fc: FakeCloud;
    let a: ApiClient & { accountUuid: string };
    let b: ApiClient & { accountUuid: string };

    const used = async (account: string): Promise<Record<string, number>> =>
      Object.fromEntries((await fc.api.get(`/v1/quotas?q=identityUuid=${account}`)).body.inventories.map((q: { name: string; used: number }) => [q.name, q.used]));

    before(async function () {
      const o: Parameters<typeof startFakeCloud>[1] = { modules: [identityModule({ repairPeriodMs: 0 }) as never] };
      if (backend === 'redis') {
        const redis = await startRedis(cleanup);
        o.store = redis.url;
        o.storePrefix = `o-${randomUUID().slice(0, 8)}:`;
      }
      fc = await startFakeCloud(cleanup, o);
      a = await fc.controller.account(`own-a-${backend}`);
      b = await fc.controller.account(`own-b-${backend}`);
    });

    it("a VM moves with its volume and NIC after the target's quotas are checked; usage moves with it", async function () {
      const vm = await a.post('/v1/vm-instances?wait=true', { name: 'moving', instanceOfferingUuid: fc.ids.offering, imageUuid: fc.ids.image, l3NetworkUuids: [fc.ids.l3] });
      assert.equal(vm.status, 200, JSON.stringify(vm.body));
      const u = vm.body.uuid as string;
      const root = (await a.get(`/v1/volumes?q=vmInstanceUuid=${u}`)).body.inventories[0];
      assert.equal((await a.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: b.accountUuid } })).status, 403, 'admin only');
      assert.equal((await fc.api.post(`/v1/volumes/${root.uuid}/actions`, { changeOwner: { accountUuid: b.accountUuid } })).status, 409, 'a root volume goes with its VM');
      assert.equal((await fc.api.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: randomUUID() } })).status, 400);

      assert.equal((await fc.api.post(`/v1/accounts/${b.accountUuid}/actions`, { updateQuota: { name: 'vm.cpuNum', value: 0 } })).status, 200);
      const refused = await fc.api.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: b.accountUuid } });
      assert.equal(refused.status, 409, JSON.stringify(refused.body));
      assert.equal(refused.body.code, 'QUOTA_EXCEEDED');
      assert.match(refused.body.message, /vm\.cpuNum/);
      assert.equal((await a.get(`/v1/vm-instances/${u}`)).status, 200, 'nothing moved');
      assert.equal((await b.get(`/v1/vm-instances/${u}`)).status, 404);
      assert.equal((await used(b.accountUuid))['vm.totalNum'], 0, "the refused reservation was undone");

      assert.equal((await fc.api.post(`/v1/accounts/${b.accountUuid}/actions`, { updateQuota: { name: 'vm.cpuNum', value: 80 } })).status, 200);
      const before = await used(a.accountUuid);
      const moved = await fc.api.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: b.accountUuid } });
      assert.equal(moved.status, 200, JSON.stringify(moved.body));
      assert.deepEqual(moved.body.moved.map((m: { kind: string }) => m.kind).sort(), ['vm-instance', 'vm-nic', 'volume']);
      for (const m of moved.body.moved as Array<{ uuid: string }>) assert.equal((await fc.controller.store.get<Resource>(m.uuid))!.ownerAccountUuid, b.accountUuid);
      assert.equal((await a.get(`/v1/vm-instances/${u}`)).status, 404);
      assert.equal((await b.get(`/v1/vm-instances/${u}`)).status, 200);
      const ua = await used(a.accountUuid);
      const ub = await used(b.accountUuid);
      assert.equal(ua['vm.totalNum'], before['vm.totalNum']! - 1);
      assert.equal(ua['volume.capacity'], before['volume.capacity']! - Number(root.size));
      assert.equal(ub['vm.totalNum'], 1);
      assert.equal(ub['vm.num'], 1);
      assert.equal(ub['volume.capacity'], Number(root.size));
      const stop = await b.post(`/v1/vm-instances/${u}/actions?wait=true`, { stop: {} });
      assert.equal(stop.status, 200, JSON.stringify(stop.body));
      assert.equal((await fc.api.post(`/v1/vm-instances/${u}/actions`, { changeOwner: { accountUuid: b.accountUuid } })).status, 409, 'already its owner');
    });

    it("an image moves: the catalog image becomes the account's own, invisible to others", async function () {
      const now = new Date().toISOString();
      const img = await fc.controller.store.create<Resource>({ uuid: randomUUID(), kind: 'image', name: 'gift', ownerAccountUuid: fc.controller.auth.adminAccountUuid, tags: [], createDate: now, lastOpDate: now, state: 'Enabled', status: 'Ready', mediaType: 'RootVolumeTemplate', format: 'qcow2', size: 1 << 26 });
      assert.equal((await b.get(`/v1/images/${img.uuid}`)).status, 200, 'shared with all while the admin owns it');
      const r = await fc.api.post(`/v1/images/${img.uuid}/actions`, { changeOwner: { accountUuid: a.accountUuid } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal((await a.get(`/v1/images/${img.uuid}`)).status, 200);
      assert.equal((await b.get(`/v1/images/${img.uuid}`)).status, 404);
      assert.equal((await used(a.accountUuid))['image.num'], 1);
    });
  });
}
