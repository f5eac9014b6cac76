// The inventory store contract, run against every backend (store-sqlite / store-redis).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { Filter, InventoryStore, Position, Query, Resource } from '../../../controller/store/types.js';
import { positionOf } from '../../../controller/store/query.js';
import { TStackError } from '../../../shared/errors.js';
import { claimRefused } from '../../../controller/store/claim-conflict.js';
import { ORDERED_FILTERS, churn, orderedAnswers, orderedVms, unpagedAnswers } from './ordered-pages.js';

export interface StoreFixture {
  /** A fresh, empty, initialised store. */
  open(): Promise<InventoryStore>;
  /** A second connection to the same inventory as the last open() (another controller). */
  openPeer(): Promise<InventoryStore>;
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<TStackError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TStackError, `expected TStackError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}

const ZONE_OWNER = 'acc-admin';

function host(n: number, extra: Partial<Resource> = {}): Resource {
  return {
    uuid: randomUUID(),
    kind: 'host',
    name: `host-${String(n).padStart(2, '0')}`,
    createDate: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    lastOpDate: new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString(),
    ownerAccountUuid: n % 2 === 0 ? 'acc-a' : 'acc-b',
    tags: n % 3 === 0 ? ['gpu', 'ssd'] : ['ssd'],
    parentUuid: n < 5 ? 'cluster-1' : 'cluster-2',
    state: n % 4 === 0 ? 'Disabled' : 'Enabled',
    managementIp: `10.0.0.${n}`,
    totalMemory: n * 1024,
    cpuNum: n,
    hasGpu: n % 3 === 0,
    ...(n === 7 ? {} : { hypervisorType: 'KVM' }),
    capacity: { cpu: n * 2 },
    ...extra,
  } as Resource;
}

export function storeSuite(fixture: StoreFixture): void {
  let store: InventoryStore;

  beforeEach(async () => {
    store = await fixture.open();
  });
  afterEach(async () => {
    await store.close();
  });

  describe('CRUD', () => {
    it('creates, reads, updates and deletes a resource', async () => {
      const uuid = randomUUID();
      const created = await store.create({ uuid, kind: 'zone', name: 'z1', ownerAccountUuid: ZONE_OWNER, state: 'Enabled', tags: [], createDate: undefined as unknown as string, lastOpDate: undefined as unknown as string, description: 'first' });
      assert.ok(created.createDate, 'createDate is set');
      assert.equal(created.lastOpDate, created.createDate);
      assert.deepEqual(created.tags, []);
      const got = await store.get(uuid);
      assert.deepEqual(got, created);

      const upd = await store.update(uuid, { name: 'z1-renamed', description: undefined, extra: 5 });
      assert.equal(upd.name, 'z1-renamed');
      assert.equal(upd.description, undefined);
      assert.ok(!('description' in upd), 'undefined deletes the field');
      assert.equal(upd.extra, 5);
      assert.ok(upd.lastOpDate > created.lastOpDate, 'lastOpDate bumped');
      assert.equal(upd.createDate, created.createDate);
      assert.deepEqual(await store.get(uuid), upd);

      const sneaky = await store.update(uuid, { uuid: 'other', kind: 'host' });
      assert.equal(sneaky.uuid, uuid);
      assert.equal(sneaky.kind, 'zone');

      assert.equal(await store.delete(uuid), true);
      assert.equal(await store.get(uuid), undefined);
      assert.equal(await store.delete(uuid), false);
    });

    it('refuses a duplicate uuid with CONFLICT and a missing one with NOT_FOUND', async () => {
      const r = host(1);
      await store.create(r);
      await rejectsWith(store.create({ ...r, name: 'again' }), 'CONFLICT');
      assert.equal((await store.get(r.uuid))?.name, 'host-01');
      await rejectsWith(store.update(randomUUID(), { name: 'x' }), 'NOT_FOUND');
      await rejectsWith(store.transition(randomUUID(), 'A', 'B'), 'NOT_FOUND');
    });

    it('keeps indexes right when parent, state and owner change', async () => {
      const r = await store.create(host(1));
      await store.update(r.uuid, { parentUuid: 'cluster-9', ownerAccountUuid: 'acc-z' });
      assert.deepEqual(await store.byParent('host', 'cluster-1'), []);
      assert.deepEqual((await store.byParent('host', 'cluster-9')).map((h) => h.uuid), [r.uuid]);
      assert.equal((await store.list({ kind: 'host', ownerAccountUuid: 'acc-z' })).total, 1);
      assert.equal((await store.list({ kind: 'host', ownerAccountUuid: 'acc-b' })).total, 0);
      await store.update(r.uuid, { parentUuid: undefined });
      assert.deepEqual(await store.byParent('host', 'cluster-9'), []);
      await store.delete(r.uuid);
      assert.deepEqual(await store.byState('host', 'Enabled'), []);
      assert.equal((await store.list({ kind: 'host' })).total, 0);
    });
  });

  describe('queries', () => {
    let hosts: Resource[];
    beforeEach(async () => {
      hosts = [];
      for (let n = 1; n <= 12; n++) hosts.push(await store.create(host(n)));
      await store.create({ ...host(99), kind: 'zone', name: 'not-a-host' });
    });
    const names = async (filters: Filter[], extra: { sort?: { field: string; dir: 'asc' | 'desc' }; limit?: number; start?: number; owner?: string } = {}): Promise<string[]> => {
      const q = { kind: 'host', filters, ...(extra.sort ? { sort: extra.sort } : {}), ...(extra.limit !== undefined ? { limit: extra.limit } : {}), ...(extra.start !== undefined ? { start: extra.start } : {}), ...(extra.owner ? { ownerAccountUuid: extra.owner } : {}) };
      return (await store.list(q)).items.map((h) => h.name);
    };
    const hn = (...ns: number[]): string[] => ns.map((n) => `host-${String(n).padStart(2, '0')}`);

    it('= and != on columns, JSON fields, numbers and booleans', async () => {
      assert.deepEqual(await names([{ field: 'name', op: '=', value: 'host-03' }]), hn(3));
      assert.deepEqual(await names([{ field: 'managementIp', op: '=', value: '10.0.0.5' }]), hn(5));
      assert.deepEqual(await names([{ field: 'cpuNum', op: '=', value: 6 }]), hn(6));
      assert.deepEqual(await names([{ field: 'cpuNum', op: '=', value: '6' }]), hn(6), 'numeric strings compare as numbers');
      assert.deepEqual(await names([{ field: 'hasGpu', op: '=', value: true }]), hn(3, 6, 9, 12));
      assert.deepEqual(await names([{ field: 'state', op: '!=', value: 'Enabled' }]), hn(4, 8, 12));
      assert.deepEqual(await names([{ field: 'hypervisorType', op: '=', value: null }]), hn(7), 'missing field is null');
      assert.deepEqual(await names([{ field: 'hypervisorType', op: '!=', value: null }]), hn(1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12));
      assert.deepEqual(await names([{ field: 'hypervisorType', op: '!=', value: 'KVM' }]), [], 'a missing field never matches !=');
      assert.deepEqual(await names([{ field: 'capacity.cpu', op: '=', value: 8 }]), hn(4), 'dotted nested field');
    });

    it('> < >= <= with numbers, numeric strings and text', async () => {
      assert.deepEqual(await names([{ field: 'cpuNum', op: '>', value: 10 }]), hn(11, 12));
      assert.deepEqual(await names([{ field: 'cpuNum', op: '>=', value: '10' }]), hn(10, 11, 12));
      assert.deepEqual(await names([{ field: 'totalMemory', op: '<', value: 2048 }]), hn(1));
      assert.deepEqual(await names([{ field: 'totalMemory', op: '<=', value: 2048 }]), hn(1, 2));
      assert.deepEqual(await names([{ field: 'name', op: '>', value: 'host-10' }]), hn(11, 12));
      assert.deepEqual(await names([{ field: 'createDate', op: '<', value: hosts[2]!.createDate }]), hn(1, 2));
      assert.deepEqual(await names([{ field: 'cpuNum', op: '>', value: 3 }, { field: 'cpuNum', op: '<', value: 6 }]), hn(4, 5), 'filters are ANDed');
    });

    it('~= (like) and ?= (in)', async () => {
      assert.deepEqual(await names([{ field: 'name', op: '~=', value: 'host-1%' }]), hn(10, 11, 12));
      assert.deepEqual(await names([{ field: 'name', op: '~=', value: 'HOST-0_' }]), hn(1, 2, 3, 4, 5, 6, 7, 8, 9), 'like is case-insensitive, _ is one char');
      assert.deepEqual(await names([{ field: 'managementIp', op: '~=', value: '%.1' }]), hn(1));
      assert.deepEqual(await names([{ field: 'name', op: '?=', value: ['host-02', 'host-05', 'nope'] }]), hn(2, 5));
      assert.deepEqual(await names([{ field: 'cpuNum', op: '?=', value: ['3', 4, 'x'] }]), hn(3, 4));
      assert.deepEqual(await names([{ field: 'uuid', op: '?=', value: [hosts[7]!.uuid] }]), hn(8));
      assert.deepEqual(await names([{ field: 'name', op: '?=', value: [] }]), []);
    });

    it('indexed reference fields (hostUuid, status…) filter like any other field', async () => {
      for (const h of hosts.slice(0, 6)) await store.update(h.uuid, { hostUuid: `hv-${h.cpuNum as number % 3}`, status: h.cpuNum === 1 ? 'Connected' : 'Disconnected' });
      assert.deepEqual(await names([{ field: 'hostUuid', op: '=', value: 'hv-1' }]), hn(1, 4));
      assert.deepEqual(await names([{ field: 'hostUuid', op: '?=', value: ['hv-1', 'hv-2'] }]), hn(1, 2, 4, 5));
      assert.deepEqual(await names([{ field: 'hostUuid', op: '!=', value: 'hv-1' }]), hn(2, 3, 5, 6));
      assert.deepEqual(await names([{ field: 'hostUuid', op: '=', value: null }]), hn(7, 8, 9, 10, 11, 12));
      assert.deepEqual(await names([{ field: 'status', op: '=', value: 'Connected' }, { field: 'hostUuid', op: '~=', value: 'hv-%' }]), hn(1));
      assert.deepEqual(await names([{ field: 'hostUuid', op: '=', value: 'hv-1' }], { sort: { field: 'hostUuid', dir: 'desc' } }), hn(1, 4));
      // the index follows updates, transitions and deletes
      await store.update(hosts[0]!.uuid, { hostUuid: 'hv-2' });
      await store.transition(hosts[3]!.uuid, 'Disabled', 'Enabled', { hostUuid: 'hv-0' });
      assert.deepEqual(await names([{ field: 'hostUuid', op: '=', value: 'hv-1' }]), []);
      assert.deepEqual(await names([{ field: 'hostUuid', op: '=', value: 'hv-2' }]), hn(1, 2, 5));
      await store.delete(hosts[1]!.uuid);
      assert.deepEqual(await names([{ field: 'hostUuid', op: '=', value: 'hv-2' }, { field: 'state', op: '=', value: 'Enabled' }]), hn(1, 5));
      assert.deepEqual(await names([{ field: 'hostUuid', op: '=', value: 'hv-0' }, { field: 'state', op: '=', value: 'Enabled' }], { owner: 'acc-a' }), hn(4, 6));
    });

    it('= / != on an array field mean contains / does not contain', async () => {
      assert.deepEqual(await names([{ field: 'tags', op: '=', value: 'gpu' }]), hn(3, 6, 9, 12));
      assert.deepEqual(await names([{ field: 'tags', op: '!=', value: 'gpu' }]), hn(1, 2, 4, 5, 7, 8, 10, 11));
    });

    it('sort, limit, start and total', async () => {
      assert.deepEqual(await names([], { sort: { field: 'cpuNum', dir: 'desc' }, limit: 3 }), hn(12, 11, 10));
      assert.deepEqual(await names([], { sort: { field: 'cpuNum', dir: 'asc' }, limit: 2, start: 4 }), hn(5, 6));
      assert.deepEqual(await names([], { sort: { field: 'hypervisorType', dir: 'asc' }, limit: 2 }), hn(7, 1), 'nulls first ascending, then createDate');
      assert.deepEqual(await names([], { sort: { field: 'state', dir: 'desc' }, limit: 4 }), hn(1, 2, 3, 5), 'ties ordered by createDate');
      const page = await store.list({ kind: 'host', filters: [{ field: 'state', op: '=', value: 'Enabled' }], limit: 2, start: 1 });
      assert.equal(page.total, 9);
      assert.equal(page.items.length, 2);
      const none = await store.list({ kind: 'host', limit: 0 });
      assert.equal(none.total, 12);
      assert.deepEqual(none.items, []);
      assert.deepEqual(await names([], { start: 11 }), hn(12));
    });

    it('keyset pages (after = the last item) walk every order exactly like one unpaged list', async () => {
      // three more hosts in host-05's millisecond: ties ordered by uuid
      for (const n of [21, 22, 23]) await store.create(host(n, { createDate: hosts[4]!.createDate, state: 'Enabled', parentUuid: 'cluster-2' }));
      const sorts: Array<Query['sort']> = [undefined, { field: 'createDate', dir: 'asc' }, { field: 'cpuNum', dir: 'desc' }, { field: 'hypervisorType', dir: 'asc' }, { field: 'hypervisorType', dir: 'desc' }, { field: 'state', dir: 'desc' }, { field: 'hasGpu', dir: 'asc' }, { field: 'name', dir: 'asc' }];
      const filterSets: Filter[][] = [[], [{ field: 'state', op: '=', value: 'Enabled' }], [{ field: 'parentUuid', op: '=', value: 'cluster-2' }, { field: 'state', op: '=', value: 'Enabled' }], [{ field: 'cpuNum', op: '>', value: 3 }]];
      for (const sort of sorts) {
        for (const filters of filterSets) {
          const base: Query = { kind: 'host', filters, ...(sort ? { sort } : {}) };
          const all = (await store.list(base)).items.map((h) => h.uuid);
          assert.equal((await store.list({ ...base, limit: 0 })).total, all.length, `count of ${JSON.stringify(filters)}`);
          for (const size of [1, 4]) {
            const seen: string[] = [];
            let after: Query['after'];
            for (let i = 0; i < 30; i++) {
              const page = await store.list({ ...base, limit: size, skipTotal: true, ...(after ? { after } : {}) });
              assert.equal(page.total, -1, 'no count with skipTotal');
              seen.push(...page.items.map((h) => h.uuid));
              if (page.items.length < size) break;
              after = positionOf(page.items.at(-1)!, sort);
            }
            assert.deepEqual(seen, all, `sort ${JSON.stringify(sort)}, filters ${JSON.stringify(filters)}, pages of ${size}`);
          }
        }
      }
      const counted = await store.list({ kind: 'host', limit: 2, after: positionOf(hosts[0]!), filters: [{ field: 'state', op: '=', value: 'Enabled' }] });
      assert.equal(counted.total, 12, 'the total ignores the position');
      assert.deepEqual(counted.items.map((h) => h.name), hn(2, 3));
      await rejectsWith(store.list({ kind: 'host', after: { createDate: 5, uuid: 'x' } as unknown as Position }), 'INVALID_ARGUMENT');
      await rejectsWith(store.list({ kind: 'host', sort: { field: 'name', dir: 'asc' }, after: { sort: { a: 1 }, createDate: '', uuid: '' } as unknown as Position }), 'INVALID_ARGUMENT');
    });

    it('owner restriction, byParent and byState', async () => {
      assert.deepEqual(await names([], { owner: 'acc-a' }), hn(2, 4, 6, 8, 10, 12));
      assert.deepEqual(await names([{ field: 'state', op: '=', value: 'Disabled' }], { owner: 'acc-b' }), []);
      assert.deepEqual((await store.byParent('host', 'cluster-1')).map((h) => h.name), hn(1, 2, 3, 4));
      assert.deepEqual((await store.byParent('zone', 'cluster-1')).map((h) => h.name), []);
      assert.deepEqual((await store.byState('host', 'Disabled')).map((h) => h.name), hn(4, 8, 12));
      assert.deepEqual(await names([{ field: 'parentUuid', op: '=', value: 'cluster-2' }, { field: 'state', op: '=', value: 'Disabled' }]), hn(8, 12));
    });

    it('rejects bad field names and malformed filters with INVALID_ARGUMENT', async () => {
      await rejectsWith(store.list({ kind: 'host', filters: [{ field: "name') OR 1=1 --", op: '=', value: 'x' }] }), 'INVALID_ARGUMENT');
      await rejectsWith(store.list({ kind: 'host', sort: { field: 'name;drop', dir: 'asc' } }), 'INVALID_ARGUMENT');
      await rejectsWith(store.list({ kind: 'host', filters: [{ field: 'name', op: '?=', value: 'x' }] }), 'INVALID_ARGUMENT');
      await rejectsWith(store.list({ kind: 'host', filters: [{ field: 'name', op: '<>' as '=', value: 'x' }] }), 'INVALID_ARGUMENT');
    });
  });

  describe('ordered pages by createDate', () => {
    it('asc and desc, offsets and cursors, dense and sparse filters: the pages of one unpaged list, after updates and deletes too', async function () {
      this.timeout(60_000);
      const vms = orderedVms('suite');
      await store.createMany(vms);
      const check = async (when: string): Promise<void> => {
        const got = await orderedAnswers(store);
        const want = await unpagedAnswers(store);
        for (const k of Object.keys(want)) assert.deepEqual(got[k], want[k], `${when}: ${k}`);
      };
      await check('as created');
      // the cases mean something: the sparse pair matches a few, the moved and paused VMs exist
      const count = async (filters: Filter[]): Promise<number> => (await store.list({ kind: 'vm-instance', filters, limit: 0 })).total;
      assert.equal(await count(ORDERED_FILTERS[5]!.filters), 6);
      await churn(store, vms);
      assert.equal(await count(ORDERED_FILTERS[3]!.filters), 27);
      assert.ok((await count(ORDERED_FILTERS[4]!.filters)) > 0);
      await check('after updates and deletes');
    });
  });

  describe('createMany', () => {
    it('inserts all in one write, or none when one uuid exists (CONFLICT naming it)', async () => {
      const made = await store.createMany([host(1, { hostUuid: 'hv-1' }), host(2, { hostUuid: 'hv-1' })]);
      assert.equal(made.length, 2);
      assert.deepEqual(made.map((h) => h.tags), [['ssd'], ['ssd']]);
      const dup = made[1]!;
      const fresh = host(3, { hostUuid: 'hv-1' });
      const e = await rejectsWith(store.createMany([fresh, { ...dup, name: 'again' }]), 'CONFLICT');
      assert.equal(e.details?.uuid, dup.uuid);
      assert.equal(await store.get(fresh.uuid), undefined, 'nothing of a refused batch is written');
      assert.deepEqual((await store.list({ kind: 'host', filters: [{ field: 'hostUuid', op: '=', value: 'hv-1' }] })).items.map((h) => h.name), ['host-01', 'host-02']);
      assert.deepEqual(await store.createMany([]), []);
    });
  });

  describe('batch', () => {
    it('writes resources and docs together, a later write on an earlier one, with the indexes', async () => {
      const h = await store.create(host(1, { hostUuid: 'hv-1' }));
      const vm = { ...host(2), kind: 'vm-instance', state: 'Starting' };
      const out = await store.batch([
        { op: 'putDoc', collection: 'journals', id: 'j1', doc: { step: 1 } },
        { op: 'create', resource: vm },
        { op: 'update', uuid: vm.uuid, patch: { hostUuid: 'hv-1' } },
        { op: 'update', uuid: h.uuid, patch: { state: 'Maintenance', note: 'x' } },
        { op: 'deleteDoc', collection: 'journals', id: 'gone' },
      ]);
      assert.equal(out.length, 5);
      assert.equal(out[0], undefined);
      assert.equal(out[1]?.hostUuid, undefined, 'each write returns its own result');
      assert.equal(out[2]?.hostUuid, 'hv-1');
      assert.equal(out[3]?.note, 'x');
      assert.deepEqual(await store.getDoc('journals', 'j1'), { step: 1 });
      assert.equal((await store.get(vm.uuid))?.hostUuid, 'hv-1');
      assert.deepEqual((await store.byState('vm-instance', 'Starting')).map((v) => v.uuid), [vm.uuid]);
      assert.deepEqual((await store.list({ kind: 'vm-instance', filters: [{ field: 'hostUuid', op: '=', value: 'hv-1' }], limit: 10 })).items.map((v) => v.uuid), [vm.uuid]);
      assert.deepEqual((await store.byState('host', 'Maintenance')).map((x) => x.uuid), [h.uuid]);
      assert.deepEqual(await store.byState('host', h.state!), []);
      assert.deepEqual(await store.batch([]), []);
    });

    it('writes nothing when one write fails (CONFLICT, NOT_FOUND)', async () => {
      const h = await store.create(host(1));
      const fresh = host(2);
      const e = await rejectsWith(store.batch([{ op: 'putDoc', collection: 'journals', id: 'j2', doc: 1 }, { op: 'create', resource: fresh }, { op: 'create', resource: { ...h, name: 'again' } }]), 'CONFLICT');
      assert.equal(e.details?.uuid, h.uuid);
      await rejectsWith(store.batch([{ op: 'update', uuid: h.uuid, patch: { name: 'renamed' } }, { op: 'update', uuid: randomUUID(), patch: { name: 'x' } }]), 'NOT_FOUND');
      assert.equal(await store.get(fresh.uuid), undefined);
      assert.equal(await store.getDoc('journals', 'j2'), undefined);
      assert.equal((await store.get(h.uuid))?.name, h.name);
    });

    it('claims with the other writes: granted, again by the same owner, refused by another (CONFLICT, nothing written)', async () => {
      const vm = { ...host(1), kind: 'vm-instance' };
      const out = await store.batch([
        { op: 'claim', namespace: 'ip:l3', key: '10.0.0.2', owner: 'nic-1' },
        { op: 'create', resource: vm },
        { op: 'claim', namespace: 'mac', key: 'fa:00', owner: 'nic-1' },
        { op: 'putDoc', collection: 'journals', id: 'j1', doc: { n: 1 } },
      ]);
      assert.deepEqual([out[0], out[2], out[3]], [undefined, undefined, undefined]);
      assert.equal(out[1]?.uuid, vm.uuid);
      assert.deepEqual(await store.claims('ip:l3'), [{ key: '10.0.0.2', owner: 'nic-1' }]);
      assert.deepEqual(await store.claims('mac'), [{ key: 'fa:00', owner: 'nic-1' }]);
      // a resumed step claims again what its owner holds: granted, as store.claim
      await store.batch([{ op: 'claim', namespace: 'ip:l3', key: '10.0.0.2', owner: 'nic-1' }, { op: 'update', uuid: vm.uuid, patch: { n: 2 } }]);
      assert.equal((await store.get(vm.uuid))?.n, 2);
      assert.equal(await store.claim('ip:l3', '10.0.0.2', 'nic-2'), false, 'store.claim agrees');
      // held by another owner: the whole batch is refused, the claim before it included
      const fresh = host(2);
      const e = await rejectsWith(
        store.batch([
          { op: 'claim', namespace: 'ip:l3', key: '10.0.0.3', owner: 'nic-2' },
          { op: 'create', resource: fresh },
          { op: 'update', uuid: vm.uuid, patch: { n: 3 } },
          { op: 'putDoc', collection: 'journals', id: 'j2', doc: 1 },
          { op: 'claim', namespace: 'mac', key: 'fa:00', owner: 'nic-2' },
        ]),
        'CONFLICT',
      );
      assert.deepEqual(claimRefused(e), { namespace: 'mac', key: 'fa:00' });
      assert.equal(e.details?.holder, 'nic-1');
      assert.equal(await store.get(fresh.uuid), undefined);
      assert.equal((await store.get(vm.uuid))?.n, 2);
      assert.equal(await store.getDoc('journals', 'j2'), undefined);
      assert.deepEqual(await store.claims('ip:l3'), [{ key: '10.0.0.2', owner: 'nic-1' }]);
      assert.deepEqual(await store.claims('mac'), [{ key: 'fa:00', owner: 'nic-1' }]);
      // another batch conflict is not a claim's
      assert.equal(claimRefused(await rejectsWith(store.batch([{ op: 'create', resource: vm }]), 'CONFLICT')), undefined);
    });

    it('claims and releases in order: a later one sees an earlier one; a release by a non-owner does nothing', async () => {
      await store.claim('ip:l3', 'a', 'x');
      await store.claim('ip:l3', 'b', 'y');
      await store.batch([
        { op: 'release', namespace: 'ip:l3', key: 'a', owner: 'x' },
        { op: 'claim', namespace: 'ip:l3', key: 'a', owner: 'z' },
        { op: 'release', namespace: 'ip:l3', key: 'b', owner: 'not-y' },
        { op: 'claim', namespace: 'ip:l3', key: 'c', owner: 'z' },
        { op: 'release', namespace: 'ip:l3', key: 'c' },
      ]);
      assert.deepEqual(await store.claims('ip:l3'), [
        { key: 'a', owner: 'z' },
        { key: 'b', owner: 'y' },
      ]);
      // claimed twice in one batch by two owners: refused
      const e = await rejectsWith(store.batch([{ op: 'claim', namespace: 'mac', key: 'm', owner: 'p' }, { op: 'claim', namespace: 'mac', key: 'm', owner: 'q' }]), 'CONFLICT');
      assert.deepEqual(claimRefused(e), { namespace: 'mac', key: 'm' });
      assert.deepEqual(await store.claims('mac'), []);
      // a release then the claim in one batch takes it from another owner
      await store.batch([{ op: 'release', namespace: 'ip:l3', key: 'b' }, { op: 'claim', namespace: 'ip:l3', key: 'b', owner: 'z' }]);
      assert.deepEqual((await store.claims('ip:l3')).map((c) => c.owner), ['z', 'z']);
    });

    it('20 concurrent batches claiming one key from two connections: one wins, the others write nothing', async () => {
      const peer = await fixture.openPeer();
      try {
        const res = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) =>
            (i % 2 ? peer : store).batch([
              { op: 'putDoc', collection: 'c', id: `d${i}`, doc: i },
              { op: 'claim', namespace: 'mac', key: '52:54:00:00:00:01', owner: `owner-${i}` },
            ]),
          ),
        );
        const won = res.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        assert.equal(won.length, 1, JSON.stringify(res.map((r) => r.status)));
        for (const r of res) if (r.status === 'rejected') assert.deepEqual(claimRefused(r.reason), { namespace: 'mac', key: '52:54:00:00:00:01' });
        assert.deepEqual(await store.claims('mac'), [{ key: '52:54:00:00:00:01', owner: `owner-${won[0]}` }]);
        assert.deepEqual((await store.listDocs('c')).map((d) => d.id), [`d${won[0]}`]);
      } finally {
        await peer.close();
      }
    });

    it('concurrent batches and updates of one record from two connections lose no write', async () => {
      const peer = await fixture.openPeer();
      try {
        const r = await store.create({ ...host(1), n: 0 });
        const bump = (s: InventoryStore, i: number): Promise<unknown> => s.batch([{ op: 'update', uuid: r.uuid, patch: { [`f${i}`]: i } }, { op: 'putDoc', collection: 'c', id: `d${i}`, doc: i }]);
        await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? bump(peer, i) : store.update(r.uuid, { [`f${i}`]: i }))));
        const got = await store.get(r.uuid);
        for (let i = 0; i < 10; i++) assert.equal(got?.[`f${i}`], i, `f${i}`);
        assert.equal((await store.listDocs('c')).length, 5);
      } finally {
        await peer.close();
      }
    });
  });

  describe('transition in a batch', () => {
    it('moves state only from an expected state; one from another state refuses the whole batch', async () => {
      const [v1, v2] = [await store.create({ ...host(1), kind: 'vm-instance', state: 'Stopped' }), await store.create({ ...host(2), kind: 'vm-instance', state: 'Running' })];
      const e = await rejectsWith(
        store.batch([
          { op: 'transition', uuid: v1.uuid, from: 'Stopped', to: 'Starting', patch: { n: 1 } },
          { op: 'putDoc', collection: 'journals', id: 'jt', doc: 1 },
          { op: 'transition', uuid: v2.uuid, from: 'Stopped', to: 'Starting' },
        ]),
        'CONFLICT',
      );
      assert.equal(e.details?.state, 'Running');
      assert.equal((await store.get(v1.uuid))?.state, 'Stopped', 'nothing of a refused batch is written');
      assert.equal(await store.getDoc('journals', 'jt'), undefined);
      await rejectsWith(store.batch([{ op: 'transition', uuid: randomUUID(), from: 'Stopped', to: 'Starting' }]), 'NOT_FOUND');
      const out = await store.batch([
        { op: 'transition', uuid: v1.uuid, from: ['Created', 'Stopped'], to: 'Starting', patch: { n: 1 } },
        { op: 'transition', uuid: v1.uuid, from: 'Starting', to: 'Running' },
        { op: 'transition', uuid: v2.uuid, from: 'Running', to: 'Stopping' },
      ]);
      assert.deepEqual(out.map((r) => r?.state), ['Starting', 'Running', 'Stopping'], 'a later transition sees an earlier one');
      assert.equal((await store.get(v1.uuid))?.n, 1);
      assert.deepEqual((await store.byState('vm-instance', 'Running')).map((v) => v.uuid), [v1.uuid]);
      assert.deepEqual((await store.byState('vm-instance', 'Stopping')).map((v) => v.uuid), [v2.uuid]);
      assert.deepEqual(await store.byState('vm-instance', 'Stopped'), []);
    });

    it('exactly one of 20 concurrent batches transitioning one record wins; the others write nothing (two connections)', async () => {
      const peer = await fixture.openPeer();
      try {
        const vm = await store.create({ ...host(1), kind: 'vm-instance', state: 'Stopped' });
        const res = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) =>
            (i % 2 ? peer : store).batch([
              { op: 'putDoc', collection: 'c', id: `t${i}`, doc: i },
              { op: 'transition', uuid: vm.uuid, from: 'Stopped', to: 'Starting', patch: { winner: i } },
            ]),
          ),
        );
        const won = res.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        assert.equal(won.length, 1, JSON.stringify(res.map((r) => r.status)));
        for (const r of res) if (r.status === 'rejected') assert.equal((r.reason as TStackError).code, 'CONFLICT');
        assert.equal((await store.get(vm.uuid))?.winner, won[0]);
        assert.deepEqual((await store.listDocs('c')).map((d) => d.id), [`t${won[0]}`]);
      } finally {
        await peer.close();
      }
    });
  });

  describe('transition', () => {
    it('moves state only from an expected state, with a patch', async () => {
      const vm = await store.create({ ...host(1), kind: 'vm-instance', state: 'Stopped' });
      const t = await store.transition(vm.uuid, ['Stopped', 'Created'], 'Starting', { hostUuid: 'h1' });
      assert.equal(t.state, 'Starting');
      assert.equal(t.hostUuid, 'h1');
      const e = await rejectsWith(store.transition(vm.uuid, 'Stopped', 'Starting'), 'CONFLICT');
      assert.equal(e.details?.state, 'Starting');
      assert.deepEqual((await store.byState('vm-instance', 'Starting')).map((v) => v.uuid), [vm.uuid]);
      assert.deepEqual(await store.byState('vm-instance', 'Stopped'), []);
    });

    it('exactly one of 20 concurrent transitions wins (two connections)', async () => {
      const peer = await fixture.openPeer();
      try {
        const vm = await store.create({ ...host(1), kind: 'vm-instance', state: 'Stopped' });
        const results = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) => (i % 2 ? peer : store).transition(vm.uuid, 'Stopped', 'Starting', { winner: i })),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        assert.equal(won.length, 1, 'one winner');
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as TStackError).code, 'CONFLICT');
        const final = await store.get(vm.uuid);
        assert.equal(final?.winner, (won[0] as PromiseFulfilledResult<Resource>).value.winner);
      } finally {
        await peer.close();
      }
    });

    it('concurrent updates of different fields are all kept', async () => {
      const peer = await fixture.openPeer();
      try {
        const r = await store.create(host(1));
        await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? peer : store).update(r.uuid, { [`f${i}`]: i })));
        const final = (await store.get(r.uuid))!;
        for (let i = 0; i < 20; i++) assert.equal(final[`f${i}`], i, `f${i} kept`);
      } finally {
        await peer.close();
      }
    });
  });

  describe('claims', () => {
    it('set-if-absent, idempotent for the same owner, release by owner', async () => {
      assert.equal(await store.claim('ip:l3', '10.0.0.2', 'nic-1'), true);
      assert.equal(await store.claim('ip:l3', '10.0.0.2', 'nic-2'), false);
      assert.equal(await store.claim('ip:l3', '10.0.0.2', 'nic-1'), true, 'same owner again');
      assert.equal(await store.claim('ip:other', '10.0.0.2', 'nic-2'), true, 'namespaces are separate');
      await store.release('ip:l3', '10.0.0.2', 'nic-2');
      assert.deepEqual(await store.claims('ip:l3'), [{ key: '10.0.0.2', owner: 'nic-1' }], 'release by a non-owner does nothing');
      await store.release('ip:l3', '10.0.0.2', 'nic-1');
      assert.deepEqual(await store.claims('ip:l3'), []);
      await store.claim('ip:l3', 'b', 'x');
      await store.claim('ip:l3', 'a', 'y');
      await store.release('ip:l3', 'b');
      assert.deepEqual(await store.claims('ip:l3'), [{ key: 'a', owner: 'y' }]);
    });

    it('50 concurrent claims of one key from two connections: one winner', async () => {
      const peer = await fixture.openPeer();
      try {
        const res = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? peer : store).claim('mac', '52:54:00:00:00:01', `owner-${i}`)));
        assert.equal(res.filter(Boolean).length, 1);
        const c = await store.claims('mac');
        assert.equal(c.length, 1);
        assert.equal(c[0]!.owner, `owner-${res.indexOf(true)}`);
      } finally {
        await peer.close();
      }
    });
  });

  describe('quota ledger', () => {
    it('reserve sets per (holder, name), checks only increases, covers from a provisional holder, unreserve ends a holder', async () => {
      const sc = `acct-${Math.random().toString(36).slice(2)}`;
      const limits = { n: 3, bytes: 100 };
      assert.equal(await store.reserve({ scope: sc, holder: 'a', amounts: { n: 1, bytes: 60 }, limits }), undefined);
      assert.equal(await store.reserve({ scope: sc, holder: 'a', amounts: { n: 1, bytes: 60 }, limits }), undefined, 'the same again: no change');
      assert.deepEqual(await store.reserve({ scope: sc, holder: 'b', amounts: { n: 1, bytes: 50 }, limits }), { name: 'bytes', limit: 100, used: 60, requested: 50 });
      assert.deepEqual(await store.reserved(sc), { n: 1, bytes: 60 }, 'a refused reservation changes nothing');
      // a create in flight holds 'pending'; the resource it makes takes it over without counting twice
      assert.equal(await store.reserve({ scope: sc, holder: 'pending', amounts: { n: 2, bytes: 40 }, limits }), undefined);
      assert.equal(await store.reserve({ scope: sc, holder: 'c', amounts: { n: 1, bytes: 40 }, limits, from: 'pending' }), undefined);
      assert.deepEqual(await store.reserved(sc), { n: 3, bytes: 100 });
      assert.deepEqual((await store.holders(sc)).find((h) => h.holder === 'pending')?.amounts, { n: 1, bytes: 0 });
      // unchecked (no limits): what already exists is charged whatever the limits
      assert.equal(await store.reserve({ scope: sc, holder: 'd', amounts: { n: 1 } }), undefined);
      await store.unreserve(sc, 'pending');
      await store.unreserve(sc, 'd');
      assert.deepEqual(await store.reserved(sc), { n: 2, bytes: 100 });
      assert.deepEqual((await store.holders(sc)).map((h) => h.holder), ['a', 'c']);
      assert.equal(await store.reserve({ scope: sc, holder: 'a', amounts: { bytes: 10 }, limits }), undefined, 'lowering is never refused');
      assert.deepEqual(await store.reserved(sc), { n: 2, bytes: 50 });
    });

    it('20 concurrent reservations from two connections against a limit of 5: exactly 5', async () => {
      const peer = await fixture.openPeer();
      const sc = `acct-${Math.random().toString(36).slice(2)}`;
      try {
        const res = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? peer : store).reserve({ scope: sc, holder: `h${i}`, amounts: { n: 1 }, limits: { n: 5 } })));
        assert.equal(res.filter((r) => r === undefined).length, 5);
        assert.deepEqual(await store.reserved(sc), { n: 5 });
      } finally {
        await peer.close();
      }
    });
  });

  describe('docs', () => {
    it('put, get, list, delete', async () => {
      await store.putDoc('journal', 'b', { step: 2, data: { ip: '10.0.0.2' } });
      await store.putDoc('journal', 'a', { step: 1 });
      await store.putDoc('journal', 'a', { step: 3 });
      await store.putDoc('other', 'a', 'x');
      assert.deepEqual(await store.getDoc('journal', 'a'), { step: 3 });
      assert.deepEqual(await store.listDocs('journal'), [
        { id: 'a', doc: { step: 3 } },
        { id: 'b', doc: { step: 2, data: { ip: '10.0.0.2' } } },
      ]);
      await store.deleteDoc('journal', 'a');
      assert.equal(await store.getDoc('journal', 'a'), undefined);
      assert.deepEqual((await store.listDocs('journal')).map((d) => d.id), ['b']);
      assert.deepEqual(await store.listDocs('nothing'), []);
    });
  });
}
