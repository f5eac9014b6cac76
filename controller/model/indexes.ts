// The store's secondary indexes, generated from the kind declarations: every field some kind
// lists in KindDef.indexes, plus the base set (INDEXED_FIELDS: references every store indexes,
// and fields of kinds outside the registry such as the audit record's jobUuid).
import { INDEXED_FIELDS, checkCompoundIndexes } from '../store/indexes.js';
import { resourceKinds } from './registry.js';

export function storeIndexedFields(): string[] {
  const out = new Set<string>(INDEXED_FIELDS);
  for (const d of Object.values(resourceKinds)) for (const f of d.indexes ?? []) out.add(f);
  return [...out].sort();
}

/** The field combinations some kind lists in KindDef.compoundIndexes (Redis keeps a set per combination of values). */
export function storeCompoundIndexes(): string[][] {
  return checkCompoundIndexes(Object.values(resourceKinds).flatMap((d) => d.compoundIndexes ?? [])).map((c) => c.split('+'));
}

/** What a store opened by the controller (or a tool writing its inventory) indexes: spread into StoreConfig. */
export function storeIndexes(): { indexedFields: string[]; compoundIndexes: string[][] } {
  return { indexedFields: storeIndexedFields(), compoundIndexes: storeCompoundIndexes() };
}
