// An InventoryStore that publishes resource.created/updated/deleted on the event bus after
// every successful write, so that workflows, allocators and the API all feed the SSE stream
// without thinking about it. It also counts every store call (by operation, and by kind,
// collection or namespace), so a test can pin what one VM create costs and the scale bench can
// print store calls per VM (storeOpCounts). A batch counts each of its writes as the single
// call would ('update:vm-instance'…), plus 'batch' and 'batched' (its writes): the commits are
// the writes less 'batched' plus 'batch'.
import type { InventoryStore, Query, QueryResult, Resource, StoreWrite, ViewPage } from '../store/types.js';
import { LEASE_KIND } from '../workflow/lease.js';
import type { EventBus, ResourceEventType } from './bus.js';

export type StoreOpCounts = Record<string, number>;

const counters = new WeakMap<InventoryStore, StoreOpCounts>();

/** A copy of the calls made through an observed store so far ('get', 'get:host', 'putDoc:jobs'…); undefined for another store. */
export function storeOpCounts(s: InventoryStore): StoreOpCounts | undefined {
  const c = counters.get(s);
  return c ? { ...c } : undefined;
}

/** b − a per key (keys that did not move are left out). */
export function diffOpCounts(a: StoreOpCounts, b: StoreOpCounts): StoreOpCounts {
  const out: StoreOpCounts = {};
  for (const [k, v] of Object.entries(b)) if (v !== (a[k] ?? 0)) out[k] = v - (a[k] ?? 0);
  return out;
}

export function observedStore(inner: InventoryStore, bus: EventBus): InventoryStore {
  const counts: StoreOpCounts = {};
  const count = (op: string, detail: string): void => {
    counts[op] = (counts[op] ?? 0) + 1;
    const k = `${op}:${detail}`;
    counts[k] = (counts[k] ?? 0) + 1;
  };
  // a claim/reservation namespace without its per-resource part ('ip:<l3>' → 'ip')
  const ns = (n: string): string => n.split(':', 1)[0]!;
  const pub = (type: ResourceEventType, r: Resource): void => {
    // leases are the controllers' own bookkeeping, renewed per tracked host every round (issue
    // 19: 1,000 hosts made 100 events/s, each relayed through Redis to every controller)
    if (r.kind === LEASE_KIND) return;
    bus.publish({ type, kind: r.kind, uuid: r.uuid, ownerAccountUuid: r.ownerAccountUuid, resource: r, time: new Date().toISOString() });
  };
  const s: InventoryStore = {
    get backend() {
      return inner.backend;
    },
    get layout() {
      return inner.layout;
    },
    init: () => inner.init(),
    close: () => inner.close(),
    async create<T extends Resource>(r: T): Promise<T> {
      count('create', r.kind);
      const out = await inner.create(r);
      pub('resource.created', out);
      return out;
    },
    async createMany<T extends Resource>(rs: T[]): Promise<T[]> {
      count('createMany', rs[0]?.kind ?? 'none');
      const out = await inner.createMany(rs);
      for (const r of out) pub('resource.created', r);
      return out;
    },
    async batch(writes: StoreWrite[]): Promise<Array<Resource | undefined>> {
      const out = await inner.batch(writes);
      count('batch', String(writes.length));
      counts.batched = (counts.batched ?? 0) + writes.length;
      writes.forEach((w, i) => {
        const r = out[i];
        if (w.op === 'create' || w.op === 'update' || w.op === 'transition') count(w.op, r!.kind);
        else if (w.op === 'claim' || w.op === 'release') count(w.op, ns(w.namespace));
        else count(w.op, w.collection);
        if (r) pub(w.op === 'create' ? 'resource.created' : 'resource.updated', r);
      });
      return out;
    },
    async get<T extends Resource = Resource>(uuid: string): Promise<T | undefined> {
      const out = await inner.get<T>(uuid);
      count('get', out?.kind ?? 'miss');
      return out;
    },
    async update<T extends Resource = Resource>(uuid: string, patch: Partial<Resource>): Promise<T> {
      const out = await inner.update<T>(uuid, patch);
      count('update', out.kind);
      pub('resource.updated', out);
      return out;
    },
    async transition<T extends Resource = Resource>(uuid: string, from: string | string[], to: string, patch?: Partial<Resource>): Promise<T> {
      const out = await inner.transition<T>(uuid, from, to, patch);
      count('transition', out.kind);
      pub('resource.updated', out);
      return out;
    },
    async delete(uuid: string): Promise<boolean> {
      const before = await inner.get(uuid);
      const ok = await inner.delete(uuid);
      count('delete', before?.kind ?? 'miss');
      if (ok && before) pub('resource.deleted', before);
      return ok;
    },
    list: <T extends Resource = Resource>(q: Query): Promise<QueryResult<T>> => (count('list', q.kind), inner.list<T>(q)),
    byParent: <T extends Resource = Resource>(kind: string, parentUuid: string) => (count('byParent', kind), inner.byParent<T>(kind, parentUuid)),
    byState: <T extends Resource = Resource>(kind: string, state: string) => (count('byState', kind), inner.byState<T>(kind, state)),
    claim: (n, key, owner) => (count('claim', ns(n)), inner.claim(n, key, owner)),
    release: (n, key, owner) => (count('release', ns(n)), inner.release(n, key, owner)),
    claims: (n) => (count('claims', ns(n)), inner.claims(n)),
    reserve: (r) => (count('reserve', ns(r.scope)), inner.reserve(r)),
    unreserve: (scope, holder) => (count('unreserve', ns(scope)), inner.unreserve(scope, holder)),
    reserved: (scope) => (count('reserved', ns(scope)), inner.reserved(scope)),
    holders: (scope) => (count('holders', ns(scope)), inner.holders(scope)),
    putDoc: (c, id, doc) => (count('putDoc', c), inner.putDoc(c, id, doc)),
    getDoc: <T = unknown>(c: string, id: string) => (count('getDoc', c), inner.getDoc<T>(c, id)),
    deleteDoc: (c, id) => (count('deleteDoc', c), inner.deleteDoc(c, id)),
    listDocs: <T = unknown>(c: string) => (count('listDocs', c), inner.listDocs<T>(c)),
  };
  const listViews = inner.listViews?.bind(inner);
  if (listViews) s.listViews = (q: Query): Promise<ViewPage> => (count('list', q.kind), listViews(q));
  counters.set(s, counts);
  return s;
}
