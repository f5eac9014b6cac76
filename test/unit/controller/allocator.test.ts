import assert from 'node:assert/strict';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { allocateHost, hostCapacity, rankHosts, releaseHost, type HostCandidate, type HostRequest } from '../../../controller/allocator/host.js';
import { allocatePrimaryStorage, primaryStorageCapacity, rankPrimaryStorage, releasePrimaryStorage } from '../../../controller/allocator/primary-storage.js';
import { attach } from '../../../controller/model/attachments.js';
import { TStackError } from '../../../shared/errors.js';

const GiB = 1024 ** 3;
let seq = 0;
const res = (kind: string, name: string, extra: Record<string, unknown> = {}): Resource =>
  ({ uuid: `${kind}-${name}`, kind, name, createDate: new Date(Date.UTC(2026, 0, 1, 0, 0, ++seq)).toISOString(), lastOpDate: '', ownerAccountUuid: 'admin', tags: [], ...extra }) as Resource;

describe('controller allocators: host (pure ranking)', () => {
  const zone = res('zone', 'z', { state: 'Enabled' });
  const cluster = res('cluster', 'c', { state: 'Enabled', parentUuid: 'zone-z', hypervisorType: 'KVM' });
  const cand = (name: string, extra: Record<string, unknown> = {}, over: Partial<HostCandidate> = {}): HostCandidate => ({
    host: res('host', name, { state: 'Enabled', status: 'Connected', parentUuid: 'cluster-c', zoneUuid: 'zone-z', totalCpu: 4, totalMemory: 8 * GiB, ...extra }),
    cluster,
    zone,
    usedCpu: 0,
    usedMemory: 0,
    primaryStorageUuids: ['ps-1'],
    l2NetworkUuids: ['l2-1'],
    ...over,
  });
  const req: HostRequest = { cpuNum: 2, memorySize: 2 * GiB, l2NetworkUuids: ['l2-1'] };

  it('rejects each unfit host with the reason', () => {
    const cands = [
      cand('ok'),
      cand('disabled', { state: 'Disabled' }),
      cand('maint', { state: 'Maintenance' }),
      cand('down', { status: 'Disconnected' }),
      cand('full-mem', {}, { usedMemory: 7 * GiB }),
      cand('full-cpu', { totalCpu: 1 }, { usedCpu: 9 }),
      cand('no-ps', {}, { primaryStorageUuids: [] }),
      cand('no-l2', {}, { l2NetworkUuids: [] }),
      cand('cl-off', {}, { cluster: { ...cluster, state: 'Disabled' } }),
    ];
    const { ranked, rejected } = rankHosts(cands, req);
    assert.deepEqual(ranked.map((r) => r.candidate.host.name), ['ok']);
    const why = Object.fromEntries(rejected.map((r) => [r.name, r.reason]));
    assert.equal(why.disabled, 'host is Disabled');
    assert.equal(why.maint, 'host is Maintenance');
    assert.equal(why.down, 'host is Disconnected');
    assert.match(why['full-mem']!, /not enough memory: 1\.0 GiB free, 2\.0 GiB needed/);
    assert.match(why['full-cpu']!, /not enough CPU: 1 vCPU free \(1 × 10 − 9 used\), 2 needed/);
    assert.match(why['no-ps']!, /no primary storage attached/);
    assert.match(why['no-l2']!, /L2 network\(s\) l2-1 not attached/);
    assert.match(why['cl-off']!, /cluster c is Disabled/);
  });

  it('over-commit ratios decide what fits', () => {
    const c = [cand('h', { totalCpu: 1, totalMemory: 2 * GiB })];
    assert.equal(rankHosts(c, { cpuNum: 8, memorySize: 3 * GiB }).ranked.length, 0, 'memory is not over-committed by default');
    assert.equal(rankHosts(c, { cpuNum: 8, memorySize: 3 * GiB }, { cpuOvercommit: 10, memoryOvercommit: 1.5, reservedMemoryPerHost: 0 }).ranked.length, 1);
    assert.equal(rankHosts(c, { cpuNum: 11, memorySize: GiB }).ranked.length, 0, '1 thread × 10');
    assert.equal(rankHosts(c, { cpuNum: 1, memorySize: 2 * GiB }, { cpuOvercommit: 10, memoryOvercommit: 1, reservedMemoryPerHost: GiB }).ranked.length, 0, 'reserved host memory');
  });

  it('strategies: least-used, first-fit, random; hints narrow', () => {
    const cands = [cand('old-busy', {}, { usedMemory: 5 * GiB }), cand('mid', {}, { usedMemory: 1 * GiB }), cand('new-idle')];
    assert.deepEqual(rankHosts(cands, req).ranked.map((r) => r.candidate.host.name), ['new-idle', 'mid', 'old-busy']);
    assert.deepEqual(rankHosts(cands, { ...req, strategy: 'first-fit' }).ranked.map((r) => r.candidate.host.name), ['old-busy', 'mid', 'new-idle']);
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) seen.add(rankHosts(cands, { ...req, strategy: 'random' }).ranked[0]!.candidate.host.name);
    assert.equal(seen.size, 3, 'random spreads');
    assert.deepEqual(rankHosts(cands, { ...req, hostUuid: 'host-mid' }).ranked.map((r) => r.candidate.host.name), ['mid']);
    assert.deepEqual(rankHosts(cands, { ...req, avoidHostUuids: ['host-new-idle'] }).ranked.map((r) => r.candidate.host.name), ['mid', 'old-busy']);
    assert.equal(rankHosts(cands, { ...req, zoneUuid: 'zone-other' }).ranked.length, 0);
    assert.equal(rankHosts(cands, { ...req, primaryStorageUuid: 'ps-2' }).ranked.length, 0);
  });
});

describe('controller allocators: with a store', () => {
  let store: InventoryStore;
  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
    await store.create(res('zone', 'z', { state: 'Enabled' }));
    await store.create(res('cluster', 'c', { state: 'Enabled', parentUuid: 'zone-z', hypervisorType: 'KVM' }));
    await store.create(res('cluster', 'bare', { state: 'Enabled', parentUuid: 'zone-z', hypervisorType: 'KVM' }));
    await store.create(res('l2-network', 'l2', { parentUuid: 'zone-z' }));
    await store.create(res('primary-storage', 'ps1', { parentUuid: 'zone-z', state: 'Enabled', status: 'Connected', type: 'LocalStorage', totalCapacity: 100 * GiB }));
    await store.create(res('primary-storage', 'ps2', { parentUuid: 'zone-z', state: 'Enabled', status: 'Connected', type: 'NFS', totalCapacity: 50 * GiB }));
    await attach(store, 'cluster-primary-storage', 'cluster-c', 'primary-storage-ps1', 'admin');
    await attach(store, 'cluster-primary-storage', 'cluster-c', 'primary-storage-ps2', 'admin');
    await attach(store, 'cluster-l2-network', 'cluster-c', 'l2-network-l2', 'admin');
    for (const h of ['h1', 'h2']) await store.create(res('host', h, { parentUuid: 'cluster-c', zoneUuid: 'zone-z', state: 'Enabled', status: 'Connected', totalCpu: 2, totalMemory: 4 * GiB }));
    await store.create(res('host', 'h3', { parentUuid: 'cluster-bare', zoneUuid: 'zone-z', state: 'Enabled', status: 'Connected', totalCpu: 64, totalMemory: 256 * GiB }));
  });
  afterEach(async () => store.close());

  it('places concurrent VMs without exceeding any host, spreads them, and names every host when full', async () => {
    const req: HostRequest = { cpuNum: 1, memorySize: GiB, l2NetworkUuids: ['l2-network-l2'] };
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => allocateHost(store, req, `vm-${i}`)));
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    assert.equal(ok.length, 8, '2 hosts × 4 GiB');
    assert.equal(ok.filter((o) => o.hostUuid === 'host-h1').length, 4);
    assert.equal(ok.filter((o) => o.hostUuid === 'host-h2').length, 4);
    assert.ok(ok.every((o) => o.clusterUuid === 'cluster-c' && o.zoneUuid === 'zone-z'));
    const err = (results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason as TStackError;
    assert.equal(err.code, 'CAPACITY_EXCEEDED');
    assert.match(err.message, /h1 \(host-h1\): not enough memory/);
    assert.match(err.message, /h3 \(host-h3\): cluster bare has no primary storage attached/);
    assert.deepEqual(await hostCapacity(store, (await store.get('host-h1'))!), { totalCpu: 2, usedCpu: 4, availableCpu: 16, totalMemory: 4 * GiB, usedMemory: 4 * GiB, availableMemory: 0 });

    // idempotent per consumer; release frees
    const again = await allocateHost(store, req, 'vm-0');
    assert.equal(again.hostUuid, ok[0]!.hostUuid);
    await releaseHost(store, ok[0]!.hostUuid, 'vm-0');
    const late = await allocateHost(store, req, 'vm-late');
    assert.equal(late.hostUuid, ok[0]!.hostUuid);
  });

  it('primary storage: most free first, over-provisioning, explicit choice, release', async () => {
    const a = await allocatePrimaryStorage(store, { size: 40 * GiB, clusterUuid: 'cluster-c' }, 'vol-a');
    assert.equal(a.primaryStorageUuid, 'primary-storage-ps1');
    const b = await allocatePrimaryStorage(store, { size: 40 * GiB, clusterUuid: 'cluster-c' }, 'vol-b');
    assert.equal(b.primaryStorageUuid, 'primary-storage-ps1', '60 GiB free beats 50');
    const c = await allocatePrimaryStorage(store, { size: 40 * GiB, clusterUuid: 'cluster-c' }, 'vol-c');
    assert.equal(c.primaryStorageUuid, 'primary-storage-ps2');
    await assert.rejects(allocatePrimaryStorage(store, { size: 40 * GiB, clusterUuid: 'cluster-c' }, 'vol-d'), (e: TStackError) => e.code === 'CAPACITY_EXCEEDED' && /ps1 \(primary-storage-ps1\): not enough capacity/.test(e.message));
    const d = await allocatePrimaryStorage(store, { size: 40 * GiB, clusterUuid: 'cluster-c' }, 'vol-d', { overProvisioningRatio: 2 });
    assert.equal(d.primaryStorageUuid, 'primary-storage-ps1');
    await assert.rejects(allocatePrimaryStorage(store, { size: GiB, clusterUuid: 'cluster-bare' }, 'vol-e'), /has no primary storage attached/);
    await assert.rejects(allocatePrimaryStorage(store, { size: GiB, clusterUuid: 'cluster-c', types: ['Ceph'] }, 'vol-e'), /type LocalStorage is not one of Ceph/);
    assert.deepEqual(await primaryStorageCapacity(store, (await store.get('primary-storage-ps2'))!), { totalCapacity: 50 * GiB, usedCapacity: 40 * GiB, availableCapacity: 10 * GiB });
    await releasePrimaryStorage(store, 'primary-storage-ps2', 'vol-c');
    assert.equal((await allocatePrimaryStorage(store, { size: 45 * GiB, primaryStorageUuid: 'primary-storage-ps2' }, 'vol-f')).primaryStorageUuid, 'primary-storage-ps2');
    assert.equal((await allocatePrimaryStorage(store, { size: 45 * GiB, clusterUuid: 'cluster-c' }, 'vol-f')).primaryStorageUuid, 'primary-storage-ps2', 'idempotent');
  });

  it('primary storage ranking skips disabled and disconnected storage', () => {
    const ps = (name: string, extra: Record<string, unknown>) => ({ ps: res('primary-storage', name, { state: 'Enabled', status: 'Connected', totalCapacity: 10 * GiB, ...extra }), used: 0 });
    const { ranked, rejected } = rankPrimaryStorage([ps('a', { state: 'Disabled' }), ps('b', { status: 'Disconnected' }), ps('c', {})], { size: GiB });
    assert.deepEqual(ranked.map((r) => r.ps.name), ['c']);
    assert.deepEqual(rejected.map((r) => r.reason), ['it is Disabled', 'it is Disconnected']);
  });
});

describe('controller allocators: MAC', () => {
  it('unique per inventory: a colliding pick tries again; explicit MACs conflict; release frees', async () => {
    const { allocateMac, claimMac, releaseMac, randomKvmMac } = await import('../../../controller/allocator/mac.js');
    const store = await openStore({ backend: 'sqlite', path: ':memory:' });
    try {
      assert.match(randomKvmMac(), /^52:54:00(:[0-9a-f]{2}){3}$/);
      const picks = ['52:54:00:00:00:01', '52:54:00:00:00:01', '52:54:00:00:00:02'];
      const gen = (): string => picks.shift()!;
      assert.equal(await allocateMac(store, 'nic-a', gen), '52:54:00:00:00:01');
      assert.equal(await allocateMac(store, 'nic-b', gen), '52:54:00:00:00:02', 'the taken one was skipped');
      await assert.rejects(claimMac(store, '52:54:00:00:00:01', 'nic-c'), (e: TStackError) => e.code === 'CONFLICT');
      await releaseMac(store, '52:54:00:00:00:01', 'nic-a');
      await claimMac(store, '52:54:00:00:00:01', 'nic-c');
      const many = await Promise.all(Array.from({ length: 200 }, (_, i) => allocateMac(store, `n${i}`)));
      assert.equal(new Set(many).size, 200);
    } finally {
      await store.close();
    }
  });
});
