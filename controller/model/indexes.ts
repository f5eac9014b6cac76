// The store's secondary indexes, generated from the kind declarations: every field some kind
// lists in KindDef.indexes, plus the base set (INDEXED_FIELDS: references every store indexes,
// and fields of kinds outside the registry such as the audit record's jobUuid).
import { INDEXED_FIELDS } from '../store/indexes.js';
import { resourceKinds } from './registry.js';

export function storeIndexedFields(): string[] {
  const out = new Set<string>(INDEXED_FIELDS);
  for (const d of Object.values(resourceKinds)) for (const f of d.indexes ?? []) out.add(f);
  return [...out].sort();
}
