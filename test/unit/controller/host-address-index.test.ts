// A host add looks its managementIp up among the hosts (a duplicate is a 409): the field is
// indexed, so the lookup reads its index, not every host (issue 19: 1,000 adds were quadratic).
import assert from 'node:assert/strict';
import { SqliteStore } from '../../../controller/store/index.js';
import { storeIndexes } from '../../../controller/model/indexes.js';

describe('host address lookup', () => {
  it('reads the managementIp index of the store the controller opens', async () => {
    const s = new SqliteStore({ path: ':memory:', ...storeIndexes() });
    await s.init();
    try {
      const q = { kind: 'host', filters: [{ field: 'managementIp', op: '=' as const, value: '10.0.0.7' }], limit: 1 };
      for (let i = 0; i < 200; i++) await s.create({ uuid: `h${i}`, kind: 'host', name: `h${i}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'admin', tags: [], managementIp: `10.0.${i >> 8}.${i & 255}` });
      // the statistics the store gathers as it is written (PRAGMA optimize every 2,000 writes)
      (s as unknown as { analyze(): void }).analyze();
      assert.match(s.planOf(q), /resources_fd:managementIp/);
      const r = await s.list(q);
      assert.deepEqual([r.total, r.items.map((h) => h.uuid)], [1, ['h7']]);
    } finally {
      await s.close();
    }
  });
});
