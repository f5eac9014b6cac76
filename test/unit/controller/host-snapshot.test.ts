// The kept host ranking (host-snapshot.ts) against the full per-decision computation it
// replaced: after random reservations, releases, holds, other controllers' claims, clock
// steps past the view's expiry and host changes, both must give the same best hosts with the
// same usage, and the same "already holds one" answer.
import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { allocateHost, holdHost, hostCandidates, rankHosts, releaseHost, DEFAULT_HOST_POLICY, type HostPolicy, type HostRequest, type HostStrategy } from '../../../controller/allocator/host.js';
import { hostIndex } from '../../../controller/allocator/host-snapshot.js';
import { cachedUsage, capacityNamespace, knownUsage } from '../../../controller/allocator/capacity.js';
import { attach } from '../../../controller/model/attachments.js';
import { TStackError } from '../../../shared/errors.js';

const GiB = 1024 ** 3;

/** Deterministic PRNG (mulberry32): a failure names its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The computation every decision made before the kept index: all hosts, this process's view, rankHosts. */
async function fullRanking(store: InventoryStore, req: HostRequest, consumer: string, p: HostPolicy, k: number): Promise<{ best: string[]; held: boolean; usage: string[] }> {
  const wide: HostRequest = { cpuNum: req.cpuNum, memorySize: req.memorySize };
  if (req.clusterUuid) wide.clusterUuid = req.clusterUuid;
  else if (req.zoneUuid) wide.zoneUuid = req.zoneUuid;
  const statics = await hostCandidates(store, wide, { usage: false });
  let held = false;
  const now = Date.now();
  const cands = await Promise.all(
    statics.map(async (c) => {
      const ns = capacityNamespace('host', c.host.uuid);
      const u = cachedUsage(store, ns, now);
      if (u) {
        if (u.consumers.has(consumer)) held = true;
        return { ...c, usedCpu: u.total.cpu ?? 0, usedMemory: u.total.memory ?? 0 };
      }
      const v = await knownUsage(store, ns);
      if (v.holds(consumer)) held = true;
      return { ...c, usedCpu: v.total.cpu ?? 0, usedMemory: v.total.memory ?? 0 };
    }),
  );
  return { best: rankHosts(cands, req, p).ranked.slice(0, k).map(show), held, usage: cands.map(usage) };
}

const usage = (c: { host: Resource; usedCpu: number; usedMemory: number }): string => `${c.host.name} ${c.host.status} used ${c.usedCpu}/${c.usedMemory / GiB}`;

const show = (f: { candidate: { host: Resource; usedCpu: number; usedMemory: number }; freeCpu: number; freeMemory: number }): string =>
  `${f.candidate.host.name} used ${f.candidate.usedCpu}/${f.candidate.usedMemory / GiB} free ${f.freeCpu}/${f.freeMemory / GiB}`;

describe('controller allocators: the kept host ranking', () => {
  let store: InventoryStore;
  const realNow = Date.now;
  let clock = 0;
  let seq = 0;
  const res = (kind: string, name: string, extra: Record<string, unknown> = {}, date?: string): Resource =>
    ({ uuid: `${kind}-${name}`, kind, name, createDate: date ?? new Date(Date.UTC(2026, 0, 1, 0, 0, ++seq)).toISOString(), lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra }) as Resource;

  beforeEach(async () => {
    clock = realNow();
    Date.now = () => clock;
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
  });
  afterEach(async () => {
    Date.now = realNow;
    await store.close();
  });

  async function cloud(rand: () => number): Promise<string[]> {
    await store.create(res('zone', 'z1', { state: 'Enabled' }));
    await store.create(res('zone', 'z2', { state: 'Enabled' }));
    const clusters = [
      ['c1', 'z1', 'KVM'],
      ['c2', 'z1', 'KVM'],
      ['c3', 'z2', 'KVM'],
      ['c4', 'z2', 'ESX'],
    ] as const;
    for (const [c, z, hv] of clusters) await store.create(res('cluster', c, { state: 'Enabled', parentUuid: `zone-${z}`, hypervisorType: hv }));
    for (const [ps, z] of [['ps1', 'z1'], ['ps2', 'z1'], ['ps3', 'z2']]) await store.create(res('primary-storage', ps!, { parentUuid: `zone-${z}`, state: 'Enabled', status: 'Connected', totalCapacity: 1000 * GiB }));
    for (const [l2, z] of [['l2a', 'z1'], ['l2b', 'z1'], ['l2c', 'z2']]) await store.create(res('l2-network', l2!, { parentUuid: `zone-${z}` }));
    await attach(store, 'cluster-primary-storage', 'cluster-c1', 'primary-storage-ps1', 'admin');
    await attach(store, 'cluster-primary-storage', 'cluster-c2', 'primary-storage-ps2', 'admin');
    await attach(store, 'cluster-primary-storage', 'cluster-c3', 'primary-storage-ps3', 'admin');
    await attach(store, 'cluster-primary-storage', 'cluster-c4', 'primary-storage-ps3', 'admin');
    await attach(store, 'cluster-l2-network', 'cluster-c1', 'l2-network-l2a', 'admin');
    await attach(store, 'cluster-l2-network', 'cluster-c1', 'l2-network-l2b', 'admin');
    await attach(store, 'cluster-l2-network', 'cluster-c2', 'l2-network-l2a', 'admin');
    await attach(store, 'cluster-l2-network', 'cluster-c3', 'l2-network-l2c', 'admin');
    const hosts: string[] = [];
    for (let i = 0; i < 36; i++) {
      const [c, z] = clusters[i % clusters.length]!;
      // equal sizes and equal dates on purpose: the ties are broken by free CPU, then age, then uuid
      const date = i % 5 === 0 ? '2026-01-01T00:00:00.000Z' : undefined;
      await store.create(
        res('host', `h${String(i).padStart(2, '0')}`, { parentUuid: `cluster-${c}`, zoneUuid: `zone-${z}`, state: i === 7 ? 'Disabled' : 'Enabled', status: 'Connected', totalCpu: [2, 4, 8][Math.floor(rand() * 3)], totalMemory: [4, 8, 16][Math.floor(rand() * 3)]! * GiB }, date),
      );
      hosts.push(`host-h${String(i).padStart(2, '0')}`);
    }
    return hosts;
  }

  it('gives the same best hosts, usage and holds as the full computation after random operations', async function () {
    this.timeout(60_000);
    const seed = 1919;
    const rand = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const hosts = await cloud(rand);
    const held: Array<{ host: string; consumer: string }> = [];
    const policies: HostPolicy[] = [DEFAULT_HOST_POLICY, { cpuOvercommit: 2, memoryOvercommit: 1.5, reservedMemoryPerHost: GiB }];
    let n = 0;
    let compared = 0;
    let placed = 0;
    for (let step = 0; step < 400; step++) {
      const op = rand();
      if (op < 0.4) {
        const consumer = `vm-${n++}`;
        try {
          const a = await allocateHost(store, { cpuNum: 1 + Math.floor(rand() * 4), memorySize: (1 + Math.floor(rand() * 4)) * GiB, l2NetworkUuids: rand() < 0.5 ? [pick(['l2-network-l2a', 'l2-network-l2c'])] : [], hypervisorType: 'KVM', strategy: pick<HostStrategy>(['least-used', 'first-fit', 'random']) }, consumer);
          held.push({ host: a.hostUuid, consumer });
          placed++;
        } catch (e) {
          assert.equal((e as TStackError).code, 'CAPACITY_EXCEEDED');
        }
      } else if (op < 0.55 && held.length) {
        const [h] = held.splice(Math.floor(rand() * held.length), 1);
        await releaseHost(store, h!.host, h!.consumer);
      } else if (op < 0.65) {
        const consumer = `found-${n++}`;
        const host = pick(hosts);
        await holdHost(store, host, consumer, { cpu: 1 + Math.floor(rand() * 2), memory: GiB });
        held.push({ host, consumer });
      } else if (op < 0.75) {
        // another controller's claim or release: this process sees it once its view expires
        const host = pick(hosts);
        if (rand() < 0.6) await store.claim(capacityNamespace('host', host), `other-${n++}`, JSON.stringify({ cpu: 1, memory: GiB }));
        else {
          const cs = await store.claims(capacityNamespace('host', host));
          if (cs.length) await store.release(capacityNamespace('host', host), cs[0]!.key);
        }
      } else if (op < 0.88) {
        // mostly steps within the snapshot's 3 s, so views expire under a live index too
        clock += rand() < 0.8 ? Math.floor(rand() * 2_900) : Math.floor(rand() * 40_000);
      } else if (op < 0.92) {
        // a host changes state or is added: seen once the snapshot is older than 3 s
        if (rand() < 0.7) await store.update(pick(hosts), { status: rand() < 0.5 ? 'Connected' : 'Disconnected' });
        else {
          const name = `h${hosts.length}`;
          await store.create(res('host', name, { parentUuid: 'cluster-c1', zoneUuid: 'zone-z1', state: 'Enabled', status: 'Connected', totalCpu: 4, totalMemory: 8 * GiB }));
          hosts.push(`host-${name}`);
        }
        clock += 3_001;
      }
      for (let q = 0; q < 3; q++) {
        const req: HostRequest = { cpuNum: 1 + Math.floor(rand() * 6), memorySize: Math.ceil(rand() * 10) * GiB, strategy: rand() < 0.7 ? 'least-used' : 'first-fit' };
        const hint = rand();
        if (hint < 0.2) req.clusterUuid = pick(['cluster-c1', 'cluster-c2', 'cluster-c3']);
        else if (hint < 0.35) req.zoneUuid = pick(['zone-z1', 'zone-z2']);
        if (rand() < 0.5) req.l2NetworkUuids = [pick(['l2-network-l2a', 'l2-network-l2b', 'l2-network-l2c'])];
        if (rand() < 0.2) req.primaryStorageUuid = pick(['primary-storage-ps1', 'primary-storage-ps2', 'primary-storage-ps3']);
        if (rand() < 0.5) req.hypervisorType = 'KVM';
        if (rand() < 0.3) req.avoidHostUuids = [pick(hosts), pick(hosts)];
        if (rand() < 0.2) req.excluded = { [pick(hosts)]: 'anti-affinity' };
        const p = pick(policies);
        const consumer = held.length && rand() < 0.3 ? pick(held).consumer : `nobody-${step}`;
        const k = pick([1, 8, 50]);
        // the index first: the full computation re-reads expired views (that would hide a miss)
        const index = await hostIndex(store, req, p, (wide) => hostCandidates(store, wide, { usage: false }));
        const got = { best: index.best(req, k).map(show), held: index.holds(consumer), usage: index.candidates().map(usage) };
        const want = await fullRanking(store, req, consumer, p, k);
        assert.deepEqual(got, want, `seed ${seed}, step ${step}, request ${JSON.stringify(req)}`);
        compared++;
      }
    }
    assert.ok(placed > 50, `the run placed VMs (${placed})`);
    assert.equal(compared, 1200);
  });

  it("sees another controller's claim once the view of that host expires, also under an index built before", async () => {
    await cloud(prng(3));
    const req: HostRequest = { cpuNum: 1, memorySize: GiB, hypervisorType: 'KVM', strategy: 'first-fit' };
    const statics = (wide: HostRequest): ReturnType<typeof hostCandidates> => hostCandidates(store, wide, { usage: false });
    const first = (await hostIndex(store, req, DEFAULT_HOST_POLICY, statics)).best(req, 1)[0]!.candidate;
    assert.equal(first.usedMemory, 0);
    await store.claim(capacityNamespace('host', first.host.uuid), 'other-controller-vm', JSON.stringify({ cpu: 1, memory: 3 * GiB }));
    clock += 29_000; // a new index (the old one is 29 s old), the view of the host still recent
    assert.equal((await hostIndex(store, req, DEFAULT_HOST_POLICY, statics)).best(req, 1)[0]!.candidate.usedMemory, 0);
    clock += 2_000; // the index is 2 s old, the view 31 s: read again
    const again = (await hostIndex(store, req, DEFAULT_HOST_POLICY, statics)).best(req, 1)[0]!.candidate;
    assert.equal(again.host.uuid, first.host.uuid);
    assert.equal(again.usedMemory, 3 * GiB);
    assert.deepEqual((await fullRanking(store, req, 'x', DEFAULT_HOST_POLICY, 1)).best, [`${first.host.name} used 1/3 free ${Number(first.host.totalCpu) * 10 - 1}/${Number(first.host.totalMemory) / GiB - 3}`]);
  });

  it('never over-commits a host under concurrent creates', async function () {
    this.timeout(30_000);
    const rand = prng(7);
    const hosts = await cloud(rand);
    const sizes = Array.from({ length: 200 }, () => ({ cpuNum: 1 + Math.floor(rand() * 4), memorySize: (1 + Math.floor(rand() * 3)) * GiB }));
    const results = await Promise.allSettled(sizes.map((s, i) => allocateHost(store, { ...s, hypervisorType: 'KVM' }, `vm-${i}`)));
    assert.ok(results.some((r) => r.status === 'rejected'), 'more asked than there is room for');
    for (const h of hosts) {
      const host = (await store.get(h))!;
      const used = (await store.claims(capacityNamespace('host', h))).map((c) => JSON.parse(c.owner) as { cpu: number; memory: number });
      const mem = used.reduce((a, u) => a + u.memory, 0);
      const cpu = used.reduce((a, u) => a + u.cpu, 0);
      assert.ok(mem <= Number(host.totalMemory), `${host.name}: ${mem / GiB} GiB of ${Number(host.totalMemory) / GiB}`);
      assert.ok(cpu <= Number(host.totalCpu) * 10, `${host.name}: ${cpu} vCPU of ${Number(host.totalCpu) * 10}`);
    }
  });
});
