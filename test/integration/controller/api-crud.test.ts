// A real controller (SQLite file, HTTP): health, sessions, admin bootstrap, CRUD, queries.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanup } from '../../harness/cleanup.js';
import { tmpDir } from '../../harness/tmp.js';
import { ApiClient, testController, type TestController } from '../../harness/controller.js';
import { startController } from '../../../controller/main.js';

describe('controller API: sessions and CRUD (real SQLite, real HTTP)', function () {
  const cleanup = useCleanup();
  let c: TestController;
  let admin: ApiClient;

  before(async function () {
    c = await testController(cleanup);
    admin = await c.login('admin', c.adminPassword);
  });

  it('GET /health answers without auth', async function () {
    const r = await c.anon.get('/health');
    assert.equal(r.status, 200);
    assert.equal(r.body.status, 'ok');
    assert.match(r.body.version, /^\d+\.\d+\.\d+/);
  });

  it('everything else needs a session: 401 with {code, message}', async function () {
    for (const [m, p] of [['GET', '/v1/zones'], ['POST', '/v1/zones'], ['GET', '/v1/jobs'], ['DELETE', '/v1/sessions/current'], ['GET', '/v1/events']] as const) {
      const r = await c.anon.req(m, p, m === 'POST' ? { name: 'x' } : undefined);
      assert.equal(r.status, 401, `${m} ${p}`);
      assert.equal(r.body.code, 'UNAUTHORIZED');
      assert.ok(r.body.message.length > 10);
    }
    const bad = await new ApiClient(c.url, 'not-a-session').get('/v1/zones');
    assert.equal(bad.status, 401);
  });

  it('POST /v1/sessions: token + expiresAt; wrong password → 401; missing field → 400 naming it', async function () {
    const r = await c.anon.post('/v1/sessions', { accountName: 'admin', password: c.adminPassword });
    assert.equal(r.status, 200);
    assert.equal(typeof r.body.token, 'string');
    assert.ok(Date.parse(r.body.expiresAt) > Date.now());
    const wrong = await c.anon.post('/v1/sessions', { accountName: 'admin', password: 'nope' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.code, 'UNAUTHORIZED');
    const unknown = await c.anon.post('/v1/sessions', { accountName: 'nobody', password: 'nope' });
    assert.equal(unknown.status, 401);
    assert.equal(unknown.body.message, wrong.body.message, 'unknown account and wrong password look the same');
    const missing = await c.anon.post('/v1/sessions', { accountName: 'admin' });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.field, 'password');
    const badJson = await c.anon.req('POST', '/v1/sessions', '{"accountName": ', { 'content-type': 'application/json' });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.code, 'INVALID_ARGUMENT');
  });

  it('DELETE /v1/sessions/current ends the session', async function () {
    const s = await c.login('admin', c.adminPassword);
    assert.equal((await s.get('/v1/zones')).status, 200);
    assert.equal((await s.del('/v1/sessions/current')).status, 204);
    assert.equal((await s.get('/v1/zones')).status, 401);
  });

  it('zone CRUD: create 201, get, list, update (PUT and PATCH), delete; field names as ZStack', async function () {
    const cr = await admin.post('/v1/zones', { name: 'crud-z1', description: 'first' });
    assert.equal(cr.status, 201, JSON.stringify(cr.body));
    const z = cr.body;
    assert.match(z.uuid, /^[0-9a-f-]{36}$/);
    assert.equal(z.name, 'crud-z1');
    assert.equal(z.state, 'Enabled');
    assert.ok(z.createDate && z.lastOpDate);
    const g = await admin.get(`/v1/zones/${z.uuid}`);
    assert.equal(g.status, 200);
    assert.deepEqual(g.body, z);
    const u = await admin.put(`/v1/zones/${z.uuid}`, { description: 'second' });
    assert.equal(u.status, 200);
    assert.equal(u.body.description, 'second');
    const p = await admin.patch(`/v1/zones/${z.uuid}`, { name: 'crud-z1b' });
    assert.equal(p.body.name, 'crud-z1b');
    assert.equal(p.body.description, 'second');
    const l = await admin.get('/v1/zones?q=name=crud-z1b');
    assert.equal(l.status, 200);
    assert.equal(l.body.total, 1);
    assert.equal(l.body.inventories[0].uuid, z.uuid);
    const d = await admin.del(`/v1/zones/${z.uuid}`);
    assert.equal(d.status, 200);
    assert.equal((await admin.get(`/v1/zones/${z.uuid}`)).status, 404);
    assert.equal((await admin.del(`/v1/zones/${z.uuid}`)).status, 404);
  });

  it('cluster needs a visible zone (400 naming zoneUuid); a zone with clusters cannot be deleted (409)', async function () {
    const missing = await admin.post('/v1/clusters', { name: 'c0', zoneUuid: '00000000-0000-4000-8000-000000000000' });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.field, 'zoneUuid');
    const z = (await admin.post('/v1/zones', { name: 'crud-z2' })).body;
    const cl = await admin.post('/v1/clusters', { name: 'c1', zoneUuid: z.uuid, hypervisorType: 'KVM' });
    assert.equal(cl.status, 201);
    assert.equal(cl.body.parentUuid, z.uuid);
    const del = await admin.del(`/v1/zones/${z.uuid}`);
    assert.equal(del.status, 409);
    assert.match(del.body.message, /clusters/);
    assert.equal((await admin.del(`/v1/clusters/${cl.body.uuid}`)).status, 200);
    assert.equal((await admin.del(`/v1/zones/${z.uuid}`)).status, 200);
  });

  it('queries: = != > < >= <= ~= ?=, limit/start, sort, count, fields', async function () {
    const names = ['q-a', 'q-b', 'q-c', 'q-d', 'q-e'];
    const zs: any[] = [];
    for (const n of names) zs.push((await admin.post('/v1/zones', { name: n, description: `d-${n}` })).body);
    const q = async (qs: string) => {
      const r = await admin.get(`/v1/zones?${qs}`);
      assert.equal(r.status, 200, `${qs}: ${JSON.stringify(r.body)}`);
      return r.body;
    };
    assert.deepEqual((await q('q=name~=q-%&sort=%2Bname')).inventories.map((z: any) => z.name), names);
    assert.deepEqual((await q('q=name~=q-%&sort=-name')).inventories.map((z: any) => z.name), [...names].reverse());
    assert.deepEqual((await q('q=name~=q-%&sort=+name')).inventories.map((z: any) => z.name), names, "a raw '+' (space) sorts ascending");
    assert.equal((await q('q=name~=q-%&q=name!=q-c')).total, 4);
    assert.deepEqual((await q('q=name>q-c&sort=name')).inventories.map((z: any) => z.name).filter((n: string) => n.startsWith('q-')), ['q-d', 'q-e']);
    assert.deepEqual((await q('q=name>=q-c&q=name<=q-d&sort=name')).inventories.map((z: any) => z.name), ['q-c', 'q-d']);
    assert.deepEqual((await q('q=name<q-b&q=name~=q-%')).inventories.map((z: any) => z.name), ['q-a']);
    assert.deepEqual((await q('q=name?=q-a,q-e&sort=name')).inventories.map((z: any) => z.name), ['q-a', 'q-e']);
    assert.equal((await q(`q=uuid=${zs[2].uuid}`)).inventories[0].name, 'q-c');
    const page = await q('q=name~=q-%&sort=name&limit=2&start=2');
    assert.equal(page.total, 5);
    assert.deepEqual(page.inventories.map((z: any) => z.name), ['q-c', 'q-d']);
    assert.deepEqual(await q('q=name~=q-%&count=true'), { total: 5 });
    const f = await q('q=name=q-a&fields=uuid,name');
    assert.deepEqual(f.inventories, [{ uuid: zs[0].uuid, name: 'q-a' }]);
    const one = await admin.get(`/v1/zones/${zs[0].uuid}?fields=name`);
    assert.deepEqual(one.body, { name: 'q-a' });
  });

  it('cursors: next walks a sorted, filtered list page by page; hostile cursors are 400', async function () {
    for (const n of ['c-3', 'c-1', 'c-5', 'c-2', 'c-4']) assert.equal((await admin.post('/v1/zones', { name: n })).status, 201);
    const walk = async (qs: string): Promise<string[]> => {
      const seen: string[] = [];
      let r = await admin.get(`/v1/zones?${qs}`);
      for (let i = 0; i < 10; i++) {
        assert.equal(r.status, 200, JSON.stringify(r.body));
        seen.push(...r.body.inventories.map((z: any) => z.name));
        if (i > 0) assert.equal(r.body.total, undefined, 'cursor pages are not counted');
        if (!r.body.next) break;
        r = await admin.get(`/v1/zones?${qs}&cursor=${r.body.next}`);
      }
      return seen;
    };
    const first = await admin.get('/v1/zones?q=name~=c-%25&sort=name&limit=2');
    assert.equal(first.body.total, 5, 'the first page is counted');
    assert.equal(typeof first.body.next, 'string');
    assert.deepEqual(await walk('q=name~=c-%25&sort=name&limit=2'), ['c-1', 'c-2', 'c-3', 'c-4', 'c-5']);
    assert.deepEqual(await walk('q=name~=c-%25&sort=-name&limit=3'), ['c-5', 'c-4', 'c-3', 'c-2', 'c-1']);
    assert.deepEqual(await walk('q=name~=c-%25&limit=1'), ['c-3', 'c-1', 'c-5', 'c-2', 'c-4'], 'creation order');
    const last = await admin.get('/v1/zones?q=name~=c-%25&sort=name&limit=5');
    assert.equal(last.body.next, undefined, 'no next when nothing follows');
    const next = first.body.next as string;
    const forged = Buffer.from(JSON.stringify(['x'.repeat(16), '', ''])).toString('base64url');
    for (const qs of [
      `q=name~=c-%25&sort=-name&limit=2&cursor=${next}`,
      `q=name~=d-%25&sort=name&limit=2&cursor=${next}`,
      `q=name~=c-%25&limit=2&cursor=${next}`,
      `q=name~=c-%25&sort=name&limit=2&cursor=${next}&start=2`,
      `q=name~=c-%25&sort=name&cursor=${next}&cursor=${next}`,
      `sort=name&cursor=${forged}`,
      `cursor=%00%01`,
      `cursor=${'A'.repeat(5000)}`,
      `cursor=${Buffer.from('{"a":1}').toString('base64url')}`,
      `cursor=${Buffer.from('[1,2,3]').toString('base64url')}`,
      `cursor=`,
    ]) {
      const r = await admin.get(`/v1/zones?${qs}`);
      assert.equal(r.status, 400, `${qs}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.field, 'cursor', qs);
    }
    const audits = await admin.get('/v1/audits?cursor=x');
    assert.equal(audits.status, 400, 'lists without cursors refuse one');
  });

  it('bad queries are 400 naming the parameter, never 500', async function () {
    for (const [qs, field] of [
      ['q=name', 'q'],
      ['q==x', 'q'],
      ['limit=abc', 'limit'],
      ['limit=-1', 'limit'],
      ['limit=100000', 'limit'],
      ['start=x', 'start'],
      ['sort=%2B', 'sort'],
      ['count=maybe', 'count'],
      ['fields=', 'fields'],
      ['bogus=1', 'bogus'],
      ['q=a%20b=1', 'q'],
      ['q=name?=', 'q.name'],
      ['q=_passwordHash=x', 'q'],
    ] as const) {
      const r = await admin.get(`/v1/zones?${qs}`);
      assert.equal(r.status, 400, `${qs}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'INVALID_ARGUMENT');
      assert.equal(r.body.field, field, qs);
    }
  });

  it('unknown collection / endpoint → 404, wrong method → 405, all JSON errors', async function () {
    const r = await admin.get('/v1/no-such-things');
    assert.equal(r.status, 404);
    assert.equal(r.body.code, 'NOT_FOUND');
    const r2 = await admin.get('/nowhere');
    assert.equal(r2.status, 404);
    const r3 = await admin.req('PUT', '/v1/zones');
    assert.equal(r3.status, 405);
    assert.equal(typeof r3.body.message, 'string');
  });

  it('accounts: admin creates; normal account cannot create accounts or zones (403), changes its own password with oldPassword', async function () {
    const b = await c.account('acct-b');
    const me = await b.get(`/v1/accounts/${b.accountUuid}`);
    assert.equal(me.status, 200);
    assert.equal(me.body.type, 'Normal');
    assert.equal(me.body._passwordHash, undefined, 'hash never leaves');
    assert.equal(JSON.stringify(me.body).includes('scrypt'), false);
    const list = await b.get('/v1/accounts');
    assert.deepEqual(list.body.inventories.map((a: any) => a.uuid), [b.accountUuid], 'a normal account sees only itself');
    assert.equal((await b.post('/v1/accounts', { name: 'x-evil', password: '12345678' })).status, 403);
    assert.equal((await b.post('/v1/zones', { name: 'z' })).status, 403);
    const noOld = await b.put(`/v1/accounts/${b.accountUuid}`, { password: 'new-password-1' });
    assert.equal(noOld.status, 400);
    assert.equal(noOld.body.field, 'oldPassword');
    const ok = await b.put(`/v1/accounts/${b.accountUuid}`, { password: 'new-password-1', oldPassword: 'account-pw-123' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal((await b.get('/v1/zones')).status, 200, 'the session that changed the password stays');
    const name = me.body.name;
    assert.equal((await c.anon.post('/v1/sessions', { accountName: name, password: 'account-pw-123' })).status, 401);
    assert.equal((await c.anon.post('/v1/sessions', { accountName: name, password: 'new-password-1' })).status, 200);
    const dup = await admin.post('/v1/accounts', { name, password: '12345678' });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.field, 'name');
    const adminUuid = (await admin.get('/v1/accounts?q=name=admin')).body.inventories[0].uuid;
    // disable: sessions end, logins refused; enable again
    assert.equal((await b.post(`/v1/accounts/${b.accountUuid}/actions`, { changeState: { stateEvent: 'disable' } })).status, 403, 'only the admin');
    const dis = await admin.post(`/v1/accounts/${b.accountUuid}/actions`, { changeState: { stateEvent: 'disable' } });
    assert.equal(dis.status, 200, JSON.stringify(dis.body));
    assert.equal(dis.body.state, 'Disabled');
    assert.equal((await b.get('/v1/zones')).status, 401);
    const refused = await c.anon.post('/v1/sessions', { accountName: name, password: 'new-password-1' });
    assert.equal(refused.status, 401);
    assert.match(refused.body.message, /disabled/);
    assert.equal((await admin.post(`/v1/accounts/${adminUuid}/actions`, { changeState: { stateEvent: 'disable' } })).status, 409, 'admin cannot be disabled');
    assert.equal((await admin.post(`/v1/accounts/${b.accountUuid}/actions`, { changeState: { stateEvent: 'enable' } })).body.state, 'Enabled');
    assert.equal((await c.anon.post('/v1/sessions', { accountName: name, password: 'new-password-1' })).status, 200);
    assert.equal((await admin.del(`/v1/accounts/${adminUuid}`)).status, 409, 'admin cannot be deleted');
    const b2 = await c.login(name, 'new-password-1');
    assert.equal((await admin.del(`/v1/accounts/${b.accountUuid}`)).status, 200);
    assert.equal((await b2.get('/v1/zones')).status, 401, 'sessions of a deleted account end');
  });

  it('/metrics needs the controller token or an admin session', async function () {
    assert.equal((await c.anon.get('/metrics')).status, 401);
    const r = await admin.get('/metrics');
    assert.equal(r.status, 200);
    assert.match(String(r.body), /tstack_http_requests_total/);
  });
});

describe('controller: admin bootstrap', function () {
  const cleanup = useCleanup();
  const saved = process.env.TSTACK_ADMIN_PASSWORD;
  before(() => delete process.env.TSTACK_ADMIN_PASSWORD);
  after(() => {
    if (saved !== undefined) process.env.TSTACK_ADMIN_PASSWORD = saved;
  });

  it('generates the admin password into <data-dir>/admin-password (0600) once; a given password resets it', async function () {
    const dataDir = await tmpDir('boot');
    const c1 = await startController({ dataDir, listenHost: '127.0.0.1', listenPort: 0 });
    cleanup.add(() => c1.close());
    const file = join(dataDir, 'admin-password');
    assert.ok(existsSync(file));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const pw = readFileSync(file, 'utf8').trim();
    assert.equal(c1.generatedAdminPassword, pw);
    assert.ok(pw.length >= 16);
    assert.ok(existsSync(join(dataDir, 'inventory.db')), 'SQLite under the data dir by default');
    assert.equal((await new ApiClient(c1.url).post('/v1/sessions', { accountName: 'admin', password: pw })).status, 200);
    await c1.close();
    const c2 = await startController({ dataDir, listenHost: '127.0.0.1', listenPort: 0 });
    cleanup.add(() => c2.close());
    assert.equal(c2.generatedAdminPassword, undefined, 'printed once');
    assert.equal((await new ApiClient(c2.url).post('/v1/sessions', { accountName: 'admin', password: pw })).status, 200);
    await c2.close();
    const c3 = await startController({ dataDir, listenHost: '127.0.0.1', listenPort: 0, adminPassword: 'reset-password-9' });
    cleanup.add(() => c3.close());
    assert.equal((await new ApiClient(c3.url).post('/v1/sessions', { accountName: 'admin', password: pw })).status, 401);
    assert.equal((await new ApiClient(c3.url).post('/v1/sessions', { accountName: 'admin', password: 'reset-password-9' })).status, 200);
  });
});
