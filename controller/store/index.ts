// openStore: the one way to get an inventory. SQLite is the embedded default; Redis lets
// several controllers share one inventory.
import type { InventoryStore } from './types.js';
import { SqliteStore } from './sqlite.js';
import { RedisStore } from './redis.js';

export type StoreConfig =
  | { backend: 'sqlite'; path: string; busyTimeoutMs?: number; indexedFields?: readonly string[]; compoundIndexes?: ReadonlyArray<readonly string[]> }
  | { backend: 'redis'; url: string; prefix?: string; indexedFields?: readonly string[]; compoundIndexes?: ReadonlyArray<readonly string[]>; layoutCheckMs?: number };

/** Create and init() a store. Close it with `store.close()`. */
export async function openStore(cfg: StoreConfig): Promise<InventoryStore> {
  const store = cfg.backend === 'sqlite' ? new SqliteStore(cfg) : new RedisStore(cfg);
  await store.init();
  return store;
}

export type * from './types.js';
export { SqliteStore } from './sqlite.js';
export { RedisStore } from './redis.js';
export { INDEXED_FIELDS } from './indexes.js';
export { matchesAll, matchesFilter, runQuery, FILTER_OPS } from './query.js';
