// Secondary indexes of resource fields (beyond the common columns: kind, parent, state, owner,
// name, dates). The controller generates the list from its kind declarations (KindDef.indexes,
// controller/model/indexes.ts); a store opened without one uses INDEXED_FIELDS. SQLite makes a
// column and a partial index on it per field (sqlite.ts); Redis keeps a set per (kind, field, value).
// A filter `field = 'text'` (or `?=` of texts) on an indexed field reads the index only, never
// the whole kind. Indexed fields hold scalars (or arrays of scalars: each element is indexed).
import { checkField } from './query.js';

/**
 * Reference and status fields that every store indexes: cascade and allocator lookups (VMs of a
 * host, NICs of an L3…), the audit record of a job, and what kinds outside the registry use.
 */
export const INDEXED_FIELDS = [
  'hostUuid',
  'zoneUuid',
  'clusterUuid',
  'l2NetworkUuid',
  'l3NetworkUuid',
  'ipRangeUuid',
  'vmInstanceUuid',
  'volumeUuid',
  'primaryStorageUuid',
  'backupStorageUuid',
  'imageUuid',
  'status',
  'type',
  'jobUuid',
] as const;

/** Field names go into SQL and Redis keys: identifiers only (checkField), no duplicates. */
export function checkIndexedFields(fields: readonly string[]): string[] {
  for (const f of fields) checkField(f);
  return [...new Set(fields)].sort();
}

/**
 * Field combinations that lists filter on together, each field `=` a text (KindDef.compoundIndexes):
 * Redis keeps a set (and a sorted set by createDate) per combination of values, so such a
 * list's count is one SCARD and its page one range of one sorted set, where single-field sets
 * need an intersection (SINTERCARD walks the smallest set: a host's ~2,000 VMs per read, issue 19).
 * Normalised: each combination's top-level fields sorted and joined by '+', the list sorted.
 */
export function checkCompoundIndexes(combos: ReadonlyArray<readonly string[]>): string[] {
  const out = new Set<string>();
  for (const c of combos) {
    const fields = [...new Set(c)].sort();
    for (const f of fields) {
      checkField(f);
      if (f.includes('.')) throw new Error(`compound index ${c.join('+')}: top-level fields only`);
    }
    if (fields.length < 2) throw new Error(`compound index ${c.join('+')}: two fields or more`);
    out.add(fields.join('+'));
  }
  return [...out].sort();
}
