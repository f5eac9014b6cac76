import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { resourceKinds, kindDef, prepareCreate, recheckUse, validateAction, validateBody, validateUpdate } from '../../../controller/model/registry.js';
import { attach, attachedFrom, attachedTo, detach, isAttached } from '../../../controller/model/attachments.js';
import { normalizeIpRange } from '../../../controller/model/network.js';
import { openStore } from '../../../controller/store/index.js';
import type { InventoryStore, Resource } from '../../../controller/store/types.js';
import { TStackError } from '../../../shared/errors.js';
import { ApiRegistry } from '../../../controller/api/registry.js';
import { registerAccounts } from '../../../controller/auth/collection.js';
import { AccountCreate } from '../../../controller/auth/accounts.js';

const ADMIN = 'acc-admin';

async function fails(p: Promise<unknown> | (() => unknown), code: string, field?: string): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    assert.ok(e instanceof TStackError, String(e));
    assert.equal(e.code, code, e.message);
    if (field !== undefined) assert.equal(e.details?.field, field, e.message);
    return;
  }
  assert.fail(`expected ${code}`);
}

describe('controller model', () => {
  let store: InventoryStore;
  beforeEach(async () => {
    store = await openStore({ backend: 'sqlite', path: ':memory:' });
  });
  afterEach(async () => store.close());

  const create = async (collection: string, body: Record<string, unknown>): Promise<Resource> => {
    const p = await prepareCreate(store, resourceKinds[collection]!, body, { ownerAccountUuid: ADMIN });
    return store.create(p.resource);
  };

  it('registers every kind of the VM path under its REST collection', () => {
    for (const c of ['zones', 'clusters', 'hosts', 'primary-storage', 'backup-storage', 'images', 'instance-offerings', 'disk-offerings', 'l2-networks', 'l3-networks', 'ip-ranges', 'vm-instances', 'vm-nics', 'volumes', 'volume-snapshots', 'accounts']) {
      const d = resourceKinds[c];
      assert.ok(d, c);
      assert.equal(d.collection, c);
      assert.equal(kindDef(d.kind), d);
      if (d.parentField) assert.ok(d.createSchema.properties[d.parentField], `${c}: parent field ${d.parentField} in the create schema`);
      if (d.initialState) assert.ok(d.states.includes(d.initialState));
    }
  });

  it("accounts have one definition: the API serves the model's schemas and admin-only verbs", async () => {
    const reg = new ApiRegistry();
    registerAccounts(reg);
    const spec = reg.collection('accounts')!;
    const def = resourceKinds.accounts!;
    assert.equal(spec.createSchema, def.createSchema);
    assert.equal(spec.updateSchema, def.updateSchema);
    assert.equal(AccountCreate, def.createSchema);
    assert.equal(spec.kind, def.kind);
    assert.deepEqual(spec.adminOnly, ['create', 'delete']);
    assert.ok(reg.isAdminOnly(spec, 'create') && reg.isAdminOnly(spec, 'delete') && !reg.isAdminOnly(spec, 'update'), 'an account updates itself');
    assert.equal(reg.action('accounts', 'changeState')!.schema, def.actions.changeState!.schema);
    // the create body never chooses the type (always Normal) and the name rule is the API's
    await fails(() => validateBody(def.createSchema, { name: 'u1', password: 'long-enough-pw', type: 'SystemAdmin' }, 'create account'), 'INVALID_ARGUMENT', 'type');
    await fails(() => validateBody(def.createSchema, { name: '-bad', password: 'long-enough-pw' }, 'create account'), 'INVALID_ARGUMENT', 'name');
    assert.ok(spec.hiddenFields?.includes('password') && spec.hiddenFields.includes('oldPassword'));
  });

  it('builds a cluster under its zone and a host with derived zoneUuid, without storing the password', async () => {
    const z = await create('zones', { name: 'z1' });
    assert.equal(z.state, 'Enabled');
    const c = await create('clusters', { name: 'c1', zoneUuid: z.uuid });
    assert.equal(c.parentUuid, z.uuid);
    assert.equal(c.hypervisorType, 'KVM');
    const p = await prepareCreate(store, resourceKinds.hosts!, { name: 'h1', clusterUuid: c.uuid, managementIp: '192.168.1.10', password: 'secret' }, { ownerAccountUuid: ADMIN });
    assert.equal(p.resource.parentUuid, c.uuid);
    assert.equal(p.resource.zoneUuid, z.uuid);
    assert.equal(p.resource.status, 'Connecting');
    assert.equal(p.resource.sshPort, 22);
    assert.equal(p.resource.password, undefined);
    assert.deepEqual(p.secrets, { password: 'secret' });
  });

  it('names the bad field: schema, unknown field, missing reference, wrong kind, cross-field rules', async () => {
    const z = await create('zones', { name: 'z1' });
    await fails(prepareCreate(store, resourceKinds.zones!, { name: 'z', bogus: 1 }, { ownerAccountUuid: ADMIN }), 'INVALID_ARGUMENT', 'bogus');
    await fails(prepareCreate(store, resourceKinds.clusters!, { name: 'c' }, { ownerAccountUuid: ADMIN }), 'INVALID_ARGUMENT', 'zoneUuid');
    await fails(prepareCreate(store, resourceKinds.clusters!, { name: 'c', zoneUuid: randomUUID() }, { ownerAccountUuid: ADMIN }), 'INVALID_ARGUMENT', 'zoneUuid');
    const c = await create('clusters', { name: 'c1', zoneUuid: z.uuid });
    await fails(prepareCreate(store, resourceKinds.clusters!, { name: 'c', zoneUuid: c.uuid }, { ownerAccountUuid: ADMIN }), 'INVALID_ARGUMENT', 'zoneUuid');
    await fails(prepareCreate(store, resourceKinds['l2-networks']!, { name: 'l2', zoneUuid: z.uuid, physicalInterface: 'eth0', type: 'L2VlanNetwork' }, { ownerAccountUuid: ADMIN }), 'INVALID_ARGUMENT', 'vlan');
    await fails(prepareCreate(store, resourceKinds['instance-offerings']!, { name: 'o', cpuNum: 0, memorySize: 1 << 30 }, { ownerAccountUuid: ADMIN }), 'INVALID_ARGUMENT', 'cpuNum');
    await fails(prepareCreate(store, resourceKinds.images!, { name: 'i', url: 'http://x/i.iso', format: 'iso', mediaType: 'RootVolumeTemplate', backupStorageUuids: [randomUUID()] }, { ownerAccountUuid: ADMIN }), 'INVALID_ARGUMENT', 'mediaType');
    await fails(prepareCreate(store, resourceKinds['vm-instances']!, { name: 'v', imageUuid: randomUUID(), l3NetworkUuids: [randomUUID()], cpuNum: 1 }, { ownerAccountUuid: ADMIN }), 'INVALID_ARGUMENT', 'memorySize');
  });

  it('refuses a second L2 on the same interface/vlan in a zone', async () => {
    const z = await create('zones', { name: 'z1' });
    const a = await create('l2-networks', { name: 'a', zoneUuid: z.uuid, physicalInterface: 'eth0' });
    assert.equal(a.type, 'L2NoVlanNetwork');
    await create('l2-networks', { name: 'b', zoneUuid: z.uuid, physicalInterface: 'eth0', vlan: 10 });
    await fails(create('l2-networks', { name: 'c', zoneUuid: z.uuid, physicalInterface: 'eth0', vlan: 10 }), 'INVALID_ARGUMENT', 'physicalInterface');
    await fails(create('l2-networks', { name: 'd', zoneUuid: z.uuid, physicalInterface: 'eth0' }), 'INVALID_ARGUMENT', 'physicalInterface');
  });

  it('IP ranges: by CIDR or bounds, same netmask/gateway per L3, no overlap', async () => {
    assert.deepEqual(normalizeIpRange({ networkCidr: '10.1.0.0/28' }), { startIp: '10.1.0.2', endIp: '10.1.0.14', netmask: '255.255.255.240', gateway: '10.1.0.1', networkCidr: '10.1.0.0/28' });
    assert.throws(() => normalizeIpRange({ startIp: '10.0.0.10', endIp: '10.0.1.5', netmask: '255.255.255.0', gateway: '10.0.0.1' }), /startIp/);
    assert.throws(() => normalizeIpRange({ startIp: '10.0.0.10', endIp: '10.0.0.5', netmask: '255.255.255.0', gateway: '10.0.0.1' }), /endIp/);
    assert.throws(() => normalizeIpRange({ startIp: '10.0.0.10', endIp: '10.0.0.20', netmask: '255.0.255.0', gateway: '10.0.0.1' }), /netmask/);
    const z = await create('zones', { name: 'z1' });
    const l2 = await create('l2-networks', { name: 'l2', zoneUuid: z.uuid, physicalInterface: 'eth0' });
    const l3 = await create('l3-networks', { name: 'l3', l2NetworkUuid: l2.uuid });
    assert.equal(l3.zoneUuid, z.uuid);
    assert.deepEqual(l3.networkServices, ['DHCP', 'DNS', 'UserData']);
    const r1 = await create('ip-ranges', { l3NetworkUuid: l3.uuid, startIp: '10.0.0.10', endIp: '10.0.0.20', netmask: '255.255.255.0', gateway: '10.0.0.1' });
    assert.equal(r1.parentUuid, l3.uuid);
    assert.equal(r1.name, '10.0.0.10-10.0.0.20');
    await fails(create('ip-ranges', { l3NetworkUuid: l3.uuid, startIp: '10.0.0.20', endIp: '10.0.0.30', netmask: '255.255.255.0', gateway: '10.0.0.1' }), 'INVALID_ARGUMENT', 'startIp');
    await fails(create('ip-ranges', { l3NetworkUuid: l3.uuid, startIp: '10.0.0.30', endIp: '10.0.0.40', netmask: '255.255.255.0', gateway: '10.0.0.254' }), 'INVALID_ARGUMENT', 'gateway');
    await create('ip-ranges', { l3NetworkUuid: l3.uuid, startIp: '10.0.0.21', endIp: '10.0.0.30', netmask: '255.255.255.0', gateway: '10.0.0.1' });
  });

  it('VM create: offering copied, requested placement kept apart from the current host', async () => {
    const z = await create('zones', { name: 'z1' });
    const o = await create('instance-offerings', { name: 'small', cpuNum: 2, memorySize: 512 * 1024 * 1024 });
    const bs = await create('backup-storage', { name: 'bs', url: '/bs', hostname: '127.0.0.1' });
    const img = await create('images', { name: 'img', url: 'http://x/a.qcow2', format: 'qcow2', backupStorageUuids: [bs.uuid] });
    const l2 = await create('l2-networks', { name: 'l2', zoneUuid: z.uuid, physicalInterface: 'eth0' });
    const l3 = await create('l3-networks', { name: 'l3', l2NetworkUuid: l2.uuid });
    const vm = await create('vm-instances', { name: 'vm', instanceOfferingUuid: o.uuid, imageUuid: img.uuid, l3NetworkUuids: [l3.uuid], zoneUuid: z.uuid });
    assert.equal(vm.state, 'Created');
    assert.equal(vm.cpuNum, 2);
    assert.equal(vm.memorySize, 512 * 1024 * 1024);
    assert.equal(vm.defaultL3NetworkUuid, l3.uuid);
    assert.equal(vm.requestedZoneUuid, z.uuid);
    assert.equal(vm.zoneUuid, undefined);
    await fails(prepareCreate(store, resourceKinds['vm-instances']!, { name: 'vm', instanceOfferingUuid: o.uuid, imageUuid: img.uuid, l3NetworkUuids: [l3.uuid] }, { ownerAccountUuid: 'acc-b', canUse: (r) => r.kind !== 'image' }), 'INVALID_ARGUMENT', 'imageUuid');
  });

  it('a create prepared under a wider canUse, held to a narrower one (recheckUse): the error prepareCreate would give', async () => {
    const o = await create('instance-offerings', { name: 'small', cpuNum: 1, memorySize: 256 * 1024 * 1024 });
    const bs = await create('backup-storage', { name: 'bs', url: '/bs', hostname: '127.0.0.1' });
    const img = await create('images', { name: 'img', url: 'http://x/a.qcow2', format: 'qcow2', backupStorageUuids: [bs.uuid] });
    const z = await create('zones', { name: 'z1' });
    const l2 = await create('l2-networks', { name: 'l2', zoneUuid: z.uuid, physicalInterface: 'eth0' });
    const l3a = await create('l3-networks', { name: 'l3a', l2NetworkUuid: l2.uuid });
    const l3b = await create('l3-networks', { name: 'l3b', l2NetworkUuid: l2.uuid });
    const body = { name: 'vm', instanceOfferingUuid: o.uuid, imageUuid: img.uuid, l3NetworkUuids: [l3a.uuid, l3b.uuid] };
    const p = await prepareCreate(store, resourceKinds['vm-instances']!, body, { ownerAccountUuid: ADMIN, canUse: () => true });
    // every element of a list, with its index
    assert.deepEqual(p.used.filter((u) => u.kind !== 'l3-network').map((u) => [u.field, u.resource.uuid]).sort(), [['imageUuid', img.uuid], ['instanceOfferingUuid', o.uuid]]);
    assert.deepEqual(p.used.filter((u) => u.kind === 'l3-network').map((u) => [u.field, u.resource.uuid]), [['l3NetworkUuids.0', l3a.uuid], ['l3NetworkUuids.1', l3b.uuid]]);
    recheckUse(p, () => true);
    const narrow = (r: Resource): boolean => r.uuid !== l3b.uuid;
    await fails(() => recheckUse(p, narrow), 'INVALID_ARGUMENT', 'l3NetworkUuids.1');
    // the same error as preparing with the narrower rule
    await fails(prepareCreate(store, resourceKinds['vm-instances']!, body, { ownerAccountUuid: ADMIN, canUse: narrow }), 'INVALID_ARGUMENT', 'l3NetworkUuids.1');
  });

  it('validates updates and actions', () => {
    const vm = resourceKinds['vm-instances']!;
    assert.deepEqual(validateAction(vm, { stop: { type: 'cold' } }), { action: 'stop', params: { type: 'cold' } });
    assert.throws(() => validateAction(vm, { explode: {} }), (e: TStackError) => e.code === 'INVALID_ARGUMENT' && e.details?.field === 'explode');
    assert.throws(() => validateAction(vm, { start: {}, stop: {} }), /exactly one/);
    assert.throws(() => validateAction(vm, { stop: { type: 'hard' } }), (e: TStackError) => e.details?.field === 'type' && /must be one of: grace, cold/.test(e.message));
    assert.deepEqual(validateUpdate(resourceKinds.zones!, { name: 'n' }), { name: 'n' });
    assert.throws(() => validateUpdate(resourceKinds.zones!, { state: 'Disabled' }), (e: TStackError) => e.details?.field === 'state');
  });

  it('attachments: same zone, once, both directions, detach', async () => {
    const z = await create('zones', { name: 'z1' });
    const z2 = await create('zones', { name: 'z2' });
    const c = await create('clusters', { name: 'c1', zoneUuid: z.uuid });
    const ps = await create('primary-storage', { name: 'ps', zoneUuid: z.uuid, type: 'LocalStorage', url: '/var/lib/tstack/ps' });
    const ps2 = await create('primary-storage', { name: 'ps2', zoneUuid: z2.uuid, type: 'NFS', url: 'nfs://h/x' });
    await attach(store, 'cluster-primary-storage', c.uuid, ps.uuid, ADMIN);
    await fails(attach(store, 'cluster-primary-storage', c.uuid, ps.uuid, ADMIN), 'CONFLICT');
    await fails(attach(store, 'cluster-primary-storage', c.uuid, ps2.uuid, ADMIN), 'INVALID_ARGUMENT', 'primaryStorageUuid');
    await fails(attach(store, 'cluster-primary-storage', c.uuid, z.uuid, ADMIN), 'NOT_FOUND');
    assert.deepEqual(await attachedTo(store, 'cluster-primary-storage', c.uuid), [ps.uuid]);
    assert.deepEqual(await attachedFrom(store, 'cluster-primary-storage', ps.uuid), [c.uuid]);
    assert.equal(await isAttached(store, 'cluster-primary-storage', c.uuid, ps.uuid), true);
    assert.equal(await detach(store, 'cluster-primary-storage', c.uuid, ps.uuid), true);
    assert.equal(await detach(store, 'cluster-primary-storage', c.uuid, ps.uuid), false);
    assert.deepEqual(await attachedTo(store, 'cluster-primary-storage', c.uuid), []);
    const bs = await create('backup-storage', { name: 'bs', url: '/bs', hostname: '127.0.0.1' });
    await attach(store, 'zone-backup-storage', z.uuid, bs.uuid, ADMIN);
    await attach(store, 'zone-backup-storage', z2.uuid, bs.uuid, ADMIN);
    assert.deepEqual((await attachedFrom(store, 'zone-backup-storage', bs.uuid)).sort(), [z.uuid, z2.uuid].sort());
  });
});
