// Quotas (issue 18) on a real controller — SQLite and Redis inventories — with the fake-cloud
// host (real flows, in-process agents): the manual's names and defaults with usage, the
// admin's updateQuota, a VM refused by vm.totalNum before any work (message naming the quota,
// its value and the usage), destroyed-not-expunged VMs still counting, vm.num on start, and 20
// concurrent creates against a quota of 5 giving exactly 5.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { startFakeCloud, type FakeCloud } from '../../harness/fake-cloud.js';
import type { ApiClient } from '../../harness/controller.js';
import { identityModule } from '../../../controller/identity/module.js';
import { QUOTAS } from '../../../controller/identity/quota-defs.js';

const GiB = 1024 ** 3;
const MANUAL: Record<string, number> = {
  'vm.totalNum': 20,
  'vm.num': 20,
  'vm.cpuNum': 80,
  'vm.memorySize': 80 * GiB,
  'volume.data.num': 40,
  'volume.capacity': 10 * 1024 * GiB,
  'image.num': 20,
  'image.size': 10 * 1024 * GiB,
  'l3.num': 20,
  'securityGroup.num': 20,
  'vip.num': 20,
  'eip.num': 20,
  'portForwarding.num': 20,
  'loadBalancer.num': 20,
  'listener.num': 20,
  'snapshot.volume.num': 200,
  'vxlan.num': 8,
};

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`identity: quotas (${backend})`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let fc: FakeCloud;
    let admin: ApiClient;
    let t: ApiClient & { accountUuid: string };

    const quotas = async (who: ApiClient, account: string): Promise<Record<string, { value: number; used: number }>> => {
      const r = await who.get(`/v1/quotas?q=identityUuid=${account}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return Object.fromEntries(r.body.inventories.map((q: { name: string; value: number; used: number }) => [q.name, { value: q.value, used: q.used }]));
    };
    const setQuota = async (name: string, value: number): Promise<void> => {
      const r = await admin.post(`/v1/accounts/${t.accountUuid}/actions`, { updateQuota: { name, value } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    };
    const vmBody = (name: string): Record<string, unknown> => ({ name, instanceOfferingUuid: fc.ids.offering, imageUuid: fc.ids.image, l3NetworkUuids: [fc.ids.l3] });
    const vmsOf = async (): Promise<any[]> => (await t.get('/v1/vm-instances')).body.inventories;

    before(async function () {
      const o: Parameters<typeof startFakeCloud>[1] = { modules: [identityModule({ repairPeriodMs: 0 }) as never] };
      if (backend === 'redis') {
        const redis = await startRedis(cleanup);
        o.store = redis.url;
        o.storePrefix = `q-${randomUUID().slice(0, 8)}:`;
      }
      fc = await startFakeCloud(cleanup, o);
      admin = fc.api;
      t = await fc.controller.account(`quota-${backend}`);
    });

    it("lists the manual's quotas with their defaults and usage 0; an account sees its own, never another's", async function () {
      const q = await quotas(admin, t.accountUuid);
      assert.deepEqual(Object.keys(q).sort(), Object.keys(MANUAL).sort());
      assert.deepEqual(QUOTAS.map((x) => x.name).sort(), Object.keys(MANUAL).sort());
      for (const [name, v] of Object.entries(MANUAL)) assert.deepEqual(q[name], { value: v, used: 0 }, name);
      assert.deepEqual(await quotas(t, t.accountUuid), q);
      const own = await t.get('/v1/quotas');
      assert.equal(own.body.total, 17);
      const other = await fc.controller.account(`quota-other-${backend}`);
      assert.equal((await other.get(`/v1/quotas?q=identityUuid=${t.accountUuid}`)).status, 404);
      assert.equal((await t.get('/v1/quotas?q=uuid=x')).status, 400);
    });

    it('updateQuota: admin only, a known name, a non-negative integer', async function () {
      assert.equal((await t.post(`/v1/accounts/${t.accountUuid}/actions`, { updateQuota: { name: 'vm.totalNum', value: 100 } })).status, 403);
      const bad = await admin.post(`/v1/accounts/${t.accountUuid}/actions`, { updateQuota: { name: 'vm.bogus', value: 1 } });
      assert.equal(bad.status, 400);
      assert.match(bad.body.message, /unknown quota 'vm.bogus'/);
      assert.equal((await admin.post(`/v1/accounts/${t.accountUuid}/actions`, { updateQuota: { name: 'vm.num', value: -1 } })).status, 400);
    });

    it('vm.totalNum=1: the second VM is refused before any work, naming the quota, its value and the usage; destroyed still counts, expunged frees', async function () {
      await setQuota('vm.totalNum', 1);
      const first = await t.post('/v1/vm-instances?wait=true', vmBody('q-vm1'));
      assert.equal(first.status, 200, JSON.stringify(first.body));
      let q = await quotas(t, t.accountUuid);
      assert.deepEqual(q['vm.totalNum'], { value: 1, used: 1 });
      assert.deepEqual(q['vm.num'], { value: 20, used: 1 });
      assert.deepEqual(q['vm.cpuNum']!.used, first.body.cpuNum);
      assert.deepEqual(q['vm.memorySize']!.used, first.body.memorySize);
      const jobsBefore = (await t.get('/v1/jobs')).body.total;
      const second = await t.post('/v1/vm-instances?wait=true', vmBody('q-vm2'));
      assert.equal(second.status, 409, JSON.stringify(second.body));
      assert.equal(second.body.code, 'QUOTA_EXCEEDED');
      assert.match(second.body.message, /quota vm\.totalNum exceeded: the account uses 1 of 1/);
      assert.deepEqual({ quota: second.body.details.quota, value: second.body.details.value, used: second.body.details.used }, { quota: 'vm.totalNum', value: 1, used: 1 });
      // nothing was made: no job, no VM, no volume, no NIC
      assert.equal((await t.get('/v1/jobs')).body.total, jobsBefore);
      assert.deepEqual((await vmsOf()).map((v) => v.name), ['q-vm1']);
      assert.equal((await t.get('/v1/volumes')).body.total, 1);
      assert.equal((await t.get('/v1/vm-nics')).body.total, 1);

      // destroyed but not expunged: still counts (the manual); not running any more
      const del = await t.req('DELETE', `/v1/vm-instances/${first.body.uuid}?wait=true`);
      assert.equal(del.status, 200, JSON.stringify(del.body));
      q = await quotas(t, t.accountUuid);
      assert.deepEqual(q['vm.totalNum'], { value: 1, used: 1 });
      assert.equal(q['vm.num']!.used, 0);
      assert.equal((await t.post('/v1/vm-instances?wait=true', vmBody('q-vm2'))).status, 409);
      const ex = await t.post(`/v1/vm-instances/${first.body.uuid}/actions?wait=true`, { expunge: {} });
      assert.equal(ex.status, 200, JSON.stringify(ex.body));
      q = await quotas(t, t.accountUuid);
      assert.deepEqual(q['vm.totalNum'], { value: 1, used: 0 });
      assert.equal(q['vm.cpuNum']!.used, 0);
      assert.equal(q['volume.capacity']!.used, 0);
      const again = await t.post('/v1/vm-instances?wait=true', vmBody('q-vm2'));
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal((await quotas(t, t.accountUuid))['vm.totalNum']!.used, 1);
    });

    it('vm.num counts running VMs: a start beyond it is refused, a stop frees it', async function () {
      await setQuota('vm.totalNum', 20);
      await setQuota('vm.num', 1);
      const vm2 = (await vmsOf()).find((v) => v.name === 'q-vm2');
      const stopped = await t.post('/v1/vm-instances?wait=true', { ...vmBody('q-vm3'), strategy: 'CreateStopped' });
      assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
      const start = await t.post(`/v1/vm-instances/${stopped.body.uuid}/actions?wait=true`, { start: {} });
      assert.equal(start.status, 409, JSON.stringify(start.body));
      assert.match(start.body.message, /quota vm\.num exceeded: the account uses 1 of 1/);
      assert.equal((await t.get(`/v1/vm-instances/${stopped.body.uuid}`)).body.state, 'Stopped');
      assert.equal((await t.post(`/v1/vm-instances/${vm2.uuid}/actions?wait=true`, { stop: { type: 'cold' } })).status, 200);
      assert.equal((await quotas(t, t.accountUuid))['vm.num']!.used, 0);
      const ok = await t.post(`/v1/vm-instances/${stopped.body.uuid}/actions?wait=true`, { start: {} });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.deepEqual((await quotas(t, t.accountUuid))['vm.num'], { value: 1, used: 1 });
    });

    it('20 concurrent creates against a quota of 5 give exactly 5 (check and claim are one store transaction)', async function () {
      await setQuota('volume.data.num', 5);
      const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => t.post('/v1/volumes', { name: `q-vol-${i}`, diskSize: 1 * GiB })));
      const created = rs.filter((r) => r.status === 201);
      const refused = rs.filter((r) => r.status === 409);
      assert.equal(created.length, 5, JSON.stringify(rs.map((r) => r.status)));
      assert.equal(refused.length, 15);
      for (const r of refused) assert.match(r.body.message, /quota volume\.data\.num exceeded: the account uses 5 of 5/);
      assert.equal((await t.get('/v1/volumes?q=type=Data')).body.total, 5);
      const q = await quotas(t, t.accountUuid);
      assert.deepEqual(q['volume.data.num'], { value: 5, used: 5 });
      // deleting one frees one
      const gone = await t.req('DELETE', `/v1/volumes/${created[0]!.body.uuid}?wait=true`);
      assert.ok(gone.status === 200 || gone.status === 204, JSON.stringify(gone.body));
      assert.equal((await quotas(t, t.accountUuid))['volume.data.num']!.used, 4);
      assert.equal((await t.post('/v1/volumes', { name: 'q-vol-late', diskSize: GiB })).status, 201);
    });

    it('the admin has no quotas; a bad body is still a 400 and reserves nothing', async function () {
      const q = await quotas(admin, fc.controller.auth.adminAccountUuid);
      assert.deepEqual(q, {});
      const before = (await quotas(t, t.accountUuid))['vm.totalNum']!.used;
      assert.equal((await t.post('/v1/vm-instances', { name: 'bad' })).status, 400);
      assert.equal((await quotas(t, t.accountUuid))['vm.totalNum']!.used, before);
    });

    it('the repair pass finds the ledger in step with the inventory', async function () {
      const before = await quotas(t, t.accountUuid);
      // a charged resource written behind the API's back is charged by its event
      const { QuotaService } = await import('../../../controller/identity/quotas.js');
      const svc = new QuotaService(fc.controller.store, () => fc.controller.auth.adminAccountUuid);
      assert.deepEqual(await svc.reconcile(), { fixed: 0 });
      assert.deepEqual(await quotas(t, t.accountUuid), before);
    });
  });
}
