// A VM inventory for the ordered-page cases (store suite and Redis ≡ SQLite): createDates in
// groups of three per millisecond (ties ordered by uuid), dense and sparse filter combinations,
// then updates that move indexed fields and state, and deletes. The same input gives the same
// records in any store (uuids and dates are fixed by the caller's seed).
import type { Filter, InventoryStore, Position, Query, Resource } from '../../../controller/store/types.js';
import { positionOf } from '../../../controller/store/query.js';

const BASE = Date.UTC(2026, 0, 1);

/** Deterministic uuid-shaped ids (so two stores hold the same records). */
function uuidOf(seed: string, i: number): string {
  const h = (BigInt(i) * 0x9e3779b97f4a7c15n + BigInt(seed.length) * 0x632be59bd9b4e019n) & ((1n << 128n) - 1n);
  const x = h.toString(16).padStart(32, '0');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export function orderedVms(seed: string, n = 300): Resource[] {
  return Array.from({ length: n }, (_, i): Resource => ({
    uuid: uuidOf(seed, i),
    kind: 'vm-instance',
    name: `vm${i}`,
    createDate: new Date(BASE + Math.floor(i / 3)).toISOString(),
    lastOpDate: new Date(BASE + Math.floor(i / 3)).toISOString(),
    ownerAccountUuid: i % 5 === 0 ? 'acc-b' : 'acc-a',
    tags: [],
    parentUuid: `cl${i % 3}`,
    state: i % 7 === 0 ? 'Stopped' : 'Running',
    hostUuid: `h${i % 4}`,
    // zone z0 ∩ cluster c0 is sparse (every 50th): a walk of either would mostly miss
    zoneUuid: i % 2 === 0 ? 'z0' : 'z1',
    clusterUuid: i % 2 === 0 && i % 50 !== 0 ? 'c1' : 'c0',
  }));
}

/** Moves some VMs to another host / state, deletes others. */
export async function churn(store: InventoryStore, vms: Resource[]): Promise<void> {
  for (let i = 0; i < vms.length; i += 11) await store.update(vms[i]!.uuid, { hostUuid: 'h9' });
  for (let i = 1; i < vms.length; i += 13) await store.transition(vms[i]!.uuid, ['Running', 'Stopped'], 'Paused');
  for (let i = 2; i < vms.length; i += 17) await store.delete(vms[i]!.uuid);
}

const eq = (field: string, value: string): Filter => ({ field, op: '=', value });

export const ORDERED_FILTERS: Array<{ filters: Filter[]; owner?: string }> = [
  { filters: [] },
  { filters: [eq('state', 'Running')] },
  { filters: [eq('hostUuid', 'h1'), eq('state', 'Running')] },
  { filters: [eq('hostUuid', 'h9')] },
  { filters: [eq('state', 'Paused'), eq('parentUuid', 'cl1')] },
  { filters: [eq('zoneUuid', 'z0'), eq('clusterUuid', 'c0')] },
  { filters: [eq('zoneUuid', 'z0'), eq('clusterUuid', 'c0'), eq('state', 'Running')] },
  { filters: [eq('hostUuid', 'h2')], owner: 'acc-b' },
  { filters: [eq('hostUuid', 'nowhere')] },
];

/** Compound indexes that cover some of ORDERED_FILTERS (whole, or some of their filters). */
export const COMPOUND: string[][] = [
  ['hostUuid', 'state'],
  ['parentUuid', 'state'],
  ['clusterUuid', 'zoneUuid'],
];

export const ORDERED_SORTS: Array<Query['sort']> = [undefined, { field: 'createDate', dir: 'asc' }, { field: 'createDate', dir: 'desc' }];

/**
 * Every page the cases ask for, as uuids and totals: offsets (start) and cursor walks (after,
 * with and without the count), per filter set and order.
 */
export async function orderedAnswers(store: InventoryStore): Promise<Record<string, { uuids: string[]; total: number }>> {
  const out: Record<string, { uuids: string[]; total: number }> = {};
  for (const { filters, owner } of ORDERED_FILTERS) {
    for (const sort of ORDERED_SORTS) {
      const base: Query = { kind: 'vm-instance', filters, ...(sort ? { sort } : {}), ...(owner ? { ownerAccountUuid: owner } : {}) };
      const tag = `${JSON.stringify(filters)} ${owner ?? ''} ${JSON.stringify(sort)}`;
      for (const [limit, start] of [[1, 0], [7, 0], [7, 3], [50, 0], [50, 60], [5, 1000], [0, 0]] as const) {
        const r = await store.list({ ...base, limit, start });
        out[`${tag} limit ${limit} start ${start}`] = { uuids: r.items.map((v) => v.uuid), total: r.total };
      }
      for (const [size, skipTotal, start] of [[1, true, 0], [6, false, 0], [4, true, 2]] as const) {
        const seen: string[] = [];
        let after: Position | undefined;
        for (let i = 0; i < 400; i++) {
          const r = await store.list({ ...base, limit: size, skipTotal, ...(after ? { after, start } : {}) });
          seen.push(...r.items.map((v) => v.uuid));
          if (r.items.length < size) break;
          after = positionOf(r.items.at(-1)!, sort);
        }
        out[`${tag} cursor pages of ${size} skipTotal ${skipTotal} start ${start}`] = { uuids: seen, total: -1 };
      }
    }
  }
  return out;
}

/** The same pages cut from one unpaged list per query (the reference orderedAnswers must equal). */
export async function unpagedAnswers(store: InventoryStore): Promise<Record<string, { uuids: string[]; total: number }>> {
  const out: Record<string, { uuids: string[]; total: number }> = {};
  for (const { filters, owner } of ORDERED_FILTERS) {
    for (const sort of ORDERED_SORTS) {
      const base: Query = { kind: 'vm-instance', filters, ...(sort ? { sort } : {}), ...(owner ? { ownerAccountUuid: owner } : {}) };
      const tag = `${JSON.stringify(filters)} ${owner ?? ''} ${JSON.stringify(sort)}`;
      const all = (await store.list(base)).items.map((v) => v.uuid);
      for (const [limit, start] of [[1, 0], [7, 0], [7, 3], [50, 0], [50, 60], [5, 1000], [0, 0]] as const) {
        out[`${tag} limit ${limit} start ${start}`] = { uuids: all.slice(start, start + limit), total: all.length };
      }
      for (const [size, skipTotal, start] of [[1, true, 0], [6, false, 0], [4, true, 2]] as const) {
        const seen: string[] = [];
        for (let pos = 0; pos < all.length; pos += size + start) {
          const page = all.slice(pos, pos + size);
          seen.push(...page);
          if (page.length < size) break;
        }
        out[`${tag} cursor pages of ${size} skipTotal ${skipTotal} start ${start}`] = { uuids: seen, total: -1 };
      }
    }
  }
  return out;
}
