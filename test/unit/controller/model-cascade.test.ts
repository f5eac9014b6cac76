import assert from 'node:assert/strict';
import { planDelete, blockedError, deleteWithCascade, type Lookup } from '../../../controller/model/cascade.js';
import { runQuery } from '../../../controller/store/query.js';
import { openStore } from '../../../controller/store/index.js';
import type { Resource } from '../../../controller/store/types.js';
import { TStackError } from '../../../shared/errors.js';

let n = 0;
function r(kind: string, name: string, extra: Record<string, unknown> = {}): Resource {
  n++;
  return { uuid: `${kind}-${name}`, kind, name, createDate: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(), lastOpDate: '', ownerAccountUuid: 'acc-admin', tags: [], ...extra } as Resource;
}

/** A small cloud: zone z with cluster c (host h, VM vm on it), L2/L3, PS, BS, attachments. */
function world(): Resource[] {
  return [
    r('zone', 'z'),
    r('cluster', 'c', { parentUuid: 'zone-z' }),
    r('host', 'h', { parentUuid: 'cluster-c', zoneUuid: 'zone-z' }),
    r('host', 'h2', { parentUuid: 'cluster-c', zoneUuid: 'zone-z' }),
    r('primary-storage', 'ps', { parentUuid: 'zone-z' }),
    r('backup-storage', 'bs'),
    r('zone-backup-storage', 'zbs', { parentUuid: 'zone-z', zoneUuid: 'zone-z', backupStorageUuid: 'backup-storage-bs' }),
    r('cluster-primary-storage', 'cps', { parentUuid: 'cluster-c', clusterUuid: 'cluster-c', primaryStorageUuid: 'primary-storage-ps' }),
    r('l2-network', 'l2', { parentUuid: 'zone-z' }),
    r('cluster-l2-network', 'cl2', { parentUuid: 'cluster-c', clusterUuid: 'cluster-c', l2NetworkUuid: 'l2-network-l2' }),
    r('l3-network', 'l3', { parentUuid: 'l2-network-l2' }),
    r('ip-range', 'ipr', { parentUuid: 'l3-network-l3', startIp: '10.0.0.2', endIp: '10.0.0.100' }),
    r('image', 'img', { backupStorageUuids: ['backup-storage-bs'], ownerAccountUuid: 'acc-u' }),
  ];
}

function vmWorld(): Resource[] {
  return [
    ...world(),
    r('vm-instance', 'vm', { state: 'Running', hostUuid: 'host-h', clusterUuid: 'cluster-c', zoneUuid: 'zone-z', ownerAccountUuid: 'acc-u' }),
    r('vm-nic', 'nic', { parentUuid: 'vm-instance-vm', l3NetworkUuid: 'l3-network-l3', ipRangeUuid: 'ip-range-ipr', ip: '10.0.0.5' }),
    r('volume', 'root', { type: 'Root', vmInstanceUuid: 'vm-instance-vm', primaryStorageUuid: 'primary-storage-ps' }),
    r('volume', 'data', { type: 'Data', vmInstanceUuid: 'vm-instance-vm', primaryStorageUuid: 'primary-storage-ps', deviceId: 1 }),
    r('volume-snapshot', 'snap', { parentUuid: 'volume-root', primaryStorageUuid: 'primary-storage-ps' }),
  ];
}

const lookupIn = (all: Resource[]): Lookup => async (kind, filters) => runQuery(all, { kind, filters }).items;
const get = (all: Resource[], uuid: string): Resource => all.find((x) => x.uuid === uuid)!;
const uuids = (rs: Array<{ uuid: string }>): string[] => rs.map((x) => x.uuid);

describe('controller model: cascade delete rules', () => {
  it('refuses a zone with children unless cascade, naming them', async () => {
    const w = world();
    const plan = await planDelete(get(w, 'zone-z'), lookupIn(w));
    assert.deepEqual(uuids(plan.blockers).sort(), ['cluster-c', 'l2-network-l2', 'primary-storage-ps']);
    const e = blockedError(plan);
    assert.equal(e.code, 'CONFLICT');
    assert.match(e.message, /cluster c \(cluster-c\)/);
    assert.match(e.message, /delete with cascade/);
    assert.equal((e.details?.dependents as unknown[]).length, 3);
  });

  it('cascades a zone children-first, with attachments, but not the backup storage or its images', async () => {
    const w = world();
    const plan = await planDelete(get(w, 'zone-z'), lookupIn(w), { cascade: true });
    assert.deepEqual(plan.blockers, []);
    const order = uuids(plan.deletes);
    assert.equal(order.at(-1), 'zone-z');
    for (const x of ['cluster-c', 'host-h', 'host-h2', 'primary-storage-ps', 'l2-network-l2', 'l3-network-l3', 'ip-range-ipr', 'zone-backup-storage-zbs', 'cluster-primary-storage-cps', 'cluster-l2-network-cl2']) assert.ok(order.includes(x), x);
    assert.ok(!order.includes('backup-storage-bs'));
    assert.ok(!order.includes('image-img'));
    assert.ok(order.indexOf('host-h') < order.indexOf('cluster-c'));
    assert.ok(order.indexOf('ip-range-ipr') < order.indexOf('l3-network-l3'));
    assert.ok(order.indexOf('l3-network-l3') < order.indexOf('l2-network-l2'));
    assert.equal(new Set(order).size, order.length, 'each resource once (attachments are reached twice)');
  });

  it('VMs block zone, cluster and host deletes even with cascade', async () => {
    const w = vmWorld();
    for (const t of ['zone-z', 'cluster-c', 'host-h']) {
      const plan = await planDelete(get(w, t), lookupIn(w), { cascade: true });
      assert.ok(uuids(plan.blockers).includes('vm-instance-vm'), t);
    }
    const h2 = await planDelete(get(w, 'host-h2'), lookupIn(w));
    assert.deepEqual(h2.blockers, []);
  });

  it('in-use network and storage are refused: L3 with NICs, IP range with addresses, PS with volumes, BS with images', async () => {
    const w = vmWorld();
    assert.deepEqual(uuids((await planDelete(get(w, 'l3-network-l3'), lookupIn(w))).blockers), ['vm-nic-nic']);
    assert.deepEqual(uuids((await planDelete(get(w, 'ip-range-ipr'), lookupIn(w))).blockers), ['vm-nic-nic']);
    assert.deepEqual(uuids((await planDelete(get(w, 'primary-storage-ps'), lookupIn(w), { cascade: true })).blockers).sort(), ['volume-data', 'volume-root', 'volume-snapshot-snap']);
    // manual: a primary storage is detached from every cluster before it is deleted (or cascade)
    const ps = await planDelete(get(world(), 'primary-storage-ps'), lookupIn(world()));
    assert.deepEqual(uuids(ps.blockers), ['cluster-primary-storage-cps']);
    assert.match(ps.blockers[0]!.reason, /detach it from the clusters first or delete with cascade/);
    assert.deepEqual(uuids((await planDelete(get(world(), 'primary-storage-ps'), lookupIn(world()), { cascade: true })).deletes), ['cluster-primary-storage-cps', 'primary-storage-ps']);
    assert.deepEqual(uuids((await planDelete(get(w, 'backup-storage-bs'), lookupIn(w))).blockers), ['image-img']);
    const l3 = await planDelete(get(world(), 'l3-network-l3'), lookupIn(world()));
    assert.deepEqual(uuids(l3.deletes), ['ip-range-ipr', 'l3-network-l3'], 'an unused L3 takes its ranges along');
  });

  it('expunging a VM deletes NICs, root volume and its snapshots, and detaches data volumes', async () => {
    const w = vmWorld();
    const plan = await planDelete(get(w, 'vm-instance-vm'), lookupIn(w));
    assert.deepEqual(plan.blockers, []);
    assert.deepEqual(uuids(plan.deletes).sort(), ['vm-instance-vm', 'vm-nic-nic', 'volume-root', 'volume-snapshot-snap'].sort());
    assert.deepEqual(plan.detaches.map((d) => [d.resource.uuid, Object.keys(d.patch).sort()]), [['volume-data', ['deviceId', 'vmInstanceUuid']]]);
  });

  it('volumes: attached or root volumes are refused; a free one takes its snapshots', async () => {
    const w = vmWorld();
    assert.match((await planDelete(get(w, 'volume-data'), lookupIn(w))).blockers[0]!.reason, /detach it first/);
    assert.match((await planDelete(get(w, 'volume-root'), lookupIn(w))).blockers[0]!.reason, /delete the VM/);
    const free = [...w, r('volume', 'free', { type: 'Data' }), r('volume-snapshot', 's1', { parentUuid: 'volume-free' })];
    assert.deepEqual(uuids((await planDelete(get(free, 'volume-free'), lookupIn(free))).deletes), ['volume-snapshot-s1', 'volume-free']);
  });

  it('accounts owning resources and the admin account are refused', async () => {
    const w = [...vmWorld(), r('account', 'u', { uuid: 'acc-u' }), r('account', 'admin', { type: 'SystemAdmin' }), r('account', 'empty')];
    w.find((x) => x.name === 'u')!.uuid = 'acc-u';
    assert.deepEqual(uuids((await planDelete(get(w, 'acc-u'), lookupIn(w))).blockers).sort(), ['image-img', 'vm-instance-vm']);
    assert.match((await planDelete(get(w, 'account-admin'), lookupIn(w))).blockers[0]!.reason, /admin/);
    assert.deepEqual((await planDelete(get(w, 'account-empty'), lookupIn(w))).blockers, []);
  });

  it('deleteWithCascade executes against a store and 409s without changing anything when blocked', async () => {
    const store = await openStore({ backend: 'sqlite', path: ':memory:' });
    try {
      for (const x of vmWorld()) await store.create(x);
      await assert.rejects(deleteWithCascade(store, 'zone-z', { cascade: true }), (e: TStackError) => e.code === 'CONFLICT');
      assert.ok(await store.get('cluster-c'), 'nothing deleted');
      await deleteWithCascade(store, 'vm-instance-vm');
      assert.equal(await store.get('volume-root'), undefined);
      const data = await store.get('volume-data');
      assert.equal(data?.vmInstanceUuid, undefined);
      await store.delete('volume-data');
      await deleteWithCascade(store, 'zone-z', { cascade: true });
      assert.equal((await store.list({ kind: 'host' })).total, 0);
      assert.equal((await store.list({ kind: 'cluster-primary-storage' })).total, 0);
      assert.ok(await store.get('backup-storage-bs'));
      await assert.rejects(deleteWithCascade(store, 'zone-z'), (e: TStackError) => e.code === 'NOT_FOUND');
    } finally {
      await store.close();
    }
  });
});
