// An InventoryStore that publishes resource.created/updated/deleted on the event bus after
// every successful write, so that workflows, allocators and the API all feed the SSE stream
// without thinking about it.
import type { InventoryStore, Query, QueryResult, Resource } from '../store/types.js';
import type { EventBus, ResourceEventType } from './bus.js';

export function observedStore(inner: InventoryStore, bus: EventBus): InventoryStore {
  const pub = (type: ResourceEventType, r: Resource): void => {
    bus.publish({ type, kind: r.kind, uuid: r.uuid, ownerAccountUuid: r.ownerAccountUuid, resource: r, time: new Date().toISOString() });
  };
  const s: InventoryStore = {
    get backend() {
      return inner.backend;
    },
    init: () => inner.init(),
    close: () => inner.close(),
    async create<T extends Resource>(r: T): Promise<T> {
      const out = await inner.create(r);
      pub('resource.created', out);
      return out;
    },
    async createMany<T extends Resource>(rs: T[]): Promise<T[]> {
      const out = await inner.createMany(rs);
      for (const r of out) pub('resource.created', r);
      return out;
    },
    get: <T extends Resource = Resource>(uuid: string) => inner.get<T>(uuid),
    async update<T extends Resource = Resource>(uuid: string, patch: Partial<Resource>): Promise<T> {
      const out = await inner.update<T>(uuid, patch);
      pub('resource.updated', out);
      return out;
    },
    async transition<T extends Resource = Resource>(uuid: string, from: string | string[], to: string, patch?: Partial<Resource>): Promise<T> {
      const out = await inner.transition<T>(uuid, from, to, patch);
      pub('resource.updated', out);
      return out;
    },
    async delete(uuid: string): Promise<boolean> {
      const before = await inner.get(uuid);
      const ok = await inner.delete(uuid);
      if (ok && before) pub('resource.deleted', before);
      return ok;
    },
    list: <T extends Resource = Resource>(q: Query): Promise<QueryResult<T>> => inner.list<T>(q),
    byParent: <T extends Resource = Resource>(kind: string, parentUuid: string) => inner.byParent<T>(kind, parentUuid),
    byState: <T extends Resource = Resource>(kind: string, state: string) => inner.byState<T>(kind, state),
    claim: (ns, key, owner) => inner.claim(ns, key, owner),
    release: (ns, key, owner) => inner.release(ns, key, owner),
    claims: (ns) => inner.claims(ns),
    reserve: (r) => inner.reserve(r),
    unreserve: (scope, holder) => inner.unreserve(scope, holder),
    reserved: (scope) => inner.reserved(scope),
    holders: (scope) => inner.holders(scope),
    putDoc: (c, id, doc) => inner.putDoc(c, id, doc),
    getDoc: <T = unknown>(c: string, id: string) => inner.getDoc<T>(c, id),
    deleteDoc: (c, id) => inner.deleteDoc(c, id),
    listDocs: <T = unknown>(c: string) => inner.listDocs<T>(c),
  };
  return s;
}
