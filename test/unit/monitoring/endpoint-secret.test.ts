// SNS endpoint passwords: sealed bound to the endpoint, opened for the sender, clear records of
// older controllers sealed by the migration.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { SecretBox } from '../../../controller/auth/secret-box.js';
import { endpointPassword, migrateEndpointPasswords, sealedPassword } from '../../../controller/sns/endpoint-secret.js';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';

const U1 = '6f1c2a9b-0d4e-4f00-8a00-000000000001';
const U2 = '6f1c2a9b-0d4e-4f00-8a00-000000000002';
const ep = (uuid: string, extra: Record<string, unknown>): Resource =>
  ({ uuid, kind: 'sns-endpoint', name: uuid, type: 'HTTP', url: 'http://127.0.0.1:1/', username: 'ops', createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra }) as Resource;

describe('SNS endpoint passwords are sealed', () => {
  const box = new SecretBox(randomBytes(32));
  let store: InventoryStore;
  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
  });
  afterEach(async () => store.close());

  it('sealed for one endpoint: opens for it, not for another, and holds no clear text', () => {
    const f = sealedPassword(box, U1, 'hook-secret-1');
    assert.ok(!JSON.stringify(f).includes('hook-secret-1'));
    assert.equal(endpointPassword(box, ep(U1, f)), 'hook-secret-1');
    assert.throws(() => endpointPassword(box, ep(U2, f)), /does not open/);
    assert.equal(endpointPassword(box, ep(U1, {})), undefined, 'no password');
  });

  it('the migration seals clear records once and keeps the password usable', async () => {
    await store.create(ep(U1, { _password: 'old-clear-pw' }));
    await store.create(ep(U2, sealedPassword(box, U2, 'already-sealed')));
    assert.equal(await migrateEndpointPasswords(store, box), 1);
    const r1 = (await store.get(U1))!;
    assert.equal(r1._password, undefined);
    assert.ok(!JSON.stringify(r1).includes('old-clear-pw'));
    assert.equal(endpointPassword(box, r1), 'old-clear-pw');
    assert.equal(endpointPassword(box, (await store.get(U2))!), 'already-sealed');
    assert.equal(await migrateEndpointPasswords(store, box), 0, 'nothing left to seal');
  });
});
