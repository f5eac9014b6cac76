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

  it('a short page of a small intersection (scores picked, not intersected into a sorted set) is the page of the full intersection, ties and positions included', async () => {
    const s = await openStore({ backend: 'redis', url: redis.url, prefix: `t-${randomUUID().slice(0, 8)}:` });
    // 600 VMs over 3 hosts, 1 in 4 Stopped, createDates shared by 5 VMs each (ties by uuid)
    const vms: Resource[] = Array.from({ length: 600 }, (_, i) => ({ uuid: randomUUID(), kind: 'vm-instance', name: `vm${i}`, createDate: new Date(Date.UTC(2026, 0, 1) + Math.floor(i / 5) * 1000).toISOString(), lastOpDate: '', ownerAccountUuid: 'a', tags: [], hostUuid: `h${i % 3}`, state: i % 4 === 0 ? 'Stopped' : 'Running' }));
    await s.createMany(vms);
    const filters = [{ field: 'state', op: '=' as const, value: 'Running' }, { field: 'hostUuid', op: '=' as const, value: 'h1' }];
    // start + limit above 1,000 takes the sorted-set intersection: the reference order
    const all = await s.list({ kind: 'vm-instance', filters, limit: 1001, start: 0 });
    assert.equal(all.items.length, 150);
    assert.equal(all.total, 150);
    for (const [start, limit] of [[0, 50], [37, 13], [149, 5], [150, 5]] as const) {
      const page = await s.list({ kind: 'vm-instance', filters, limit, start });
      assert.equal(page.total, 150);
      assert.deepEqual(page.items.map((v) => v.name), all.items.slice(start, start + limit).map((v) => v.name), `start ${start} limit ${limit}`);
    }
    for (const at of [0, 3, 4, 77, 148]) {
      const last = all.items[at]!;
      const page = await s.list({ kind: 'vm-instance', filters, limit: 20, after: { createDate: last.createDate, uuid: last.uuid }, skipTotal: true });
      assert.equal(page.total, -1);
      assert.deepEqual(page.items.map((v) => v.name), all.items.slice(at + 1, at + 21).map((v) => v.name), `after item ${at}`);
    }
    await s.close();
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
