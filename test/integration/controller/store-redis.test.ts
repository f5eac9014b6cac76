// The store suite on a real redis-server (throwaway, from the test harness); every open()
// gets its own key prefix, a peer is a second connection with the same prefix.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { openStore, type InventoryStore, type RedisStore, type Resource } from '../../../controller/store/index.js';
import { startRedis, type TestRedis } from '../../harness/redis.js';
import { useCleanup } from '../../harness/cleanup.js';
import { storeSuite } from './store.suite.js';
import { tmpDir } from '../../harness/tmp.js';
import { COMPOUND, churn, orderedAnswers, orderedVms } from './ordered-pages.js';
import { storeCompoundIndexes } from '../../../controller/model/indexes.js';
import { JobManager } from '../../../controller/jobs/jobs.js';

describe('controller store: Redis', () => {
  const cleanup = useCleanup();
  let redis: TestRedis;
  let prefix = '';
  before(async function () {
    this.timeout(30_000);
    redis = await startRedis(cleanup);
  });

  // the contract with compound indexes on (as the controller opens it: storeIndexes()), and
  // combinations the suite's queries filter on
  const compoundIndexes = [...storeCompoundIndexes(), ...COMPOUND];
  storeSuite({
    open: async () => {
      prefix = `t-${randomUUID().slice(0, 8)}:`;
      return openStore({ backend: 'redis', url: redis.url, prefix, compoundIndexes });
    },
    openPeer: async () => openStore({ backend: 'redis', url: redis.url, prefix, compoundIndexes }),
  });

  it('leaves no index keys behind after deletes', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const s = await openStore({ backend: 'redis', url: redis.url, prefix: p, compoundIndexes: [['hostUuid', 'state'], ['status', 'hostUuid']] });
    const uuid = randomUUID();
    await s.create({ uuid, kind: 'host', name: 'h', parentUuid: 'c1', state: 'Enabled', createDate: '', lastOpDate: '', ownerAccountUuid: 'a', tags: [], hostUuid: 'hv-1', status: 'Connected' });
    await s.transition(uuid, 'Enabled', 'Disabled', { hostUuid: 'hv-2' });
    await s.delete(uuid);
    await s.close();
    const raw = new Redis(redis.url);
    try {
      assert.deepEqual((await raw.keys(`${p}*`)).sort(), [`${p}meta:compound`, `${p}meta:indexed`], 'only the record of which fields are indexed');
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
  it('ordered pages (asc/desc, offsets, cursors, dense and sparse filters) equal the SQLite store\'s, with and without compound indexes, after updates and deletes too', async function () {
    this.timeout(90_000);
    const dir = await tmpDir('store-redis-vs-sqlite', cleanup);
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const r = await openStore({ backend: 'redis', url: redis.url, prefix: `t-${randomUUID().slice(0, 8)}:` });
    const x = (await openStore({ backend: 'redis', url: redis.url, prefix: p, compoundIndexes: COMPOUND })) as RedisStore;
    const q = await openStore({ backend: 'sqlite', path: join(dir, 'inv.db') });
    const raw = new Redis(redis.url);
    try {
      assert.equal(x.compoundIndexesOn, true);
      const vms = orderedVms('vs-sqlite');
      for (const s of [r, x, q]) await s.createMany(vms);
      const want = await orderedAnswers(q);
      assert.deepEqual(await orderedAnswers(r), want);
      assert.deepEqual(await orderedAnswers(x), want);
      for (const s of [r, x, q]) await churn(s, vms);
      const after = await orderedAnswers(q);
      assert.notDeepEqual(after, want);
      assert.deepEqual(await orderedAnswers(r), after);
      assert.deepEqual(await orderedAnswers(x), after);
      // the compound sets hold exactly the matches
      const running = (await q.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: 'h1' }, { field: 'state', op: '=', value: 'Running' }] })).items.map((v) => v.uuid);
      assert.deepEqual((await raw.smembers(`${p}x:vm-instance:hostUuid+state:2:h1:7:Running`)).sort(), running.sort());
      assert.deepEqual(await raw.zrange(`${p}xz:vm-instance:hostUuid+state:2:h9:6:Paused`, '0', '-1'), (await q.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: 'h9' }, { field: 'state', op: '=', value: 'Paused' }] })).items.map((v) => v.uuid));
    } finally {
      raw.disconnect();
      await r.close();
      await x.close();
      await q.close();
    }
  });

  it('a compound index answers its filters: the count is its set\'s size, the page its sorted set\'s range', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const s = await openStore({ backend: 'redis', url: redis.url, prefix: p, compoundIndexes: [['hostUuid', 'state']] });
    const raw = new Redis(redis.url);
    try {
      const vms = orderedVms('compound', 600);
      await s.createMany(vms);
      const page = async (dir: 'asc' | 'desc') => {
        const r = await s.list({ kind: 'vm-instance', filters: [{ field: 'state', op: '=', value: 'Running' }, { field: 'hostUuid', op: '=', value: 'h1' }], limit: 4, sort: { field: 'createDate', dir } });
        return { total: r.total, names: r.items.map((v) => v.name) };
      };
      assert.deepEqual(await page('asc'), { total: 129, names: ['vm1', 'vm5', 'vm9', 'vm13'] });
      // a member missing from the compound sets is neither counted nor paged: the reads use them
      await raw.srem(`${p}x:vm-instance:hostUuid+state:2:h1:7:Running`, vms[5]!.uuid);
      await raw.zrem(`${p}xz:vm-instance:hostUuid+state:2:h1:7:Running`, vms[5]!.uuid, vms[593]!.uuid);
      assert.deepEqual(await page('asc'), { total: 128, names: ['vm1', 'vm9', 'vm13', 'vm17'] });
      assert.deepEqual(await page('desc'), { total: 128, names: ['vm597', 'vm589', 'vm585', 'vm577'] });
      // a value holding ':' stays apart from a split of another pair (the value's length is in the key)
      const odd = (n: number, hostUuid: string, state: string): Resource => ({ ...vms[0]!, uuid: randomUUID(), name: `odd${n}`, hostUuid, state });
      await s.createMany([odd(1, 'a:1', 'b'), odd(2, 'a', '1:b')]);
      const names = async (hostUuid: string, state: string) => (await s.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: hostUuid }, { field: 'state', op: '=', value: state }], limit: 5 })).items.map((v) => v.name);
      assert.deepEqual(await names('a:1', 'b'), ['odd1']);
      assert.deepEqual(await names('a', '1:b'), ['odd2']);
    } finally {
      raw.disconnect();
      await s.close();
    }
  });

  it('a compound index is read only while every live writer maintains it: off while a controller of an older layout writes, rebuilt when it is gone', async function () {
    this.timeout(60_000);
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const compoundIndexes = [['hostUuid', 'state']];
    // no other layout seen for a whole check period before it turns them on (timer: the same period)
    const layoutCheckMs = 400;
    const fresh = (await openStore({ backend: 'redis', url: redis.url, prefix: p, compoundIndexes, layoutCheckMs })) as RedisStore;
    const raw = new Redis(redis.url);
    const stores: InventoryStore[] = [fresh];
    try {
      assert.equal(fresh.compoundIndexesOn, true, 'a store with no other writer turns it on at once');
      const vms = orderedVms('switch', 300);
      await fresh.createMany(vms);
      // an older controller (no compound index: its layout is the previous one) is live and starts
      await fresh.putDoc('controllers', 'old-ctl', { at: Date.now() });
      await fresh.putDoc('controllers', 'new-ctl', { at: Date.now(), store: fresh.layout });
      const old = await openStore({ backend: 'redis', url: redis.url, prefix: p });
      stores.push(old);
      assert.notEqual(old.layout, fresh.layout);
      // its writes leave the compound sets stale: a VM moved away, a new one missing
      await old.update(vms[1]!.uuid, { hostUuid: 'h9' });
      await old.transition(vms[5]!.uuid, 'Running', 'Stopped');
      const added = { ...vms[1]!, uuid: randomUUID(), name: 'added', createDate: '', lastOpDate: '' };
      await old.create(added);
      const xkey = `${p}x:vm-instance:hostUuid+state:2:h1:7:Running`;
      assert.equal(await raw.sismember(xkey, vms[1]!.uuid), 1, 'stale member left by the old writer');
      assert.equal(await raw.sismember(xkey, added.uuid), 0, 'member missing');
      // the first read already finds the layout changed (in its script), before any check
      const reference = await orderedAnswers(old);
      assert.deepEqual(await orderedAnswers(fresh), reference);
      assert.equal(fresh.compoundIndexesOn, false);
      // the old controller still live: stays off, the switch is dropped
      await fresh.checkLayout();
      assert.equal(fresh.compoundIndexesOn, false);
      assert.equal(await raw.get(`${p}meta:compound`), null);
      assert.deepEqual(await orderedAnswers(fresh), reference);
      // a newer controller restarting meanwhile does not turn it on either
      const again = (await openStore({ backend: 'redis', url: redis.url, prefix: p, compoundIndexes, layoutCheckMs })) as RedisStore;
      stores.push(again);
      assert.equal(again.compoundIndexesOn, false);
      assert.equal(await raw.get(`${p}meta:compound`), null);
      // the old controller is gone (heartbeat stale): rebuilt, on, the same answers
      await old.close();
      stores.splice(stores.indexOf(old), 1);
      await fresh.putDoc('controllers', 'old-ctl', { at: Date.now() - 10 * 60_000 });
      await fresh.checkLayout();
      assert.equal(fresh.compoundIndexesOn, false, 'not before a whole check period without another layout');
      await sleep(layoutCheckMs + 50);
      // (the other store's timer may be the one rebuilding: then this one finds it on next time)
      for (let i = 0; i < 50 && !fresh.compoundIndexesOn; i++) {
        await fresh.checkLayout();
        if (!fresh.compoundIndexesOn) await sleep(100);
      }
      assert.equal(fresh.compoundIndexesOn, true);
      assert.equal(await raw.get(`${p}meta:indexed`), fresh.layout);
      assert.equal(await raw.sismember(xkey, vms[1]!.uuid), 0, 'the stale member went in the rebuild');
      assert.equal(await raw.sismember(xkey, added.uuid), 1);
      assert.deepEqual(await orderedAnswers(fresh), reference);
      await again.checkLayout();
      assert.equal(again.compoundIndexesOn, true);
      assert.deepEqual(await orderedAnswers(again), reference);
    } finally {
      raw.disconnect();
      for (const s of stores) await s.close();
    }
  });

  it('a controller\'s jobs heartbeat names its store\'s layout: stores of that layout keep the compound indexes on, others turn them off', async () => {
    const p = `t-${randomUUID().slice(0, 8)}:`;
    const s = (await openStore({ backend: 'redis', url: redis.url, prefix: p, compoundIndexes: [['hostUuid', 'state']] })) as RedisStore;
    const other = (await openStore({ backend: 'redis', url: redis.url, prefix: `t-${randomUUID().slice(0, 8)}:`, compoundIndexes: [['hostUuid', 'state']] })) as RedisStore;
    const jobs = new JobManager(s);
    try {
      await jobs.init();
      const hb = await s.getDoc<{ at: number; store?: string }>('controllers', jobs.instanceId);
      assert.equal(hb?.store, s.layout);
      await s.checkLayout();
      assert.equal(s.compoundIndexesOn, true);
      // the same heartbeat from a controller whose store has other indexes
      await other.putDoc('controllers', 'x', { at: Date.now(), store: s.layout });
      await s.putDoc('controllers', 'y', { at: Date.now(), store: `${s.layout},more` });
      await s.checkLayout();
      assert.equal(s.compoundIndexesOn, false);
    } finally {
      jobs.close();
      await s.close();
      await other.close();
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
