// Users, groups and policies (issue 18) on a real controller — SQLite and Redis — with the
// fake-cloud host: a user logs in with its name, reads its account's VM but cannot stop it
// (403); an `Allow vm-instances:*` policy (on the user, or on a group it is in) lets it; Deny
// wins; another account gets 404; a user changes its own password; deleting a user keeps the
// account's resources; and a fuzz of every mutating endpoint of OpenAPI with a policy-less
// user finds nothing that succeeds.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { useCleanup } from '../../harness/cleanup.js';
import { startRedis } from '../../harness/redis.js';
import { startFakeCloud, type FakeCloud } from '../../harness/fake-cloud.js';
import { ApiClient } from '../../harness/controller.js';
import { identityModule } from '../../../controller/identity/module.js';

for (const backend of ['sqlite', 'redis'] as const) {
  describe(`identity: users, groups, policies (${backend})`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let fc: FakeCloud;
    let acct: ApiClient & { accountUuid: string };
    let acctName: string;
    let vm: { uuid: string };
    let bob: { uuid: string };
    let bobApi: ApiClient;

    const loginUser = async (userName: string, password: string): Promise<ApiClient> => {
      const r = await fc.controller.anon.post('/v1/sessions', { accountName: acctName, userName, password });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return new ApiClient(fc.controller.url, r.body.token);
    };

    before(async function () {
      const o: Parameters<typeof startFakeCloud>[1] = { modules: [identityModule({ repairPeriodMs: 0 }) as never] };
      if (backend === 'redis') {
        const redis = await startRedis(cleanup);
        o.store = redis.url;
        o.storePrefix = `u-${randomUUID().slice(0, 8)}:`;
      }
      fc = await startFakeCloud(cleanup, o);
      acct = await fc.controller.account(`team-${backend}`);
      acctName = (await acct.get(`/v1/accounts/${acct.accountUuid}`)).body.name;
      const v = await acct.post('/v1/vm-instances?wait=true', { name: 'team-vm', instanceOfferingUuid: fc.ids.offering, imageUuid: fc.ids.image, l3NetworkUuids: [fc.ids.l3] });
      assert.equal(v.status, 200, JSON.stringify(v.body));
      vm = v.body;
      const u = await acct.post('/v1/users', { name: 'bob', password: 'bob-password-1' });
      assert.equal(u.status, 201, JSON.stringify(u.body));
      assert.equal(u.body._passwordHash, undefined);
      assert.equal(u.body.password, undefined);
      bob = u.body;
      bobApi = await loginUser('bob', 'bob-password-1');
    });

    it('a user logs in with its name; a wrong password or an unknown user is 401; names are unique per account', async function () {
      assert.equal((await fc.controller.anon.post('/v1/sessions', { accountName: acctName, userName: 'bob', password: 'wrong-password' })).status, 401);
      assert.equal((await fc.controller.anon.post('/v1/sessions', { accountName: acctName, userName: 'nobody', password: 'bob-password-1' })).status, 401);
      assert.equal((await acct.post('/v1/users', { name: 'bob', password: 'another-pw-1' })).status, 409);
    });

    it('a new user reads its account\'s resources but cannot stop its VM (403) nor create anything', async function () {
      const list = await bobApi.get('/v1/vm-instances');
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.inventories.map((x: { uuid: string }) => x.uuid), [vm.uuid]);
      assert.equal((await bobApi.get(`/v1/vm-instances/${vm.uuid}`)).status, 200);
      const stop = await bobApi.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { stop: {} });
      assert.equal(stop.status, 403, JSON.stringify(stop.body));
      assert.match(stop.body.message, /may not vm-instances:stop: no policy allows/);
      assert.equal((await bobApi.post('/v1/volumes', { name: 'x', diskSize: 1 << 30 })).status, 403);
      assert.equal((await bobApi.post('/v1/policies', { name: 'self-grant', statements: [{ effect: 'Allow', actions: ['*'] }] })).status, 403);
      assert.equal((await acct.get(`/v1/vm-instances/${vm.uuid}`)).body.state, 'Running');
    });

    it('after an Allow vm-instances:* policy the user can; Deny wins; via a group too', async function () {
      const allow = await acct.post('/v1/policies', { name: 'vm-admin', statements: [{ effect: 'Allow', actions: ['vm-instances:*'] }] });
      assert.equal(allow.status, 201, JSON.stringify(allow.body));
      assert.equal((await acct.post(`/v1/users/${bob.uuid}/actions`, { attachPolicy: { policyUuid: allow.body.uuid } })).status, 200);
      const stop = await bobApi.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { stop: { type: 'cold' } });
      assert.equal(stop.status, 200, JSON.stringify(stop.body));
      assert.equal((await bobApi.post('/v1/volumes', { name: 'x', diskSize: 1 << 30 })).status, 403, 'only vm-instances');

      // Deny on a group bob is in wins over the Allow on bob
      const deny = await acct.post('/v1/policies', { name: 'no-start', statements: [{ effect: 'Deny', actions: ['vm-instances:start'] }] });
      const g = await acct.post('/v1/user-groups', { name: 'ops' });
      assert.equal(g.status, 201);
      assert.equal((await acct.post(`/v1/user-groups/${g.body.uuid}/actions`, { addUser: { userUuid: bob.uuid } })).status, 200);
      assert.equal((await acct.post(`/v1/user-groups/${g.body.uuid}/actions`, { attachPolicy: { policyUuid: deny.body.uuid } })).status, 200);
      const start = await bobApi.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { start: {} });
      assert.equal(start.status, 403, JSON.stringify(start.body));
      assert.match(start.body.message, /a policy denies vm-instances:start/);
      assert.equal((await acct.post(`/v1/user-groups/${g.body.uuid}/actions`, { removeUser: { userUuid: bob.uuid } })).status, 200);
      assert.equal((await bobApi.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { start: {} })).status, 200);
      // resources: the Allow only for another VM's uuid does not cover this one
      assert.equal((await acct.post(`/v1/users/${bob.uuid}/actions`, { detachPolicy: { policyUuid: allow.body.uuid } })).status, 200);
      const scoped = await acct.post('/v1/policies', { name: 'scoped', statements: [{ effect: 'Allow', actions: ['vm-instances:stop'], resources: [randomUUID()] }] });
      await acct.post(`/v1/users/${bob.uuid}/actions`, { attachPolicy: { policyUuid: scoped.body.uuid } });
      assert.equal((await bobApi.post(`/v1/vm-instances/${vm.uuid}/actions?wait=true`, { stop: {} })).status, 403);
    });

    it('another account gets 404 for the VM and the users; policies of another account cannot be attached', async function () {
      const other = await fc.controller.account(`other-${backend}`);
      assert.equal((await other.get(`/v1/vm-instances/${vm.uuid}`)).status, 404);
      assert.equal((await other.get(`/v1/users/${bob.uuid}`)).status, 404);
      assert.equal((await other.post(`/v1/vm-instances/${vm.uuid}/actions`, { stop: {} })).status, 404);
      const theirs = await other.post('/v1/policies', { name: 'p', statements: [{ effect: 'Allow', actions: ['*'] }] });
      const r = await acct.post(`/v1/users/${bob.uuid}/actions`, { attachPolicy: { policyUuid: theirs.body.uuid } });
      assert.equal(r.status, 400, JSON.stringify(r.body));
    });

    it('a user changes its own password (with the old one); the account resets it; deleting the user keeps the VM', async function () {
      assert.equal((await bobApi.put(`/v1/users/${bob.uuid}`, { password: 'bob-password-2' })).status, 400, 'oldPassword required');
      const ch = await bobApi.put(`/v1/users/${bob.uuid}`, { password: 'bob-password-2', oldPassword: 'bob-password-1' });
      assert.equal(ch.status, 200, JSON.stringify(ch.body));
      assert.equal((await fc.controller.anon.post('/v1/sessions', { accountName: acctName, userName: 'bob', password: 'bob-password-1' })).status, 401);
      const bob2 = await loginUser('bob', 'bob-password-2');
      const carol = await acct.post('/v1/users', { name: 'carol', password: 'carol-password-1' });
      assert.equal((await bob2.put(`/v1/users/${carol.body.uuid}`, { password: 'hijacked-pw-1' })).status, 403, "not another user's");
      assert.equal((await acct.put(`/v1/users/${bob.uuid}`, { password: 'bob-password-3' })).status, 200, 'the account resets without the old one');
      assert.equal((await bob2.get('/v1/vm-instances')).status, 401, 'a reset ends the user\'s sessions');
      assert.equal((await acct.req('DELETE', `/v1/users/${carol.body.uuid}`)).status, 200);
      assert.equal((await acct.get(`/v1/vm-instances/${vm.uuid}`)).status, 200, 'the account keeps its resources');
      assert.equal((await fc.controller.anon.post('/v1/sessions', { accountName: acctName, userName: 'carol', password: 'carol-password-1' })).status, 401);
    });

    it('fuzz: every mutating endpoint of OpenAPI, called by a user with no policy, is refused', async function () {
      const u = await acct.post('/v1/users', { name: `fuzz-${backend}`, password: 'fuzz-password-1' });
      const api = await loginUser(`fuzz-${backend}`, 'fuzz-password-1');
      const doc = (await fc.controller.anon.get('/v1/openapi.json')).body;
      const owned = new Map<string, string>(); // collection → a uuid of the account's (or the shared catalog's) there
      const actionsOf = new Map<string, string[]>();
      for (const c of doc['x-tstack-collections'] as Array<{ collection: string; actions: Array<{ name: string }> }>) {
        actionsOf.set(c.collection, c.actions.map((a) => a.name));
        const l = await acct.get(`/v1/${c.collection}?limit=1`);
        if (l.status === 200 && l.body.inventories?.[0]) owned.set(c.collection, l.body.inventories[0].uuid);
      }
      owned.set('users', u.body.uuid);
      const succeeded: string[] = [];
      let tried = 0;
      for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
        for (const method of Object.keys(ops)) {
          if (method === 'get' || path === '/v1/sessions' || path === '/v1/sessions/current' || path.startsWith('/v1/agent-')) continue;
          const col = path.split('/')[2]!;
          const real = path.replace('{uuid}', owned.get(col) ?? randomUUID());
          const actions = path.endsWith('/actions') ? actionsOf.get(col)! : [undefined];
          assert.ok(actions.length > 0, path);
          for (const a of actions) {
            tried++;
            const body = a === undefined ? { name: 'fuzz', description: 'fuzz' } : { [a]: {} };
            const r = await api.req(method.toUpperCase(), `${real}?wait=true`, body);
            if (r.status < 400) succeeded.push(`${method.toUpperCase()} ${path} ${a ?? ''} → ${r.status}`);
            else if (r.status !== 403) succeeded.push(`${method.toUpperCase()} ${path} ${a ?? ''} → ${r.status} (expected 403) ${JSON.stringify(r.body).slice(0, 120)}`);
          }
        }
      }
      assert.ok(tried > 100, `only ${tried} calls`);
      assert.deepEqual(succeeded, []);
      assert.equal((await acct.get(`/v1/vm-instances/${vm.uuid}`)).body.name, 'team-vm');
    });
  });
}
