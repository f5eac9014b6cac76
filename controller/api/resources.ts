// GET /v1/resources?q=tags=env::prod — one list over every collection: the list language
// restricted to the fields all resources share (uuid, kind, name, state, tags, dates…), so
// user tags (and names) are searchable across kinds. Each match is shaped as its own
// collection lists it; a normal account sees what its own lists would show it.
//
// The store lists one kind at a time: each kind is asked for its first start+limit matches,
// and the merge is sorted (default: newest first) and cut to the page.
import { TStackError } from '../../shared/errors.js';
import type { Principal } from '../auth/accounts.js';
import type { InventoryStore, Resource } from '../store/types.js';
import { COMMON_FIELDS, parseListQuery, project } from './query.js';
import { shape, visible } from './crud.js';
import type { ApiRegistry } from './registry.js';

const KNOWN = new Set<string>(COMMON_FIELDS);

export async function searchResources(
  d: { store: InventoryStore; registry: ApiRegistry; adminAccountUuid: string },
  p: Principal,
  qs: Record<string, string | string[]>,
): Promise<{ inventories?: Array<Record<string, unknown>>; total: number }> {
  const lp = parseListQuery('*', qs, undefined, KNOWN);
  const filters = lp.query.filters ?? [];
  const kindFilter = filters.find((f) => f.field === 'kind');
  const sort = lp.query.sort ?? { field: 'createDate', dir: 'desc' as const };
  const page = { start: lp.query.start ?? 0, limit: lp.query.limit ?? 1000 };
  let total = 0;
  const found: Array<{ r: Resource; spec: ReturnType<ApiRegistry['collections']>[number] }> = [];
  for (const spec of d.registry.collections()) {
    // kind=x narrows the kinds asked (the filter itself stays and is applied by the store too)
    if (kindFilter?.op === '=' && kindFilter.value !== spec.kind) continue;
    const query = { kind: spec.kind, filters: [...filters], sort, start: 0, limit: lp.count ? 0 : page.start + page.limit };
    if (!p.isAdmin && spec.shared) {
      // the admin's resources count only where shared with this account (a per-resource choice)
      const all = await d.store.list({ kind: spec.kind, filters: [...filters, { field: 'ownerAccountUuid', op: '?=' as const, value: [p.accountUuid, d.adminAccountUuid] }], sort });
      const seen = all.items.filter((i) => visible(p, i, spec, d.adminAccountUuid));
      total += seen.length;
      if (!lp.count) for (const item of seen.slice(0, page.start + page.limit)) found.push({ r: item, spec });
      continue;
    }
    const r = await d.store.list(p.isAdmin ? query : { ...query, ownerAccountUuid: p.accountUuid });
    total += r.total;
    for (const item of r.items) found.push({ r: item, spec });
  }
  if (lp.count) return { total };
  const key = (x: Resource): string | number => {
    const v = x[sort.field];
    return typeof v === 'number' ? v : Array.isArray(v) ? v.join(',') : String(v ?? '');
  };
  found.sort((a, b) => {
    const ka = key(a.r);
    const kb = key(b.r);
    const c = ka < kb ? -1 : ka > kb ? 1 : a.r.uuid.localeCompare(b.r.uuid);
    return sort.dir === 'desc' ? -c : c;
  });
  if (page.start + page.limit > 100_000) throw new TStackError('INVALID_ARGUMENT', 'start + limit: at most 100000 across kinds', { field: 'start' });
  return { inventories: found.slice(page.start, page.start + page.limit).map((x) => project(shape(x.spec, x.r), lp.fields)), total };
}
