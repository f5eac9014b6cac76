// The store suite on a real redis-server (throwaway, from the test harness); every open()
// gets its own key prefix, a peer is a second connection with the same prefix.
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { openStore, type Resource } from '../../../controller/store/index.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { useCleanup } from '../../harness/cleanup.js';
import { storeSuite } from './store.suite.js';

describe('controller store: Redis', () => {
  const cleanup = useCleanup();
  let redis: TestRedis;
  let prefix = '';
  before(async function () {
    this.timeout(30_000);
    redis = await startRedis(cleanup);
  });

  storeSuite({
    open: async () => {
      prefix = `t-${randomUUID().slice(0, 8)}:`;
      return openStore({ backend: 'redis', url: redis.url, prefix });
    },
    openPeer: async () => openStore({ backend: 'redis', url: redis.url, prefix }),
  });

  it('leaves no index keys behind after deletes', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const s = await openStore({ backend: 'redis', url: redis.url, prefix: p });
    const uuid = randomUUID();
    await s.create({ uuid, kind: 'host', name: 'h', parentUuid: 'c1', state: 'Enabled', createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [], hostUuid: 'hv-1', status: 'Connected' });
    await s.transition(uuid, 'Enabled', 'Disabled', { hostUuid: 'hv-2' });
    await s.delete(uuid);
    await s.close();
    const raw = new Redis(redis.url);
    try {
      assert.deepEqual(await raw.keys(`${p}*`), [`${p}meta:indexed`], 'only the record of which fields are indexed');
    } finally {
      raw.disconnect();
    }
  });

  it('indexes records again when the indexed fields change (a newer controller declares more)', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const old = await openStore({ backend: 'redis', url: redis.url, prefix: p, indexedFields: ['hostUuid'] });
    const vm = (n: number, zoneUuid: string): Resource => ({ uuid: randomUUID(), kind: 'vm-instance', name: `vm${n}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [], hostUuid: 'h1', zoneUuid });
    await old.createMany([vm(1, 'z1'), vm(2, 'z2'), vm(3, 'z1')]);
    await old.close();
    const raw = new Redis(redis.url);
    try {
      assert.deepEqual(await raw.keys(`${p}f:vm-instance:zoneUuid:*`), []);
      const s = await openStore({ backend: 'redis', url: redis.url, prefix: p, indexedFields: ['hostUuid', 'zoneUuid'] });
      assert.equal(await raw.scard(`${p}f:vm-instance:zoneUuid:z1`), 2);
      assert.deepEqual((await s.list({ kind: 'vm-instance', filters: [{ field: 'zoneUuid', op: '=', value: 'z1' }] })).items.map((v) => v.name), ['vm1', 'vm3']);
      await s.close();
    } finally {
      raw.disconnect();
    }
  });

  it('a filter on an indexed field reads its set, not the whole kind', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const s = await openStore({ backend: 'redis', url: redis.url, prefix: p });
    const vms = Array.from({ length: 300 }, (_, n): Resource => ({ uuid: randomUUID(), kind: 'vm-instance', name: `vm${n}`, createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [], state: 'Running', hostUuid: `h${n % 30}` }));
    await s.createMany(vms);
    const raw = new Redis(redis.url);
    try {
      // a record missing from the host's set is not found: the query read the set
      await raw.srem(`${p}f:vm-instance:hostUuid:h3`, vms[3]!.uuid);
      const r = await s.list({ kind: 'vm-instance', filters: [{ field: 'state', op: '=', value: 'Running' }, { field: 'hostUuid', op: '=', value: 'h3' }], limit: 50, sort: { field: 'createDate', dir: 'asc' } });
      assert.equal(r.total, 9);
      assert.ok(!r.items.some((v) => v.uuid === vms[3]!.uuid));
    } finally {
      raw.disconnect();
      await s.close();
    }
  });
});
