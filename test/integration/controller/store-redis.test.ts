// The store suite on a real redis-server (throwaway, from the test harness); every open()
// gets its own key prefix, a peer is a second connection with the same prefix.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { openStore, type Resource } from '../../../controller/store/index.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { useCleanup } from '../../harness/cleanup.js';
import { storeSuite } from './store.suite.js';
import { tmpDir } from '../../harness/tmp.js';
import { churn, orderedAnswers, orderedVms } from './ordered-pages.js';

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
  it('ordered pages (asc/desc, offsets, cursors, dense and sparse filters) equal the SQLite store\'s, after updates and deletes too', async function () {
    this.timeout(60_000);
    const dir = await tmpDir('store-redis-vs-sqlite', cleanup);
    const r = await openStore({ backend: 'redis', url: redis.url, prefix: `t-${randomUUID().slice(0, 8)}:` });
    const q = await openStore({ backend: 'sqlite', path: join(dir, 'inv.db') });
    try {
      const vms = orderedVms('vs-sqlite');
      await r.createMany(vms);
      await q.createMany(vms);
      assert.deepEqual(await orderedAnswers(r), await orderedAnswers(q));
      await churn(r, vms);
      await churn(q, vms);
      assert.deepEqual(await orderedAnswers(r), await orderedAnswers(q));
    } finally {
      await r.close();
      await q.close();
    }
  });

  it('a page of dense matches walks the smallest set\'s sorted set; sparse matches page the intersection', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const s = await openStore({ backend: 'redis', url: redis.url, prefix: p });
    const raw = new Redis(redis.url);
    try {
      const vms = orderedVms('walk', 1200);
      await s.createMany(vms);
      const page = async (filters: Array<[string, string]>, dir: 'asc' | 'desc', skipTotal = false): Promise<string[]> =>
        (await s.list({ kind: 'vm-instance', filters: filters.map(([field, value]) => ({ field, op: '=' as const, value })), limit: 5, sort: { field: 'createDate', dir }, skipTotal })).items.map((v) => v.name);
      // dense: host h1 (300 VMs, 257 Running); a member missing from the host's sorted set is not met
      assert.deepEqual(await page([['hostUuid', 'h1'], ['state', 'Running']], 'asc'), ['vm1', 'vm5', 'vm9', 'vm13', 'vm17']);
      await raw.zrem(`${p}fz:vm-instance:hostUuid:h1`, vms[5]!.uuid);
      assert.deepEqual(await page([['hostUuid', 'h1'], ['state', 'Running']], 'asc'), ['vm1', 'vm9', 'vm13', 'vm17', 'vm25']);
      await raw.zrem(`${p}fz:vm-instance:hostUuid:h1`, vms[1193]!.uuid);
      assert.deepEqual(await page([['hostUuid', 'h1'], ['state', 'Running']], 'desc'), ['vm1189', 'vm1185', 'vm1181', 'vm1177', 'vm1173']);
      // sparse: zone z0 ∩ cluster c0 is every 50th VM; the intersection's order comes from the kind's set
      await raw.zrem(`${p}fz:vm-instance:zoneUuid:z0`, vms[50]!.uuid);
      await raw.zrem(`${p}fz:vm-instance:clusterUuid:c0`, vms[50]!.uuid);
      assert.deepEqual(await page([['zoneUuid', 'z0'], ['clusterUuid', 'c0']], 'asc'), ['vm0', 'vm50', 'vm100', 'vm150', 'vm200']);
      // uncounted, the density is unknown: the walk starts, runs past its bound, and the intersection answers
      assert.deepEqual(await page([['zoneUuid', 'z0'], ['clusterUuid', 'c0']], 'asc', true), ['vm0', 'vm50', 'vm100', 'vm150', 'vm200']);
      assert.deepEqual(await page([['zoneUuid', 'z0'], ['clusterUuid', 'c0']], 'desc', true), ['vm1150', 'vm1100', 'vm1050', 'vm1000', 'vm950']);
    } finally {
      raw.disconnect();
      await s.close();
    }
  });

  it('builds the sorted sets of every index set once for data written without them (two controllers opening at once)', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const first = await openStore({ backend: 'redis', url: redis.url, prefix: p });
    const vms = orderedVms('layout', 1200);
    await first.createMany(vms);
    const want = await orderedAnswers(first);
    await first.close();
    const raw = new Redis(redis.url);
    try {
      // the previous layout: the kind's sorted set only
      const meta = await raw.get(`${p}meta:indexed`);
      assert.ok(meta?.endsWith('|z2'), String(meta));
      await raw.set(`${p}meta:indexed`, meta!.replace(/\|z2$/, '|z1'));
      const zkeys = (await raw.keys(`${p}?z:*`)).filter((k) => !k.startsWith(`${p}z:`));
      assert.ok(zkeys.length >= 10, zkeys.join());
      await raw.del(...zkeys);
      const [a, b] = await Promise.all([openStore({ backend: 'redis', url: redis.url, prefix: p }), openStore({ backend: 'redis', url: redis.url, prefix: p })]);
      try {
        assert.equal(await raw.get(`${p}meta:indexed`), meta);
        assert.equal(await raw.zcard(`${p}fz:vm-instance:hostUuid:h1`), 300);
        assert.equal(await raw.zcard(`${p}sz:vm-instance:Running`), await raw.scard(`${p}s:vm-instance:Running`));
        assert.deepEqual(await orderedAnswers(a), want);
        assert.deepEqual(await orderedAnswers(b), want);
      } finally {
        await a.close();
        await b.close();
      }
    } finally {
      raw.disconnect();
    }
  });
});
