// SQLite inventory (better-sqlite3): one file in the data dir, WAL, busy timeout.
//   resources(uuid, kind, parent_uuid, state, owner, name, create_date, last_op_date, body JSON)
//   claims(ns, key, owner)      unique (ns, key): allocators' set-if-absent
//   docs(collection, id, body)  journals, jobs, sessions, settings
//   quota_holds(scope, holder, name, amount)  the quota ledger (reserve/unreserve)
// Common fields are real, indexed columns. Each indexed field (indexes.ts) is a column too,
// named "f:<field>", written from JS with the value json_extract(body, '$.<field>') would give;
// an update sets only the columns whose value changed, so an index on an untouched field is
// not rewritten (expression indexes re-parsed the body for each of them on every write: 360 vs
// 161 µs an update, issue 19). Any other field is reached with json_extract().
// The columns are declared without a type (no affinity) so comparisons behave exactly like
// the JS evaluator in query.ts (no silent text/number conversion).
// Writes that read first (update, transition) run in BEGIN IMMEDIATE transactions, so two
// processes on the same file cannot interleave between the read and the write.
// The body is written as the resource's API view then its internal fields (view.ts
// storedText), and view_len says where the view ends: listViews sends a page's views without
// parsing them (issue 19). A body written by anything else (an older version on the same file)
// has its view_len cleared by a trigger, and such a row's view is made the slow way.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { TStackError } from '../../shared/errors.js';
import { claimConflict } from './claim-conflict.js';
import type { InventoryStore, Query, QuotaExceeded, QueryResult, Reservation, Resource, StoreWrite, ViewPage } from './types.js';
import { INDEXED_FIELDS, checkIndexedFields } from './indexes.js';
import { applyPatch, checkField, asList, checkQuery, transitionConflict, prepareNew, nowIso } from './query.js';
import { storedText, viewOf, viewText } from './view.js';
import { afterSql, bindValue, columnValue, FIELD_COL_PREFIX, fieldCol, fieldSql, filterSql, indexName, indexSql, jsonSql, type Bind } from './sqlite-sql.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS resources (
  uuid PRIMARY KEY NOT NULL,
  kind NOT NULL,
  parent_uuid,
  state,
  owner,
  name,
  create_date NOT NULL,
  last_op_date NOT NULL,
  body NOT NULL
);
CREATE INDEX IF NOT EXISTS resources_kind_order ON resources(kind, create_date, uuid);
CREATE INDEX IF NOT EXISTS resources_parent ON resources(kind, parent_uuid);
CREATE INDEX IF NOT EXISTS resources_state_order ON resources(kind, state, create_date, uuid);
CREATE INDEX IF NOT EXISTS resources_owner ON resources(kind, owner);
CREATE INDEX IF NOT EXISTS resources_name ON resources(kind, name);
DROP INDEX IF EXISTS resources_kind;
DROP INDEX IF EXISTS resources_state;
CREATE TABLE IF NOT EXISTS claims (
  ns NOT NULL,
  key NOT NULL,
  owner NOT NULL,
  create_date NOT NULL,
  PRIMARY KEY (ns, key)
);
CREATE TABLE IF NOT EXISTS quota_holds (
  scope NOT NULL,
  holder NOT NULL,
  name NOT NULL,
  amount NOT NULL,
  PRIMARY KEY (scope, holder, name)
);
CREATE TABLE IF NOT EXISTS docs (
  collection NOT NULL,
  id NOT NULL,
  body NOT NULL,
  last_op_date NOT NULL,
  PRIMARY KEY (collection, id)
);
`;

/** Common columns an update may change (uuid, kind and createDate never change: applyPatch). */
const COMMON_MUTABLE: ReadonlyArray<[string, string]> = [
  ['parentUuid', 'parent_uuid'],
  ['state', 'state'],
  ['ownerAccountUuid', 'owner'],
  ['name', 'name'],
];

interface Row {
  body: string;
}

/** A row with where its view ends (negative every other write: viewLenAfter). */
interface ViewRow {
  body: string;
  view_len: number | null;
}

/**
 * The view_len column of a rewritten row: its view's length, with the sign flipped from the
 * row's current value, so that the value always changes on a write of this code and the
 * trigger (VIEW_TRIGGER) can tell a body written without it (the value left as it was).
 */
const viewLenAfter = (cur: number | null, viewLen: number): number => (cur !== null && cur > 0 ? -viewLen : viewLen);

/** A body rewritten without a new view_len (another program, an older tstack): its view is unknown. */
const VIEW_TRIGGER = `CREATE TRIGGER IF NOT EXISTS resources_view_len AFTER UPDATE OF body ON resources
  WHEN NEW.view_len IS NOT NULL AND NEW.view_len IS OLD.view_len
  BEGIN UPDATE resources SET view_len = NULL WHERE uuid = NEW.uuid; END`;

export interface SqliteStoreOptions {
  path: string;
  /** ms to wait for another process's write lock (default 10 s). */
  busyTimeoutMs?: number;
  /** Scalar fields with an index (the controller passes those its kinds declare); default INDEXED_FIELDS. */
  indexedFields?: readonly string[];
  /**
   * Field combinations lists filter on together (KindDef.compoundIndexes); a field combined with
   * `state` gets state in its index (indexSql). Default: hostUuid with state (a host's VMs by state).
   */
  compoundIndexes?: ReadonlyArray<readonly string[]>;
}

/** The fields whose index holds state: those combined with state in a compound index. */
function stateFields(compound: ReadonlyArray<readonly string[]> | undefined): ReadonlySet<string> {
  if (!compound) return new Set(['hostUuid']);
  return new Set(compound.filter((c) => c.includes('state')).flatMap((c) => c.filter((f) => f !== 'state')));
}

export class SqliteStore implements InventoryStore {
  readonly backend = 'sqlite' as const;
  private db: Database.Database | undefined;
  /** The indexed fields queries use the columns of (the configured ones). */
  private readonly indexed: ReadonlySet<string>;
  /** Indexed fields whose index holds state (stateFields). */
  private readonly withState: ReadonlySet<string>;
  /** Every field column the table has (configured now or by an earlier open): all are written. */
  private cols: string[] = [];
  private insertSql = '';

  constructor(private readonly opts: SqliteStoreOptions) {
    this.indexed = new Set(checkIndexedFields(opts.indexedFields ?? INDEXED_FIELDS));
    this.withState = stateFields(opts.compoundIndexes);
  }

  async init(): Promise<void> {
    if (this.db) return;
    if (this.opts.path !== ':memory:') mkdirSync(dirname(this.opts.path), { recursive: true });
    const db = new Database(this.opts.path);
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(this.opts.busyTimeoutMs ?? 10_000))}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.exec(SCHEMA);
    this.db = db;
    const m = this.migrate();
    this.cols = m.cols;
    const names = ['uuid', 'kind', 'parent_uuid', 'state', 'owner', 'name', 'create_date', 'last_op_date', 'body', 'view_len', ...this.cols.map(fieldCol)];
    this.insertSql = `INSERT INTO resources (${names.join(', ')}) VALUES (${names.map(() => '?').join(',')})`;
    // a migrated file's statistics describe the old indexes: PRAGMA optimize then leaves estimates
    // rough enough for the planner to walk a kind's state index instead of a field's (~10× slower
    // pages); one full ANALYZE (~1 s at 100k rows, once) gives it the real ones
    if (m.changed) this.analyze();
    else this.optimize();
  }

  /**
   * Bring the table to this store's indexed fields, in one transaction (two processes opening
   * the same file do it once): a column for each field that has none, filled from the bodies
   * in one pass; its index; the expression indexes of earlier versions dropped. Columns of
   * fields no longer configured stay and are still written (another process may query them).
   * Returns every field column, and whether an existing table was changed.
   */
  private migrate(): { cols: string[]; changed: boolean } {
    const d = this.d;
    const tx = d.transaction((): { cols: string[]; changed: boolean } => {
      const have = new Set((d.prepare('SELECT name FROM pragma_table_info(?)').all('resources') as Array<{ name: string }>).map((c) => c.name));
      const existing = [...have].filter((c) => c.startsWith(FIELD_COL_PREFIX)).map((c) => c.slice(FIELD_COL_PREFIX.length));
      const missing = [...this.indexed].filter((f) => !have.has(FIELD_COL_PREFIX + f));
      // rows from before view_len keep NULL: their views are made from the body (listViews)
      if (!have.has('view_len')) d.exec('ALTER TABLE resources ADD COLUMN view_len');
      d.exec(VIEW_TRIGGER);
      for (const f of missing) d.exec(`ALTER TABLE resources ADD COLUMN ${fieldCol(f)}`);
      if (missing.length) d.exec(`UPDATE resources SET ${missing.map((f) => `${fieldCol(f)} = ${jsonSql(f)}`).join(', ')}`);
      const old = d.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'resources' AND (name LIKE 'resources\\_os\\_%' ESCAPE '\\' OR name LIKE 'resources\\_f\\_%' ESCAPE '\\')").all() as Array<{ name: string }>;
      for (const i of old) d.exec(`DROP INDEX IF EXISTS "${i.name}"`);
      const all = [...new Set([...existing, ...this.indexed])].sort();
      // each field's index in the shape this store wants; one of the other shape (an earlier
      // version's, or a store opened with other compound indexes) goes
      const named = new Set((d.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'resources'").all() as Array<{ name: string }>).map((r) => r.name));
      let reshaped = 0;
      for (const f of all) {
        checkField(f);
        const w = this.withState.has(f);
        if (named.has(indexName(f, !w))) {
          d.exec(`DROP INDEX IF EXISTS "${indexName(f, !w)}"`);
          reshaped++;
        }
        d.exec(indexSql(f, w));
      }
      const rows = (d.prepare('SELECT EXISTS (SELECT 1 FROM resources) AS n').get() as { n: number }).n === 1;
      return { cols: all, changed: rows && (missing.length > 0 || old.length > 0 || reshaped > 0) };
    });
    return tx.immediate();
  }

  async close(): Promise<void> {
    this.runTx = undefined;
    this.stmts.clear();
    this.counts.clear();
    this.db?.close();
    this.db = undefined;
  }

  private get d(): Database.Database {
    if (!this.db) throw new TStackError('INTERNAL', 'sqlite store: init() was not called or the store is closed');
    return this.db;
  }

  /** Prepared statements by SQL text (preparing costs more than running a small query); bounded. */
  private stmts = new Map<string, Database.Statement>();
  private prep(sql: string, raw = false): Database.Statement {
    const key = raw ? `raw:${sql}` : sql;
    let st = this.stmts.get(key);
    if (!st) {
      if (this.stmts.size >= 512) this.stmts.delete(this.stmts.keys().next().value!);
      st = this.d.prepare(sql);
      if (raw) st.raw(true);
      this.stmts.set(key, st);
    }
    return st;
  }

  /** prep() of a statement giving rows as arrays (its own entry: raw() changes the statement). */
  private prepRaw(sql: string): Database.Statement {
    return this.prep(sql, true);
  }

  /**
   * Statistics for the query planner: without them SQLite walks a kind's create_date index (it
   * satisfies the ORDER BY) instead of the index of an equality filter, reading every NIC or
   * volume to find one VM's (issue 19). PRAGMA optimize re-analyzes only what changed a lot
   * (a few ms); run at open and after every 2,000 resource writes.
   */
  private writesSinceOptimize = 0;
  private optimize(): void {
    this.writesSinceOptimize = 0;
    try {
      this.d.pragma('optimize');
    } catch {
      // busy (another process writes): the next round tries again
    }
  }

  private analyze(): void {
    this.writesSinceOptimize = 0;
    try {
      this.d.exec('ANALYZE');
    } catch {
      // busy: PRAGMA optimize at the next round still refines the statistics
    }
  }

  private counted(): void {
    // after the current transaction, not inside it
    if (++this.writesSinceOptimize === 2000) setImmediate(() => this.optimize());
  }

  /**
   * Run fn in a BEGIN IMMEDIATE transaction. One transaction function per connection, given the
   * work as an argument: better-sqlite3 builds each transaction function with four variants and
   * their properties, and making one per write was 1.1 s self of a 10k-VM run (issue 19).
   */
  private runTx: Database.Transaction<(fn: () => unknown) => unknown> | undefined;
  private immediate<T>(fn: () => T): T {
    this.runTx ??= this.d.transaction((f: () => unknown) => f());
    return this.runTx.immediate(fn) as T;
  }

  private insert(r: Resource): void {
    this.counted();
    const st = storedText(r);
    const args: Bind[] = [r.uuid, r.kind, r.parentUuid ?? null, r.state ?? null, r.ownerAccountUuid ?? null, r.name ?? null, r.createDate, r.lastOpDate, st.text, st.viewLen];
    for (const f of this.cols) args.push(columnValue(r, f));
    this.prep(this.insertSql).run(...args);
  }

  /** Rewrite a row from `cur` (its view_len `curViewLen`) to `next`: the body, and only the columns whose value changed. */
  private rewrite(cur: Resource, curViewLen: number | null, next: Resource): void {
    this.counted();
    let set = 'last_op_date=?, body=?, view_len=?';
    const st = storedText(next);
    const args: Bind[] = [next.lastOpDate, st.text, viewLenAfter(curViewLen, st.viewLen)];
    for (const [field, col] of COMMON_MUTABLE) {
      const v = bindValue(next[field]);
      if (v !== bindValue(cur[field])) {
        set += `, ${col}=?`;
        args.push(v);
      }
    }
    for (const f of this.cols) {
      const v = columnValue(next, f);
      if (v !== columnValue(cur, f)) {
        set += `, ${fieldCol(f)}=?`;
        args.push(v);
      }
    }
    args.push(next.uuid);
    this.prep(`UPDATE resources SET ${set} WHERE uuid=?`).run(...args);
  }

  private read<T extends Resource>(uuid: string): T | undefined {
    const row = this.prep('SELECT body FROM resources WHERE uuid = ?').get(uuid) as Row | undefined;
    return row ? (JSON.parse(row.body) as T) : undefined;
  }

  /** A resource to rewrite, with its row's view_len. */
  private readForWrite<T extends Resource>(uuid: string): { cur: T; viewLen: number | null } | undefined {
    const row = this.prep('SELECT body, view_len FROM resources WHERE uuid = ?').get(uuid) as ViewRow | undefined;
    return row ? { cur: JSON.parse(row.body) as T, viewLen: row.view_len } : undefined;
  }

  /** insert(), an existing uuid as CONFLICT. */
  private insertNew(r: Resource): void {
    try {
      this.insert(r);
    } catch (e) {
      if ((e as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) throw new TStackError('CONFLICT', `${r.kind} ${r.uuid} already exists`, { uuid: r.uuid, kind: r.kind });
      throw e;
    }
  }

  async create<T extends Resource>(r: T): Promise<T> {
    const res = prepareNew(r, nowIso());
    this.insertNew(res);
    return res;
  }

  async createMany<T extends Resource>(rs: T[]): Promise<T[]> {
    // each its own instant, as separate creates would have: the list order is the given order
    const out = rs.map((r) => prepareNew(r, nowIso()));
    this.immediate((): void => {
      for (const r of out) this.insertNew(r);
    });
    return out;
  }

  async batch(writes: StoreWrite[]): Promise<Array<Resource | undefined>> {
    if (writes.length === 0) return [];
    return this.immediate((): Array<Resource | undefined> =>
      writes.map((w): Resource | undefined => {
        switch (w.op) {
          case 'create': {
            const res = prepareNew(w.resource, nowIso());
            this.insertNew(res);
            return res;
          }
          case 'update':
            return this.updateRow(w.uuid, w.patch);
          case 'transition':
            return this.transitionRow(w.uuid, asList(w.from), w.to, w.patch ?? {});
          case 'putDoc':
            this.writeDoc(w.collection, w.id, w.doc);
            return undefined;
          case 'deleteDoc':
            this.removeDoc(w.collection, w.id);
            return undefined;
          case 'claim': {
            const holder = this.claimRow(w.namespace, w.key, w.owner);
            if (holder !== undefined) throw claimConflict(w.namespace, w.key, holder);
            return undefined;
          }
          case 'release':
            this.releaseRow(w.namespace, w.key, w.owner);
            return undefined;
        }
      }),
    );
  }

  async get<T extends Resource = Resource>(uuid: string): Promise<T | undefined> {
    return this.read<T>(uuid);
  }

  /** An update's read and rewrite (inside a transaction). */
  private updateRow<T extends Resource>(uuid: string, patch: Partial<Resource>): T {
    const row = this.readForWrite<T>(uuid);
    if (!row) throw new TStackError('NOT_FOUND', `resource ${uuid} not found`, { uuid });
    const next = applyPatch(row.cur, patch, nowIso());
    this.rewrite(row.cur, row.viewLen, next);
    return next;
  }

  async update<T extends Resource = Resource>(uuid: string, patch: Partial<Resource>): Promise<T> {
    return this.immediate((): T => this.updateRow<T>(uuid, patch));
  }

  async transition<T extends Resource = Resource>(uuid: string, from: string | string[], to: string, patch: Partial<Resource> = {}): Promise<T> {
    const allowed = asList(from);
    return this.immediate((): T => this.transitionRow<T>(uuid, allowed, to, patch));
  }

  /** A transition's check, read and rewrite (inside a transaction). */
  private transitionRow<T extends Resource>(uuid: string, allowed: string[], to: string, patch: Partial<Resource>): T {
    const row = this.readForWrite<T>(uuid);
    if (!row) throw new TStackError('NOT_FOUND', `resource ${uuid} not found`, { uuid });
    const cur = row.cur;
    if (!allowed.includes(cur.state ?? '')) {
      throw transitionConflict(cur, allowed, to);
    }
    const next = applyPatch(cur, { ...patch, state: to }, nowIso());
    this.rewrite(cur, row.viewLen, next);
    return next;
  }

  async delete(uuid: string): Promise<boolean> {
    return this.prep('DELETE FROM resources WHERE uuid = ?').run(uuid).changes > 0;
  }

  /** The count's WHERE (when the query wants one) and the page statement of a query, with their parameters. */
  private listSql(q: Query, columns = 'body'): { count?: { where: string; params: Bind[] }; page: { sql: string; params: Bind[] } } {
    checkQuery(q);
    const params: Bind[] = [q.kind];
    const where = ['kind = ?'];
    if (q.ownerAccountUuid !== undefined) {
      where.push('owner = ?');
      params.push(q.ownerAccountUuid);
    }
    for (const f of q.filters ?? []) where.push(filterSql(f, params, this.indexed));
    const whereSql = where.join(' AND ');
    // unpaged: the total is the number of rows (no COUNT query)
    const paged = q.limit !== undefined || (q.start ?? 0) > 0 || q.after !== undefined;
    const count = !q.skipTotal && paged ? { where: whereSql, params } : undefined;
    const pageParams = [...params];
    // sort=createDate (ascending) is the default order: said once, the planner walks an index in it
    const sort = q.sort?.field === 'createDate' && q.sort.dir !== 'desc' ? undefined : q.sort;
    const pageWhere = q.after === undefined ? whereSql : `${whereSql} AND ${afterSql(q.after, sort, pageParams, this.indexed)}`;
    let order = '';
    if (sort) order = `${fieldSql(sort.field, this.indexed)} ${sort.dir === 'desc' ? 'DESC' : 'ASC'}, `;
    order += 'create_date ASC, uuid ASC';
    pageParams.push(q.limit ?? -1, q.start ?? 0);
    return { ...(count ? { count } : {}), page: { sql: `SELECT ${columns} FROM resources WHERE ${pageWhere} ORDER BY ${order} LIMIT ? OFFSET ?`, params: pageParams } };
  }

  async list<T extends Resource = Resource>(q: Query): Promise<QueryResult<T>> {
    const { count, page } = this.listSql(q);
    const total = q.skipTotal ? -1 : count ? this.count(count.where, count.params) : undefined;
    const rows = this.prep(page.sql).all(...page.params) as Row[];
    return { items: rows.map((r) => JSON.parse(r.body) as T), total: total ?? rows.length };
  }

  async listViews(q: Query): Promise<ViewPage> {
    const { count, page } = this.listSql(q, 'body, view_len');
    const total = q.skipTotal ? -1 : count ? this.count(count.where, count.params) : undefined;
    // rows as arrays [body, view_len]: no object per row
    const rows = this.prepRaw(page.sql).all(...page.params) as Array<[string, number | null]>;
    const views: string[] = new Array<string>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const [body, len] = rows[i]!;
      views[i] = len === null ? JSON.stringify(viewOf(JSON.parse(body) as Resource)) : viewText(body, Math.abs(len));
    }
    return { views, total: total ?? rows.length, item: (i) => JSON.parse(rows[i]![0]) as Resource };
  }

  /**
   * Counts of paged lists, kept while nothing is written (issue 19: counting a host's 2,000
   * Running VMs costs more than reading its page of 50). Never stale: they are dropped when the
   * connection's total_changes() (every row it wrote) or data_version (commits of any other
   * connection, another process on the file) moves.
   */
  private counts = new Map<string, number>();
  private countsAt = '';
  private count(whereSql: string, params: Bind[]): number {
    const g = this.prep('SELECT total_changes() AS c, (SELECT data_version FROM pragma_data_version) AS v').get() as { c: number; v: number };
    const at = `${g.c}:${g.v}`;
    if (at !== this.countsAt) {
      this.counts.clear();
      this.countsAt = at;
    }
    const key = `${whereSql}\0${JSON.stringify(params)}`;
    let n = this.counts.get(key);
    if (n === undefined) {
      n = (this.prep(`SELECT COUNT(*) AS n FROM resources WHERE ${whereSql}`).get(...params) as { n: number }).n;
      if (this.counts.size >= 1024) this.counts.clear();
      this.counts.set(key, n);
    }
    return n;
  }

  /** EXPLAIN QUERY PLAN of a list's page statement, one step a line (tests and benchmarks). */
  planOf(q: Query): string {
    const { page } = this.listSql(q);
    const rows = this.d.prepare(`EXPLAIN QUERY PLAN ${page.sql}`).all(...page.params) as Array<{ detail: string }>;
    return rows.map((r) => r.detail).join('\n');
  }

  async byParent<T extends Resource = Resource>(kind: string, parentUuid: string): Promise<T[]> {
    // INDEXED BY: without statistics the planner walks the kind's create_date index (ORDER BY)
    const rows = this.prep('SELECT body FROM resources INDEXED BY resources_parent WHERE kind = ? AND parent_uuid = ? ORDER BY create_date, uuid').all(kind, parentUuid) as Row[];
    return rows.map((r) => JSON.parse(r.body) as T);
  }

  async byState<T extends Resource = Resource>(kind: string, state: string): Promise<T[]> {
    const rows = this.prep('SELECT body FROM resources WHERE kind = ? AND state = ? ORDER BY create_date, uuid').all(kind, state) as Row[];
    return rows.map((r) => JSON.parse(r.body) as T);
  }

  /** A claim's insert (inside a transaction): undefined when granted, else the other owner holding it. */
  private claimRow(namespace: string, key: string, owner: string): string | undefined {
    const ins = this.prep('INSERT OR IGNORE INTO claims (ns, key, owner, create_date) VALUES (?,?,?,?)').run(namespace, key, owner, nowIso());
    if (ins.changes > 0) return undefined;
    const row = this.prep('SELECT owner FROM claims WHERE ns = ? AND key = ?').get(namespace, key) as { owner: string } | undefined;
    return row?.owner === owner ? undefined : (row?.owner ?? '');
  }

  private releaseRow(namespace: string, key: string, owner: string | undefined): void {
    if (owner === undefined) this.prep('DELETE FROM claims WHERE ns = ? AND key = ?').run(namespace, key);
    else this.prep('DELETE FROM claims WHERE ns = ? AND key = ? AND owner = ?').run(namespace, key, owner);
  }

  async claim(namespace: string, key: string, owner: string): Promise<boolean> {
    return this.immediate((): boolean => this.claimRow(namespace, key, owner) === undefined);
  }

  async release(namespace: string, key: string, owner?: string): Promise<void> {
    this.releaseRow(namespace, key, owner);
  }

  async claims(namespace: string): Promise<Array<{ key: string; owner: string }>> {
    return this.prep('SELECT key, owner FROM claims WHERE ns = ? ORDER BY key').all(namespace) as Array<{ key: string; owner: string }>;
  }

  async reserve(r: Reservation): Promise<QuotaExceeded | undefined> {
    return this.immediate((): QuotaExceeded | undefined => {
      const held = (holder: string, name: string): number =>
        (this.prep('SELECT amount FROM quota_holds WHERE scope = ? AND holder = ? AND name = ?').get(r.scope, holder, name) as { amount: number } | undefined)?.amount ?? 0;
      const plan: Array<{ name: string; amount: number; cover: number }> = [];
      for (const [name, amount] of Object.entries(r.amounts)) {
        const delta = amount - held(r.holder, name);
        const cover = r.from !== undefined && delta > 0 ? Math.min(held(r.from, name), delta) : 0;
        const limit = r.limits?.[name];
        if (limit !== undefined && delta > cover) {
          const used = (this.prep('SELECT COALESCE(SUM(amount), 0) AS n FROM quota_holds WHERE scope = ? AND name = ?').get(r.scope, name) as { n: number }).n;
          if (used + delta - cover > limit) return { name, limit, used, requested: amount };
        }
        plan.push({ name, amount, cover });
      }
      const put = this.prep('INSERT INTO quota_holds (scope, holder, name, amount) VALUES (?,?,?,?) ON CONFLICT (scope, holder, name) DO UPDATE SET amount = excluded.amount');
      for (const p of plan) {
        put.run(r.scope, r.holder, p.name, p.amount);
        if (p.cover > 0) put.run(r.scope, r.from!, p.name, held(r.from!, p.name) - p.cover);
      }
      return undefined;
    });
  }

  async unreserve(scope: string, holder: string): Promise<void> {
    this.prep('DELETE FROM quota_holds WHERE scope = ? AND holder = ?').run(scope, holder);
  }

  async reserved(scope: string): Promise<Record<string, number>> {
    const rows = this.prep('SELECT name, SUM(amount) AS n FROM quota_holds WHERE scope = ? GROUP BY name').all(scope) as Array<{ name: string; n: number }>;
    return Object.fromEntries(rows.map((x) => [x.name, x.n]));
  }

  async holders(scope: string): Promise<Array<{ holder: string; amounts: Record<string, number> }>> {
    const rows = this.prep('SELECT holder, name, amount FROM quota_holds WHERE scope = ? ORDER BY holder, name').all(scope) as Array<{ holder: string; name: string; amount: number }>;
    const m = new Map<string, Record<string, number>>();
    for (const x of rows) {
      let a = m.get(x.holder);
      if (!a) m.set(x.holder, (a = {}));
      a[x.name] = x.amount;
    }
    return [...m].map(([holder, amounts]) => ({ holder, amounts }));
  }

  async putDoc(collection: string, id: string, doc: unknown): Promise<void> {
    this.writeDoc(collection, id, doc);
  }

  private writeDoc(collection: string, id: string, doc: unknown): void {
    this.prep('INSERT INTO docs (collection, id, body, last_op_date) VALUES (?,?,?,?) ON CONFLICT (collection, id) DO UPDATE SET body = excluded.body, last_op_date = excluded.last_op_date').run(collection, id, JSON.stringify(doc ?? null), nowIso());
  }

  async getDoc<T = unknown>(collection: string, id: string): Promise<T | undefined> {
    const row = this.prep('SELECT body FROM docs WHERE collection = ? AND id = ?').get(collection, id) as Row | undefined;
    return row ? (JSON.parse(row.body) as T) : undefined;
  }

  async deleteDoc(collection: string, id: string): Promise<void> {
    this.removeDoc(collection, id);
  }

  private removeDoc(collection: string, id: string): void {
    this.prep('DELETE FROM docs WHERE collection = ? AND id = ?').run(collection, id);
  }

  async listDocs<T = unknown>(collection: string): Promise<Array<{ id: string; doc: T }>> {
    const rows = this.prep('SELECT id, body FROM docs WHERE collection = ? ORDER BY id').all(collection) as Array<{ id: string; body: string }>;
    return rows.map((r) => ({ id: r.id, doc: JSON.parse(r.body) as T }));
  }
}
