// Allocators under real concurrency on both stores: 20 concurrent IP allocations on a /28 from
// two connections never collide and the ones beyond the usable addresses fail cleanly; capacity
// reservations from two connections never over-commit.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore } from '../../../controller/store/types.js';
import { allocateIp, ipCapacity, ipNamespace, releaseIp, serviceIp, usedIps } from '../../../controller/allocator/ip.js';
import { reserve, reserved } from '../../../controller/allocator/capacity.js';
import { prepareCreate, resourceKinds } from '../../../controller/model/registry.js';
import { TStackError } from '../../../shared/errors.js';
import { startRedis } from '../../harness/redis.js';
import { tmpDir } from '../../harness/tmp.js';
import { useCleanup } from '../../harness/cleanup.js';

type Opener = () => Promise<[InventoryStore, InventoryStore]>;

function suite(name: string, setup: (cleanup: ReturnType<typeof useCleanup>) => Promise<Opener>): void {
  describe(`controller allocators under concurrency: ${name}`, function () {
    this.timeout(60_000);
    const cleanup = useCleanup();
    let open: Opener;
    let a: InventoryStore;
    let b: InventoryStore;
    before(async () => {
      open = await setup(cleanup);
    });
    beforeEach(async () => {
      [a, b] = await open();
    });
    afterEach(async () => {
      await a.close();
      await b.close();
    });

    async function l3With(range: Record<string, unknown>, reservedIpRanges: unknown[] = []): Promise<string> {
      const mk = async (collection: string, body: Record<string, unknown>): Promise<string> => (await a.create((await prepareCreate(a, resourceKinds[collection]!, body, { ownerAccountUuid: 'admin' })).resource)).uuid;
      const z = await mk('zones', { name: 'z' });
      const l2 = await mk('l2-networks', { name: 'l2', zoneUuid: z, physicalInterface: 'eth0' });
      const l3 = await mk('l3-networks', { name: 'l3-28', l2NetworkUuid: l2, reservedIpRanges });
      await mk('ip-ranges', { l3NetworkUuid: l3, ...range });
      return l3;
    }

    it('20 concurrent allocations on a /28 (two connections): 13 distinct addresses, the other 7 fail with CAPACITY_EXCEEDED', async () => {
      // 10.20.0.0/28: .0 network, .1 gateway, .15 broadcast -> .2 … .14 = 13 usable
      const l3 = await l3With({ networkCidr: '10.20.0.0/28' });
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => allocateIp(i % 2 ? b : a, { l3NetworkUuid: l3, owner: `nic-${i}` })));
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as TStackError] : []));
      assert.equal(ok.length, 13);
      assert.equal(new Set(ok.map((x) => x.ip)).size, 13, 'no address handed out twice');
      assert.deepEqual(ok.map((x) => x.ip).sort((x, y) => Number(x.split('.')[3]) - Number(y.split('.')[3])), Array.from({ length: 13 }, (_, i) => `10.20.0.${i + 2}`));
      for (const x of ok) {
        assert.equal(x.netmask, '255.255.255.240');
        assert.equal(x.gateway, '10.20.0.1');
      }
      assert.equal(failed.length, 7);
      for (const e of failed) {
        assert.ok(e instanceof TStackError, String(e));
        assert.equal(e.code, 'CAPACITY_EXCEEDED');
        assert.match(e.message, /no free IP address: all 13 usable addresses/);
      }
      const used = await usedIps(b, l3);
      assert.equal(used.length, 13);
      for (const x of ok) assert.equal(used.find((u) => u.ip === x.ip)?.owner, x.owner, 'the store records who holds each address');
      assert.deepEqual(await ipCapacity(a, l3), { total: 13, used: 13, available: 0 });

      await releaseIp(a, l3, ok[0]!.ip, 'someone-else');
      assert.equal((await usedIps(a, l3)).length, 13, 'release by a non-holder does nothing');
      await releaseIp(a, l3, ok[0]!.ip, ok[0]!.owner);
      const again = await allocateIp(b, { l3NetworkUuid: l3, owner: 'nic-late' });
      assert.equal(again.ip, ok[0]!.ip, 'a released address is reused');
    });

    it('new owners from the in-memory view (two connections): distinct addresses, lowest first, CAPACITY_EXCEEDED when full, a released address reused', async () => {
      const l3 = await l3With({ networkCidr: '10.21.0.0/28' });
      // the views of both connections are loaded before the other one claims: each must skip what the other took
      await allocateIp(a, { l3NetworkUuid: l3, owner: 'warm-a', newOwner: true });
      await allocateIp(b, { l3NetworkUuid: l3, owner: 'warm-b', newOwner: true });
      const results = await Promise.allSettled(Array.from({ length: 14 }, (_, i) => allocateIp(i % 2 ? b : a, { l3NetworkUuid: l3, owner: `new-${i}`, newOwner: true })));
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as TStackError] : []));
      assert.equal(ok.length, 11);
      assert.equal(new Set([...ok.map((x) => x.ip), '10.21.0.2', '10.21.0.3']).size, 13, 'no address handed out twice');
      assert.equal(failed.length, 3);
      for (const e of failed) assert.equal(e.code, 'CAPACITY_EXCEEDED');
      await releaseIp(b, l3, '10.21.0.9', ok.find((x) => x.ip === '10.21.0.9')!.owner);
      await releaseIp(b, l3, '10.21.0.4', ok.find((x) => x.ip === '10.21.0.4')!.owner);
      assert.equal((await allocateIp(b, { l3NetworkUuid: l3, owner: 'late-1', newOwner: true })).ip, '10.21.0.4', 'the lowest released address first');
      // connection a never saw the release: its view is behind, the store claim still decides
      assert.equal((await allocateIp(a, { l3NetworkUuid: l3, owner: 'late-2', newOwner: true })).ip, '10.21.0.9');
      await assert.rejects(allocateIp(a, { l3NetworkUuid: l3, owner: 'late-3', newOwner: true }), (e: TStackError) => e.code === 'CAPACITY_EXCEEDED');
    });

    it('explicit addresses: reserved ones refused, a taken one is a CONFLICT, the same owner is idempotent', async () => {
      const l3 = await l3With({ startIp: '10.30.0.1', endIp: '10.30.0.30', netmask: '255.255.255.0', gateway: '10.30.0.1' }, [{ startIp: '10.30.0.10', endIp: '10.30.0.19' }]);
      const x = await allocateIp(a, { l3NetworkUuid: l3, owner: 'nic-a', ip: '10.30.0.5' });
      assert.equal(x.ip, '10.30.0.5');
      await assert.rejects(allocateIp(b, { l3NetworkUuid: l3, owner: 'nic-b', ip: '10.30.0.5' }), (e: TStackError) => e.code === 'CONFLICT' && /in use by nic-a/.test(e.message));
      assert.equal((await allocateIp(b, { l3NetworkUuid: l3, owner: 'nic-a', ip: '10.30.0.5' })).ip, '10.30.0.5');
      await assert.rejects(allocateIp(a, { l3NetworkUuid: l3, owner: 'n', ip: '10.30.0.1' }), (e: TStackError) => e.code === 'INVALID_ARGUMENT' && e.details?.field === 'ip', 'gateway');
      await assert.rejects(allocateIp(a, { l3NetworkUuid: l3, owner: 'n', ip: '10.30.0.12' }), (e: TStackError) => e.code === 'INVALID_ARGUMENT', 'reserved range');
      await assert.rejects(allocateIp(a, { l3NetworkUuid: l3, owner: 'n', ip: '10.30.0.31' }), (e: TStackError) => e.code === 'INVALID_ARGUMENT' && /not in any IP range/.test(e.message));
      // 30 addresses − gateway − 10 reserved = 19 usable, one taken
      const got = await Promise.all(Array.from({ length: 18 }, (_, i) => allocateIp(i % 2 ? a : b, { l3NetworkUuid: l3, owner: `m-${i}`, strategy: i % 3 ? 'random' : 'sequential' })));
      const ips = got.map((g) => Number(g.ip.split('.')[3]));
      assert.equal(new Set(ips).size, 18);
      assert.ok(ips.every((n) => n >= 2 && n <= 30 && (n < 10 || n > 19) && n !== 5));
      await assert.rejects(allocateIp(a, { l3NetworkUuid: l3, owner: 'one-too-many' }), (e: TStackError) => e.code === 'CAPACITY_EXCEEDED');
      assert.equal((await allocateIp(a, { l3NetworkUuid: l3, owner: 'm-3' })).ip, got[3]!.ip, 'asking again as the same owner returns its address');
    });

    // a shared inventory only (SQLite has one controller, whose applies of a key run one at a time)
    if (name === 'Redis') it("a service owner's address asked for from two connections at once: one address per owner, the same to both", async () => {
      // two controllers applying one host's flat key at once (a create's sync, the host's tracker)
      const l3 = await l3With({ networkCidr: '10.21.0.0/24' });
      const owners = Array.from({ length: 12 }, (_, i) => `dhcp:host-${i}`);
      // the two ask in opposite orders, as two controllers' applies come (their next free addresses differ)
      const [fromA, fromB] = await Promise.all([Promise.all(owners.map((o) => serviceIp(a, l3, o))), Promise.all([...owners].reverse().map((o) => serviceIp(b, l3, o)))]);
      fromB.reverse();
      const claims = await a.claims(ipNamespace(l3));
      for (const [i, o] of owners.entries()) {
        const held = claims.filter((c) => c.owner === o).map((c) => c.key);
        assert.equal(held.length, 1, `${o} holds ${held.join(', ')}`);
        assert.deepEqual([fromA[i], fromB[i]], [held[0], held[0]], `${o}: both were given the address it holds`);
      }
      assert.equal(claims.length, owners.length, 'nothing else was claimed');
      // asked again: the same address, nothing new claimed
      assert.equal(await serviceIp(b, l3, owners[0]!), fromA[0]);
      assert.equal((await a.claims(ipNamespace(l3))).length, owners.length);
    });

    it('capacity reservations from two connections never over-commit', async () => {
      const ns = `host-capacity:${randomUUID()}`;
      const limit = 4;
      const outcomes = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          for (let attempt = 0; attempt < 100; attempt++) {
            const r = await reserve(i % 2 ? b : a, ns, `vm-${i}`, { cpu: 1 }, (after) => (after.cpu ?? 0) <= limit);
            if (r !== 'race') return r;
            await new Promise((res) => setTimeout(res, Math.random() * 10));
          }
          return 'race';
        }),
      );
      const won = outcomes.filter((o) => o === 'reserved').length;
      assert.ok(won >= 1 && won <= limit, `${won} reserved`);
      assert.equal((await reserved(a, ns)).total.cpu, won, 'never over the limit, no claim left behind by a lost race');
      // a lost race may report 'full' while a slot was being given back; sequential retries fill
      // exactly the rest: nothing leaked
      let more = 0;
      for (let i = 0; i < 12; i++) if (outcomes[i] !== 'reserved' && (await reserve(a, ns, `vm-${i}`, { cpu: 1 }, (after) => (after.cpu ?? 0) <= limit)) === 'reserved') more++;
      assert.equal(won + more, limit);
      assert.equal((await reserved(b, ns)).total.cpu, limit);
    });
  });
}

suite('SQLite', async (cleanup) => {
  const dir = await tmpDir('alloc-sqlite', cleanup);
  return async () => {
    const path = join(dir, `${randomUUID()}.db`);
    const a = await openStore({ backend: 'sqlite', path });
    return [a, await openStore({ backend: 'sqlite', path })];
  };
});

suite('Redis', async (cleanup) => {
  const redis = await startRedis(cleanup);
  return async () => {
    const prefix = `alloc-${randomUUID().slice(0, 8)}:`;
    return [await openStore({ backend: 'redis', url: redis.url, prefix }), await openStore({ backend: 'redis', url: redis.url, prefix })];
  };
});
