// Global configs (controller/config): made by the controller at start, read and changed by the
// admin through /v1/global-configs and updateGlobalConfig (checked per config, 400 naming the
// field), never created or deleted through the API, invisible to other accounts; a value the
// admin set survives the next start's refresh of defaults.
import assert from 'node:assert/strict';
import { testController, type ApiClient, type TestController } from '../../harness/controller.js';
import { useCleanup } from '../../harness/cleanup.js';
import { ensureGlobalConfigs, globalConfigBool, globalConfigUuid, globalConfigValue, GLOBAL_CONFIGS } from '../../../controller/config/global-config.js';

const ID = 'localStoragePrimaryStorage.liveMigrationWithStorage.allow';

describe('controller: global configs', function () {
  this.timeout(30_000);
  const cleanup = useCleanup('all');
  let c: TestController;
  let admin: ApiClient;
  const uuid = globalConfigUuid(ID);

  before(async () => {
    c = await testController(cleanup);
    admin = await c.login('admin', c.adminPassword);
  });

  it('every declared config exists at start with its default; the uuid is derived from category and name', async () => {
    const r = await admin.get('/v1/global-configs');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.total, Object.keys(GLOBAL_CONFIGS).length);
    const got = r.body.inventories.find((x: any) => x.uuid === uuid);
    assert.deepEqual([got.category, got.name, got.value, got.defaultValue], ['localStoragePrimaryStorage', 'liveMigrationWithStorage.allow', 'false', 'false']);
    assert.match(got.description, /local primary storage/);
    assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(globalConfigUuid(ID), uuid, 'stable');
    const q = await admin.get('/v1/global-configs?q=category=localStoragePrimaryStorage');
    assert.equal(q.body.total, 1);
  });

  it('updateGlobalConfig: a value outside the rule is a 400 naming the field; a good one is normalised and read by the code', async () => {
    for (const bad of ['yes', '', 'true ; rm']) {
      const r = await admin.post(`/v1/global-configs/${uuid}/actions`, { updateGlobalConfig: { value: bad } });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.field, 'updateGlobalConfig.value', JSON.stringify(r.body));
    }
    const missing = await admin.post(`/v1/global-configs/${uuid}/actions`, { updateGlobalConfig: {} });
    assert.equal(missing.status, 400);
    assert.equal(await globalConfigBool(c.store, ID), false, 'unchanged by the refusals');
    const ok = await admin.post(`/v1/global-configs/${uuid}/actions`, { updateGlobalConfig: { value: ' TRUE' } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.value, 'true');
    assert.equal(await globalConfigValue(c.store, ID), 'true');
    assert.equal(await globalConfigBool(c.store, ID), true);
  });

  it('a start refreshes default and description but keeps the value the admin set; a missing record reads as the default', async () => {
    await c.store.update(uuid, { description: 'old text', defaultValue: 'x' });
    await ensureGlobalConfigs(c.store, c.auth.adminAccountUuid);
    const r = (await admin.get(`/v1/global-configs/${uuid}`)).body;
    assert.equal(r.value, 'true');
    assert.equal(r.defaultValue, 'false');
    assert.notEqual(r.description, 'old text');
    await c.store.delete(uuid);
    assert.equal(await globalConfigValue(c.store, ID), 'false');
    await ensureGlobalConfigs(c.store, c.auth.adminAccountUuid);
    assert.equal((await admin.get(`/v1/global-configs/${uuid}`)).body.value, 'false');
  });

  it('not created, deleted or updated through the API (405/400); other accounts neither see nor change them', async () => {
    assert.equal((await admin.post('/v1/global-configs', { name: 'x' })).status, 405);
    assert.equal((await admin.del(`/v1/global-configs/${uuid}`)).status, 405);
    assert.equal((await admin.put(`/v1/global-configs/${uuid}`, { value: 'true' })).status, 400);
    assert.equal((await admin.post('/v1/accounts', { name: 'gc-user', password: 'gc-password-123' })).status, 201);
    const user = await c.login('gc-user', 'gc-password-123');
    assert.equal((await user.get('/v1/global-configs')).body.total, 0);
    const r = await user.post(`/v1/global-configs/${uuid}/actions`, { updateGlobalConfig: { value: 'true' } });
    assert.ok(r.status === 403 || r.status === 404, JSON.stringify(r.body));
    assert.equal(await globalConfigValue(c.store, ID), 'false');
  });
});
