// The inventory store contract. Two implementations pass the same test suite: SQLite
// (better-sqlite3, the embedded default) and Redis (ioredis, several controllers sharing one
// inventory). Everything above the store (API, workflows, allocators) uses only this.

/** A resource of any kind. Common fields are typed; kind-specific fields ride along. */
export interface Resource {
  uuid: string;
  /** Collection kind, e.g. 'zone', 'host', 'vm-instance' (the REST collection name, singular). */
  kind: string;
  name: string;
  description?: string;
  createDate: string;
  lastOpDate: string;
  /** Owner account; admin-owned infrastructure uses the admin account uuid. */
  ownerAccountUuid: string;
  tags: string[];
  /** The resource this one belongs to (zone of a cluster, cluster of a host, VM of a NIC…). */
  parentUuid?: string;
  state?: string;
  [field: string]: unknown;
}

export type FilterOp = '=' | '!=' | '>' | '<' | '>=' | '<=' | '~=' | '?=';

export interface Filter {
  field: string;
  op: FilterOp;
  /** For '?=' (in): a list; for '~=' (like): SQL-LIKE pattern with % and _. */
  value: string | number | boolean | null | Array<string | number>;
}

export interface Query {
  kind: string;
  filters?: Filter[];
  /** Restrict to one owner (normal accounts); undefined = all (admin). */
  ownerAccountUuid?: string;
  limit?: number;
  start?: number;
  sort?: { field: string; dir: 'asc' | 'desc' };
  /**
   * Keyset pagination: only matches strictly after this position in the query's order (the
   * sort field's value, then createDate, then uuid: `positionOf` the last item of a page), so a
   * page costs the same whatever its depth. Combined with `start`, skips that many more.
   */
  after?: Position;
  /** Do not count the matches: `total` is then -1 (cursor pages; the count costs all matches). */
  skipTotal?: boolean;
}

/** A place in a query's order (Query.after). `sort`: the sort field's value as stored (SQL scalar). */
export interface Position {
  sort?: string | number | null;
  createDate: string;
  uuid: string;
}

export interface QueryResult<T extends Resource = Resource> {
  items: T[];
  /** Number of matches ignoring limit/start/after; -1 with Query.skipTotal. */
  total: number;
}

/** A list page as the JSON texts of its items' views (InventoryStore.listViews). */
export interface ViewPage {
  /** JSON.stringify(viewOf(item)) of each match (controller/store/view.ts): no internal field. */
  views: string[];
  total: number;
  /** The whole resource of views[i] (parsed when asked: a page's cursor needs its last). */
  item(i: number): Resource;
}

/**
 * A quota reservation: `holder` (a resource uuid, or a provisional id while a create is in
 * flight) holds `amounts` (quota name → amount) in `scope` (an account). Amounts are set, not
 * added, per (holder, name), so a retry re-reserves the same thing.
 */
export interface Reservation {
  scope: string;
  holder: string;
  amounts: Record<string, number>;
  /** Per quota name; absent = no check (the charge of something that already exists). */
  limits?: Record<string, number>;
  /**
   * Another holder (a create's provisional reservation) that covers this one: what this holder
   * gains moves from there instead of adding to the total, in the same transaction.
   */
  from?: string;
}

/** Why a reservation was refused: the first quota it would exceed. */
export interface QuotaExceeded {
  name: string;
  limit: number;
  /** Usage before this request. */
  used: number;
  requested: number;
}

/**
 * One write of a batch (InventoryStore.batch): the same operations as the single calls, with
 * the same semantics (a create CONFLICTs on an existing uuid, an update NOT_FOUNDs on a missing one).
 * A claim is store.claim's (issue 19: an allocator's claim rides with the writes that record it):
 * granted when the key is free or `owner` holds it already; held by another owner, the whole
 * batch is refused with CONFLICT, details {namespace, key, holder} (claimRefused tells it apart).
 */
export type StoreWrite =
  | { op: 'create'; resource: Resource }
  | { op: 'update'; uuid: string; patch: Partial<Resource> }
  /** As transition(): CONFLICT (the whole batch) unless the record's state is one of `from`. */
  | { op: 'transition'; uuid: string; from: string | string[]; to: string; patch?: Partial<Resource> }
  | { op: 'putDoc'; collection: string; id: string; doc: unknown }
  | { op: 'deleteDoc'; collection: string; id: string }
  | ClaimWrite
  | { op: 'release'; namespace: string; key: string; owner?: string };

export type ClaimWrite = { op: 'claim'; namespace: string; key: string; owner: string };

export interface InventoryStore {
  readonly backend: 'sqlite' | 'redis';
  /**
   * The index layout this store's writes maintain (Redis: indexed fields, compound indexes,
   * version). Controllers sharing a store put it in their heartbeat (jobs), so a store turns
   * on an index only once every live controller maintains it. Undefined: nothing to agree on.
   */
  readonly layout?: string;
  init(): Promise<void>;
  close(): Promise<void>;

  /** Insert; CONFLICT if the uuid exists. createDate/lastOpDate are set when absent. */
  create<T extends Resource>(r: T): Promise<T>;
  /**
   * Insert several in one write (one transaction / one round trip): all or none; CONFLICT
   * naming the first uuid that exists.
   */
  createMany<T extends Resource>(rs: T[]): Promise<T[]>;
  /**
   * Several writes as one (issue 19: a commit was about half of a lone write's CPU): one
   * transaction on SQLite, one script on Redis; all or none, in order (a later write sees an
   * earlier one's result), atomic against other writers. Returns, per write, the resource a
   * create or update wrote (undefined for a doc). The writes of a flow step that belong
   * together: a journal save with the resource write it precedes, an outcome with the journal
   * delete. Throws the first failing write's error (nothing written).
   */
  batch(writes: StoreWrite[]): Promise<Array<Resource | undefined>>;
  get<T extends Resource = Resource>(uuid: string): Promise<T | undefined>;
  /** Merge a patch (undefined values delete fields); bumps lastOpDate; NOT_FOUND if absent. */
  update<T extends Resource = Resource>(uuid: string, patch: Partial<Resource>): Promise<T>;
  /** Atomic compare-and-set of state (from one of `from`) plus an optional patch; CONFLICT otherwise. */
  transition<T extends Resource = Resource>(uuid: string, from: string | string[], to: string, patch?: Partial<Resource>): Promise<T>;
  /** True if something was deleted. */
  delete(uuid: string): Promise<boolean>;
  list<T extends Resource = Resource>(q: Query): Promise<QueryResult<T>>;
  /**
   * list() as each match's view text (no internal field; a kind's hidden fields are NOT
   * removed: only for kinds without any). Optional: a store that keeps the views' texts
   * (SQLite) saves a page's parse and stringify; the API shapes items itself otherwise.
   */
  listViews?(q: Query): Promise<ViewPage>;
  /** Indexed lookups. */
  byParent<T extends Resource = Resource>(kind: string, parentUuid: string): Promise<T[]>;
  byState<T extends Resource = Resource>(kind: string, state: string): Promise<T[]>;

  /**
   * Atomic unique claims (IP addresses, MACs, names…): set-if-absent of `key` in `namespace`.
   * Returns true if this call got it, or if `owner` already holds it (so a retried or resumed
   * step may claim again). Used by allocators so concurrent allocations never collide.
   */
  claim(namespace: string, key: string, owner: string): Promise<boolean>;
  release(namespace: string, key: string, owner?: string): Promise<void>;
  claims(namespace: string): Promise<Array<{ key: string; owner: string }>>;

  /**
   * Quota ledger: check and apply a reservation in one transaction (so concurrent creates
   * can never overshoot a limit). Only increases are checked. Undefined when applied.
   */
  reserve(r: Reservation): Promise<QuotaExceeded | undefined>;
  /** End every reservation of a holder. */
  unreserve(scope: string, holder: string): Promise<void>;
  /** Quota name → total reserved in a scope. */
  reserved(scope: string): Promise<Record<string, number>>;
  /** Every holder of a scope with its amounts. */
  holders(scope: string): Promise<Array<{ holder: string; amounts: Record<string, number> }>>;

  /** Small JSON documents outside the resource model (workflow journals, jobs, sessions, settings). */
  putDoc(collection: string, id: string, doc: unknown): Promise<void>;
  getDoc<T = unknown>(collection: string, id: string): Promise<T | undefined>;
  deleteDoc(collection: string, id: string): Promise<void>;
  listDocs<T = unknown>(collection: string): Promise<Array<{ id: string; doc: T }>>;
}
