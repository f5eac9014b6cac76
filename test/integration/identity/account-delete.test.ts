// Deleting an account with its resources (issue 18) on a real controller — SQLite and Redis —
// with the fake-cloud host: a job with progress that destroys and expunges the account's VMs
// (domains off the host, volumes, IPs and MACs released) and deletes its other resources, its
// users, policies and keys, its quota ledger and settings, then the account. A storage
// failure stops it with a clear retryable state (account Deleting, no login, the rest intact);
// DELETE again finishes.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { startFakeCloud, type FakeCloud } from '../../harness/fake-cloud.js';
import { identityModule } from '../../../controller/identity/module.js';
import { QUOTA_DOCS } from '../../../controller/identity/quotas.js';
import { ipNamespace } from '../../../controller/allocator/ip.js';
import { MAC_NAMESPACE } from '../../../controller/allocator/mac.js';

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`identity: deleting an account with its resources (${backend})`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let fc: FakeCloud;

    before(async function () {
      const o: Parameters<typeof startFakeCloud>[1] = { modules: [identityModule({ repairPeriodMs: 0 }) as never] };
      if (backend === 'redis') {
        const redis = await startRedis(cleanup);
        o.store = redis.url;
        o.storePrefix = `d-${randomUUID().slice(0, 8)}:`;
      }
      fc = await startFakeCloud(cleanup, o);
    });

    const ownedBy = async (account: string): Promise<string[]> => {
      const out: string[] = [];
      for (const c of fc.registry.collections()) {
        if (c.kind === 'account') continue;
        for (const r of (await fc.controller.store.list({ kind: c.kind, ownerAccountUuid: account })).items) out.push(`${r.kind}:${String(r.state ?? '')}`);
      }
      return out.sort();
    };

    it('a failure leaves the account Deleting (no login, the rest intact); DELETE again removes VMs from the host, releases IPs, frees quotas, deletes everything', async function () {
      const store = fc.controller.store;
      const t = await fc.controller.account(`gone-${backend}`);
      const name = (await t.get(`/v1/accounts/${t.accountUuid}`)).body.name as string;
      assert.equal((await fc.api.post(`/v1/accounts/${t.accountUuid}/actions`, { updateQuota: { name: 'vm.totalNum', value: 5 } })).status, 200);
      const vmBody = (n: string): Record<string, unknown> => ({ name: n, instanceOfferingUuid: fc.ids.offering, imageUuid: fc.ids.image, l3NetworkUuids: [fc.ids.l3] });
      const vms: string[] = [];
      for (const n of ['d-vm1', 'd-vm2']) {
        const r = await t.post('/v1/vm-instances?wait=true', vmBody(n));
        assert.equal(r.status, 200, JSON.stringify(r.body));
        vms.push(r.body.uuid);
      }
      assert.equal((await t.post(`/v1/vm-instances/${vms[1]}/actions?wait=true`, { stop: {} })).status, 200);
      assert.equal((await t.post('/v1/security-groups', { name: 'd-sg' })).status, 201);
      const u = await t.post('/v1/users', { name: 'd-user', password: 'd-user-password-1' });
      const pol = await t.post('/v1/policies', { name: 'd-pol', statements: [{ effect: 'Allow', actions: ['vm-instances:*'] }] });
      assert.equal((await t.post(`/v1/users/${u.body.uuid}/actions`, { attachPolicy: { policyUuid: pol.body.uuid } })).status, 200);
      const key = await t.post('/v1/access-keys', {});
      assert.equal(key.status, 201);
      const domains = async (): Promise<string[]> => (await fc.kvm.driver.list()).map((d) => d.name).filter((n) => vms.some((v) => n.includes(v)));
      assert.equal((await domains()).length, 1, 'the running VM');
      const nics = (await store.list({ kind: 'vm-nic', ownerAccountUuid: t.accountUuid })).items.map((n) => n.uuid);
      const ipsHeld = async (): Promise<number> => (await store.claims(ipNamespace(fc.ids.l3))).filter((c) => nics.includes(c.owner)).length;
      const macsHeld = async (): Promise<number> => (await store.claims(MAC_NAMESPACE)).filter((c) => nics.includes(c.owner)).length;
      assert.equal(await ipsHeld(), 2);
      assert.ok((await store.holders(t.accountUuid)).length > 0, 'the ledger holds the VMs');

      // every root volume delete fails: the VMs cannot be expunged
      for (let i = 0; i < 20; i++) fc.storage.failNext('ps/volume/delete', 'STORAGE_ERROR', 'disk busy (injected)');
      const failed = await fc.api.req('DELETE', `/v1/accounts/${t.accountUuid}?wait=true`);
      assert.equal(failed.status, 409, JSON.stringify(failed.body));
      assert.match(failed.body.message, /is Deleting: .*could not be: vm-instance .*disk busy.*DELETE the account again/);
      const job = (await fc.api.get(`/v1/jobs/${failed.body.jobUuid}`)).body;
      assert.equal(job.state, 'Failed');
      assert.equal(job.type, 'accounts.delete');
      const acc = await fc.api.get(`/v1/accounts/${t.accountUuid}`);
      assert.equal(acc.body.state, 'Deleting');
      assert.equal((await t.get('/v1/vm-instances')).status, 401, 'its sessions ended');
      const login = await fc.controller.anon.post('/v1/sessions', { accountName: name, password: 'account-pw-123' });
      assert.equal(login.status, 401);
      assert.match(login.body.message, /being deleted/);
      assert.equal((await fc.api.post(`/v1/accounts/${t.accountUuid}/actions`, { changeState: { stateEvent: 'enable' } })).status, 409);
      // what remains: the two VMs, destroyed (not half-expunged), with their volumes and NICs
      assert.deepEqual(await ownedBy(t.accountUuid), ['vm-instance:Destroyed', 'vm-instance:Destroyed', 'vm-nic:', 'vm-nic:', 'volume:Enabled', 'volume:Enabled'].sort());
      assert.equal(await ipsHeld(), 2, 'IPs kept by the VMs that remain');

      fc.storage.clearFaults('ps/volume/delete');
      const done = await fc.api.req('DELETE', `/v1/accounts/${t.accountUuid}?wait=true`);
      assert.equal(done.status, 200, JSON.stringify(done.body));
      assert.equal(done.body.name, name);
      assert.equal((await fc.api.get(`/v1/accounts/${t.accountUuid}`)).status, 404);
      assert.deepEqual(await ownedBy(t.accountUuid), []);
      assert.deepEqual(await domains(), [], 'the domains left the host');
      assert.equal(await ipsHeld(), 0, 'IPs released');
      assert.equal(await macsHeld(), 0, 'MACs released');
      assert.deepEqual(await store.holders(t.accountUuid), [], 'quota usage freed');
      assert.equal(await store.getDoc(QUOTA_DOCS, t.accountUuid), undefined, 'quota settings gone');
      const jobs = (await fc.api.get('/v1/jobs?q=type=accounts.delete&sort=-createDate')).body.inventories;
      assert.equal(jobs[0].state, 'Succeeded');
      assert.equal(jobs[0].progress, 100);
      // the name is free again
      assert.equal((await fc.api.post('/v1/accounts', { name, password: 'account-pw-123' })).status, 201);
    });
  });
}
