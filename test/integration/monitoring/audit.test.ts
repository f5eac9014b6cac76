// The audit log through a real controller (SQLite file, HTTP): every mutating call is recorded
// with its account, client IP, result and error code; secrets in bodies are redacted; a long
// operation is completed from its job; GET /v1/audits filters (resourceUuid, accountUuid,
// since/until, q=) and scopes normal accounts to their own records; retention deletes old ones.
import assert from 'node:assert/strict';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { AUDIT_KIND, REDACTED } from '../../../controller/audit/index.js';
import { useCleanup } from '../../harness/cleanup.js';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';

describe('audit log (real controller)', function () {
  this.timeout(60_000);
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;

  before(async () => {
    c = await testController(cleanup, {
      registry: new ApiRegistry(),
      modules: [
        {
          name: 'test-long-zones',
          // a long create (a job) stands in for VM create
          install: (s) => s.registry.setCreate('zones', { long: true, run: async (body, oc) => oc.store.create({ uuid: crypto.randomUUID(), kind: 'zone', name: String(body.name), createDate: '', lastOpDate: '', ownerAccountUuid: oc.principal.accountUuid, tags: [], state: 'Enabled' }) }),
        },
      ],
    });
    admin = await c.login('admin', c.adminPassword);
  });

  const audits = async (cl: ApiClient, qs: string): Promise<Array<Record<string, any>>> => {
    const r = await cl.get(`/v1/audits?${qs}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.inventories;
  };

  it('records creates, actions, failures and logins with the account; secrets are redacted', async () => {
    const z = await admin.post('/v1/zones?wait=true', { name: 'audited' });
    assert.equal(z.status, 200, JSON.stringify(z.body));
    const zoneUuid = z.body.uuid as string;
    const ch = await admin.patch(`/v1/zones/${zoneUuid}`, { description: 'changed' });
    assert.equal(ch.status, 200, JSON.stringify(ch.body));
    const bad = await admin.post('/v1/accounts', { name: 'x', password: 'short' });
    assert.equal(bad.status, 400);
    const acc = await admin.post('/v1/accounts', { name: 'audit-user', password: 'secret-password-1' });
    assert.equal(acc.status, 201);
    const failedLogin = await c.anon.post('/v1/sessions', { accountName: 'audit-user', password: 'wrong-password' });
    assert.equal(failedLogin.status, 401);

    const forZone = await audits(admin, `resourceUuid=${zoneUuid}`);
    assert.deepEqual(forZone.map((a) => a.apiName).sort(), ['zones.create', 'zones.update']);
    for (const a of forZone) {
      assert.equal(a.accountUuid, c.auth.adminAccountUuid);
      assert.equal(a.accountName, 'admin');
      assert.equal(a.result, 'Succeeded');
      assert.match(a.clientIp, /127\.0\.0\.1/);
      assert.ok(a.duration >= 0 && a.startTime);
    }
    const failed = await audits(admin, 'q=result=Failed');
    const badCreate = failed.find((a) => a.apiName === 'accounts.create');
    assert.ok(badCreate, 'the refused create is recorded');
    assert.equal(badCreate.errorCode, 'INVALID_ARGUMENT');
    assert.equal(badCreate.httpStatus, 400);
    assert.equal(badCreate.requestBody.password, REDACTED);
    const login = failed.find((a) => a.apiName === 'sessions.login');
    assert.ok(login, 'a failed login is recorded');
    assert.equal(login.errorCode, 'UNAUTHORIZED');
    assert.equal(login.accountName, 'audit-user');
    assert.equal(login.requestBody.password, REDACTED);
    // nothing of the password survives anywhere in the stored record
    const raw = await c.store.list({ kind: AUDIT_KIND, limit: 1000 });
    assert.ok(!JSON.stringify(raw.items).includes('secret-password-1'));
    assert.ok(!JSON.stringify(raw.items).includes('wrong-password'));
  });

  it('a long operation is completed from its job (Accepted → Succeeded, resource uuid)', async () => {
    const r = await admin.post('/v1/zones', { name: 'long-one' });
    assert.equal(r.status, 202);
    const jobUuid = r.body.jobUuid as string;
    const deadline = Date.now() + 10_000;
    let a: Record<string, any> | undefined;
    while (Date.now() < deadline) {
      a = (await audits(admin, `q=jobUuid=${jobUuid}`))[0];
      if (a?.result === 'Succeeded') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(a?.result, 'Succeeded', JSON.stringify(a));
    assert.equal(a.apiName, 'zones.create');
    const job = await admin.get(`/v1/jobs/${jobUuid}`);
    assert.equal(a.resourceUuid, job.body.result.uuid);
  });

  it('normal accounts see only their own records; filters by account and time', async () => {
    const t0 = new Date().toISOString();
    const u = await c.account('auditee');
    const ch = await u.put(`/v1/accounts/${u.accountUuid}`, { description: 'mine' });
    assert.equal(ch.status, 200, JSON.stringify(ch.body));
    const mine = await audits(u, '');
    assert.ok(mine.length >= 1);
    assert.ok(mine.every((a) => a.accountUuid === u.accountUuid), 'only own records');
    assert.equal((await audits(u, `accountUuid=${c.auth.adminAccountUuid}`)).length, 0);
    const byAdmin = await audits(admin, `accountUuid=${u.accountUuid}&since=${encodeURIComponent(t0)}`);
    assert.deepEqual(
      byAdmin.map((a) => a.apiName),
      ['accounts.update', 'sessions.login'],
      'newest first',
    );
    assert.equal((await audits(admin, `accountUuid=${u.accountUuid}&until=${encodeURIComponent(t0)}`)).length, 0);
    const other = (await audits(admin, `accountUuid=${c.auth.adminAccountUuid}&limit=1`))[0]!;
    assert.equal((await u.get(`/v1/audits/${other.uuid}`)).status, 404);
    assert.equal((await admin.get(`/v1/audits/${other.uuid}`)).status, 200);
    assert.equal((await admin.get('/v1/audits?since=yesterday')).status, 400);
    assert.equal((await admin.get('/v1/audits?q=requestBody.password=x')).status, 400);
    assert.equal((await c.anon.get('/v1/audits')).status, 401);
    assert.equal((await admin.del(`/v1/audits/${other.uuid}`)).status, 404, 'records cannot be deleted through the API');
  });

  it('retention deletes records older than the configured days', async () => {
    const old = new Date(Date.now() - 100 * 86_400_000).toISOString();
    await c.store.create({ uuid: crypto.randomUUID(), kind: AUDIT_KIND, name: 'zones.create', createDate: old, lastOpDate: old, ownerAccountUuid: c.auth.adminAccountUuid, tags: [], startTime: old });
    const before = (await admin.get('/v1/audits?count=true')).body.total as number;
    const { AuditLog } = await import('../../../controller/audit/index.js');
    const n = await new AuditLog(c.store, c.jobs, c.bus, { retentionDays: 30 }).prune();
    assert.equal(n, 1);
    assert.equal((await admin.get('/v1/audits?count=true')).body.total, before - 1);
  });
});
