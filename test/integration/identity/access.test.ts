// Access keys, failed-login rate limiting and the session idle timeout (issue 18) on a real
// controller, SQLite and Redis.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { ApiClient, testController, type TestController } from '../../harness/controller.js';
import { identityModule } from '../../../controller/identity/module.js';
import { signRequest } from '../../../controller/auth/hmac.js';
import { LoginLimiter } from '../../../controller/identity/login-limit.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`identity: access keys, login limits, idle sessions (${backend})`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let c: TestController;
    let acct: ApiClient & { accountUuid: string };
    let acctName: string;

    before(async function () {
      const o: Parameters<typeof testController>[1] = { modules: [identityModule({ repairPeriodMs: 0, loginLimit: { maxFailures: 3, windowMs: 3_000 } }) as never], sessionIdleMs: 3_000 }; // long enough for a loaded CI machine between two uses of one session
      if (backend === 'redis') {
        const redis = await startRedis(cleanup);
        o.store = redis.url;
        o.storePrefix = `a-${randomUUID().slice(0, 8)}:`;
      }
      c = await testController(cleanup, o);
      acct = await c.account(`keys-${backend}`);
      acctName = (await acct.get(`/v1/accounts/${acct.accountUuid}`)).body.name;
    });

    it('an access key works instead of a session, shows its secret once, and stops working when revoked', async function () {
      const k = await acct.post('/v1/access-keys', { description: 'ci' });
      assert.equal(k.status, 201, JSON.stringify(k.body));
      assert.match(k.body.secret, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(k.body._secretHash, undefined);
      const listed = await acct.get(`/v1/access-keys/${k.body.uuid}`);
      assert.equal(listed.body.secret, undefined, 'shown once');
      const ak = new ApiClient(c.url, `ak:${k.body.accessKeyId}:${k.body.secret}`);
      const me = await ak.get(`/v1/accounts/${acct.accountUuid}`);
      assert.equal(me.status, 200);
      assert.equal((await ak.post('/v1/zones', { name: 'z' })).status, 403, 'acts as its (normal) account');
      assert.equal((await new ApiClient(c.url, `ak:${k.body.accessKeyId}:${'x'.repeat(43)}`).get('/v1/zones')).status, 401);
      assert.equal((await acct.post(`/v1/access-keys/${k.body.uuid}/actions`, { changeState: { stateEvent: 'disable' } })).status, 200);
      assert.equal((await ak.get('/v1/zones')).status, 401);
      assert.equal((await acct.post(`/v1/access-keys/${k.body.uuid}/actions`, { changeState: { stateEvent: 'enable' } })).status, 200);
      assert.equal((await ak.get('/v1/zones')).status, 200);
      assert.equal((await acct.req('DELETE', `/v1/access-keys/${k.body.uuid}`)).status, 200);
      const gone = await ak.get('/v1/zones');
      assert.equal(gone.status, 401);
      assert.match(gone.body.message, /revoked/);
      const other = await c.account(`keys-other-${backend}`);
      const k2 = await acct.post('/v1/access-keys', {});
      assert.equal((await other.req('DELETE', `/v1/access-keys/${k2.body.uuid}`)).status, 404);
    });

    it('HMAC-signed requests: signature over method, path, date, nonce and body; skew window; a replay and a tampered request are refused', async function () {
      const me = await c.login(acctName, 'account-pw-123'); // a fresh session: the describe's idle timeout is short
      const k = await me.post('/v1/access-keys', { description: 'signed' });
      const sign = (method: string, url: string, body?: string, o: { date?: Date; nonce?: string; secret?: string } = {}): Record<string, string> =>
        signRequest({ accessKeyId: k.body.accessKeyId, secret: o.secret ?? k.body.secret, method, url, ...(body !== undefined ? { body } : {}), ...(o.date ? { date: o.date } : {}), ...(o.nonce ? { nonce: o.nonce } : {}) });
      const raw = (method: string, url: string, headers: Record<string, string>, body?: string): Promise<{ status: number; body: any }> =>
        c.anon.req(method, url, body, body !== undefined ? { ...headers, 'content-type': 'application/json' } : headers);
      const url = `/v1/accounts/${acct.accountUuid}?fields=uuid,name`;
      const h = sign('GET', url);
      const r = await raw('GET', url, h);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.uuid, acct.accountUuid);
      const again = await raw('GET', url, h);
      assert.equal(again.status, 401, 'a replay');
      assert.match(again.body.message, /nonce was already used/);
      const body = JSON.stringify({ description: 'signed change' });
      const put = await raw('PUT', `/v1/accounts/${acct.accountUuid}`, sign('PUT', `/v1/accounts/${acct.accountUuid}`, body), body);
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.equal(put.body.description, 'signed change');
      const tampered = await raw('PUT', `/v1/accounts/${acct.accountUuid}`, sign('PUT', `/v1/accounts/${acct.accountUuid}`, body), JSON.stringify({ description: 'evil' }));
      assert.equal(tampered.status, 401, 'body changed after signing');
      assert.equal((await raw('GET', '/v1/zones', sign('GET', url))).status, 401, 'path changed after signing');
      assert.equal((await raw('GET', url, sign('GET', url, undefined, { date: new Date(Date.now() - 301_000) }))).status, 401, 'outside the skew window');
      assert.equal((await raw('GET', url, sign('GET', url, undefined, { date: new Date(Date.now() - 60_000) }))).status, 200, 'within it');
      assert.equal((await raw('GET', url, sign('GET', url, undefined, { secret: 'x'.repeat(43) }))).status, 401, 'wrong secret');
      assert.equal((await raw('GET', url, { authorization: 'TSTACK-HMAC-SHA256 Credential=zz', 'x-tstack-date': new Date().toISOString() })).status, 401, 'malformed');
      assert.equal((await me.req('DELETE', `/v1/access-keys/${k.body.uuid}`)).status, 200);
      assert.equal((await raw('GET', url, sign('GET', url))).status, 401, 'revoked');
    });

    it("a user's key acts as the user, under its policies", async function () {
      const u = await acct.post('/v1/users', { name: 'robot', password: 'robot-password-1' });
      const k = await acct.post('/v1/access-keys', { userUuid: u.body.uuid });
      assert.equal(k.status, 201, JSON.stringify(k.body));
      const ak = new ApiClient(c.url, `ak:${k.body.accessKeyId}:${k.body.secret}`);
      assert.equal((await ak.get('/v1/users')).status, 200, 'users read');
      const w = await ak.post('/v1/users', { name: 'minion', password: 'minion-password-1' });
      assert.equal(w.status, 403, JSON.stringify(w.body));
    });

    it('failed logins: after 3 for an account name, 429 with Retry-After even with the right password; the window passes', async function () {
      const anon = c.anon;
      for (let i = 0; i < 3; i++) assert.equal((await anon.post('/v1/sessions', { accountName: acctName, password: 'wrong-password' })).status, 401);
      const r = await anon.post('/v1/sessions', { accountName: acctName, password: 'account-pw-123' });
      assert.equal(r.status, 429, JSON.stringify(r.body));
      const ra = Number(r.headers.get('retry-after'));
      assert.ok(ra >= 1 && ra <= 3, `Retry-After ${ra}`);
      await sleep(ra * 1000 + 200);
      assert.equal((await anon.post('/v1/sessions', { accountName: acctName, password: 'account-pw-123' })).status, 200);
    });

    it('logout everywhere ends all of the caller\'s sessions (a user: its own only)', async function () {
      await sleep(3_200); // the login limiter's window from the previous test (same client address)
      const s1 = await c.login(acctName, 'account-pw-123');
      const s2 = await c.login(acctName, 'account-pw-123');
      const u = await c.anon.post('/v1/sessions', { accountName: acctName, userName: 'robot', password: 'robot-password-1' });
      const robot = new ApiClient(c.url, u.body.token);
      const robot2 = new ApiClient(c.url, (await c.anon.post('/v1/sessions', { accountName: acctName, userName: 'robot', password: 'robot-password-1' })).body.token);
      assert.equal((await robot.req('DELETE', '/v1/sessions')).status, 204);
      assert.equal((await robot2.get('/v1/zones')).status, 401);
      assert.equal((await s2.get('/v1/zones')).status, 200, "a user's logout-all leaves the account's sessions");
      assert.equal((await s1.req('DELETE', '/v1/sessions')).status, 204);
      assert.equal((await s2.get('/v1/zones')).status, 401);
    });

    it('a session unused longer than the idle timeout ends; one in use stays', async function () {
      const s = await c.login(acctName, 'account-pw-123');
      const busy = await c.login(acctName, 'account-pw-123');
      assert.equal((await s.get('/v1/zones')).status, 200);
      for (let i = 0; i < 7; i++) {
        await sleep(600);
        assert.equal((await busy.get('/v1/zones')).status, 200, `in use, after ${(i + 1) * 600} ms`);
      }
      const r = await s.get('/v1/zones');
      assert.equal(r.status, 401);
      assert.match(r.body.message, /idle/);
    });

    it('failed-login counts live in the store: failures counted by another controller refuse a login here', async function () {
      await sleep(3_200); // no failures of earlier tests left in the window
      const other = new LoginLimiter({ maxFailures: 3, windowMs: 3_000 }, c.store); // another controller's limiter on the same store
      for (let i = 0; i < 3; i++) await other.failed([`account:${acctName}`]);
      const r = await c.anon.post('/v1/sessions', { accountName: acctName, password: 'account-pw-123' });
      assert.equal(r.status, 429, JSON.stringify(r.body));
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    });

    it('failed logins per client address: after 3 with any names, 429 for every name from that address', async function () {
      await sleep(3_200);
      for (let i = 0; i < 3; i++) assert.equal((await c.anon.post('/v1/sessions', { accountName: `nobody-${i}-${backend}`, password: 'wrong-password' })).status, 401);
      const r = await c.anon.post('/v1/sessions', { accountName: acctName, password: 'account-pw-123' });
      assert.equal(r.status, 429, 'the right password for an untouched name, from the same address');
      assert.match(r.body.message, /from this address/);
      const ra = Number(r.headers.get('retry-after'));
      assert.ok(ra >= 1 && ra <= 3, `Retry-After ${ra}`);
      await sleep(ra * 1000 + 200);
      assert.equal((await c.anon.post('/v1/sessions', { accountName: acctName, password: 'account-pw-123' })).status, 200);
    });
  });
}
