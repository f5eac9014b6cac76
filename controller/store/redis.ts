// Redis inventory (ioredis), for several controllers sharing one inventory.
// Keys (all under `prefix`):
//   r:<uuid>                 the resource as JSON
//   k:<kind>                 set of uuids of a kind
//   p:<kind>:<parentUuid>    set, by parent
//   s:<kind>:<state>         set, by state
//   o:<kind>:<owner>         set, by owner account
//   f:<kind>:<field>:<value> set, by an indexed field (KindDef.indexes)
//   x:<kind>:<f1+f2>:<len1>:<v1>:<len2>:<v2>  set, by a compound index (KindDef.compoundIndexes)
//   z:<kind>                 sorted set of uuids by createDate (ms), for ordered pages
//   pz: sz: oz: fz: xz:      the same for each p: s: o: f: x: set (same members, createDate scores)
//   meta:indexed             the layout the sets were last built for (reindexIfChanged)
//   meta:compound            the compound indexes reads may use (checkLayout)
//   c:<namespace>            hash key -> owner (claims)
//   d:<collection>           hash id -> JSON (docs)
//   qt:<scope>               hash quota name -> total reserved (the quota ledger)
//   qh:<scope>:<holder>      hash quota name -> amount held by one holder
//   qs:<scope>               set of holders
// Every resource write goes through one Lua compare-and-swap script that also maintains the
// index sets, so a resource and its indexes never disagree and concurrent read-modify-write
// (update, transition) is optimistic: read, compute, CAS, retry on a lost race.
// A page in createDate order whose filters the sets answer exactly is cut in Redis (LIST_PAGE,
// reading only the page's records); other queries narrow candidates with the index sets, then
// filter/sort/page in JS with the same evaluator (query.ts) whose semantics mirror SQLite's.
// A compound index is read only while meta:compound names it, set once every live controller
// maintains it (their heartbeats name their layout) and the sets were rebuilt (checkLayout):
// a controller of an older version writes without it. LIST_PAGE checks that in the same script.
// Not for Redis Cluster: the script touches index keys it does not declare.
import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { TStackError } from '../../shared/errors.js';
import { claimConflict } from './claim-conflict.js';
import type { InventoryStore, Query, QueryResult, QuotaExceeded, Reservation, Resource, StoreWrite } from './types.js';
import { INDEXED_FIELDS, checkCompoundIndexes, checkIndexedFields } from './indexes.js';
import { BATCH, CAS, CREATE_MANY, REINDEX, LIST_PAGE, CLAIM, RELEASE_IF_OWNER, RESERVE, UNRESERVE, COMPOUND_ON } from './redis-scripts.js';
import { NUMERIC_RE, applyPatch, asList, checkQuery, transitionConflict, compareResources, matchesAll, prepareNew, nowIso, runQuery } from './query.js';

const MAX_CAS_RETRIES = 200;
/** A controller heartbeat (jobs, every 15 s by default) younger than this is a live writer. */
const LIVE_WRITER_MS = 60_000;
/** The controllers' heartbeats (controller/jobs/jobs.ts): id → {at, store: its layout}. */
const CONTROLLER_DOCS = 'controllers';

/** SHA1 of each script text (EVALSHA). */
const shas = new Map<string, string>();

const plainString = (v: unknown): v is string => typeof v === 'string' && !NUMERIC_RE.test(v);

export interface RedisStoreOptions {
  url: string;
  /** Key prefix, so several inventories (or test runs) can share one server. Default 'tstack:'. */
  prefix?: string;
  /** Fields with index sets (the controller passes those its kinds declare); default INDEXED_FIELDS. */
  indexedFields?: readonly string[];
  /** Field combinations with a set per combination of values (KindDef.compoundIndexes); default none. */
  compoundIndexes?: ReadonlyArray<readonly string[]>;
  /** How often the store looks at the other controllers' layouts (checkLayout); default 10 s. */
  layoutCheckMs?: number;
}

export class RedisStore implements InventoryStore {
  readonly backend = 'redis' as const;
  private client: Redis | undefined;
  private readonly prefix: string;
  private readonly indexed: ReadonlySet<string>;
  /** Compound indexes, their fields (sorted) joined by '+', with the fields. */
  private readonly combos: Array<{ name: string; fields: string[] }>;
  /** ARGV[2] of the scripts: the indexed fields, then '|' and the compound indexes (when any). */
  private readonly fieldsArg: string;
  /** meta:compound when this store's compound indexes are on. */
  private readonly combosTag: string;
  readonly layout: string;
  /** Whether the compound indexes were on when last seen (a read finding them off clears it). */
  private compoundOn = false;
  private layoutTimer: NodeJS.Timeout | undefined;
  private readonly layoutCheckMs: number;
  /** Since when every check found no other layout live (and the compound indexes off). */
  private aloneSince: number | undefined;

  constructor(private readonly opts: RedisStoreOptions) {
    this.prefix = opts.prefix ?? 'tstack:';
    const fields = checkIndexedFields(opts.indexedFields ?? INDEXED_FIELDS);
    this.indexed = new Set(fields);
    const combos = checkCompoundIndexes(opts.compoundIndexes ?? []);
    this.combos = combos.map((name) => ({ name, fields: name.split('+') })).sort((a, b) => b.fields.length - a.fields.length);
    this.combosTag = combos.join(',');
    this.fieldsArg = combos.length ? `${fields.join(',')}|${this.combosTag}` : fields.join(',');
    // the value also names the layout version: z1 = the kind's createDate sorted set, z2 = one
    // for every index set too (pz/sz/oz/fz, walked by LIST_PAGE); x: sets are named in fieldsArg
    this.layout = `${this.fieldsArg}|z2`;
    this.layoutCheckMs = opts.layoutCheckMs ?? 10_000;
  }

  async init(): Promise<void> {
    if (this.client) return;
    // auto-pipelining: the commands of concurrent requests issued in one tick go out in one
    // write (a syscall per small command was a large part of the controller's CPU under load)
    const c = new Redis(this.opts.url, { lazyConnect: true, maxRetriesPerRequest: 3, enableReadyCheck: true, enableAutoPipelining: true });
    c.on('error', () => {
      /* connection errors surface on the commands; avoid unhandled 'error' events */
    });
    await c.connect();
    this.client = c;
    await this.checkLayout(true);
    if (this.combos.length) {
      this.layoutTimer = setInterval(() => void this.checkLayout().catch(() => undefined), this.layoutCheckMs);
      this.layoutTimer.unref();
    }
  }

  /** Whether reads use the compound indexes (as last seen). */
  get compoundIndexesOn(): boolean {
    return this.compoundOn;
  }

  /**
   * Turn the compound indexes on or off (at init, then every layoutCheckMs; tests call it).
   * A controller of an older version (or other indexes) writes without maintaining them, so they
   * are off while one may be writing: a live heartbeat naming another layout, or meta:indexed
   * rewritten by another layout's start (reindexIfChanged). Turned on only after no other layout
   * was seen for a whole check period (a controller that just started has heartbeaten by then),
   * then a rebuild (every x: set emptied, every record indexed again: what such a writer left
   * stale goes), by one store at a time, and only if still no other layout is live at the end.
   * A store never written (no meta:indexed) turns them on at once.
   */
  async checkLayout(atInit = false): Promise<void> {
    const [indexed, compound] = await this.r.mget(`${this.prefix}meta:indexed`, `${this.prefix}meta:compound`);
    if (!this.combos.length) {
      this.compoundOn = false;
      if (atInit && indexed !== this.layout) await this.reindexIfChanged();
      return;
    }
    const alone = await this.onlyThisLayoutLive();
    if (indexed === this.layout && compound === this.combosTag && alone) {
      this.compoundOn = true;
      return;
    }
    this.compoundOn = false;
    if (compound !== null && (!alone || indexed !== this.layout)) await this.r.del(`${this.prefix}meta:compound`);
    if (!alone) {
      this.aloneSince = undefined;
      if (atInit && indexed !== this.layout) await this.reindexIfChanged();
      return;
    }
    const now = Date.now();
    if (indexed === null || (this.aloneSince !== undefined && now - this.aloneSince >= this.layoutCheckMs)) await this.rebuildCompound();
    else {
      this.aloneSince ??= now;
      // the single-field sets meanwhile, as before there were compound ones
      if (atInit && indexed !== this.layout) await this.reindexIfChanged();
    }
  }

  /** No live controller heartbeat names a layout other than this store's. */
  private async onlyThisLayoutLive(): Promise<boolean> {
    const h = await this.r.hgetall(`${this.prefix}d:${CONTROLLER_DOCS}`);
    const now = Date.now();
    for (const v of Object.values(h)) {
      let d: { at?: unknown; store?: unknown };
      try {
        d = JSON.parse(v) as { at?: unknown; store?: unknown };
      } catch {
        continue;
      }
      if (typeof d?.at === 'number' && now - d.at < LIVE_WRITER_MS && d.store !== this.layout) return false;
    }
    return true;
  }

  /** The x: sets built again from the records, then the compound indexes on (one store at a time). */
  private async rebuildCompound(): Promise<void> {
    const lock = `${this.prefix}meta:compound-build`;
    const token = randomUUID();
    if ((await this.r.set(lock, token, 'PX', 600_000, 'NX')) !== 'OK') return;
    try {
      let cursor = '0';
      do {
        const [next, keys] = await this.r.scan(cursor, 'MATCH', `${this.prefix}x*:*`, 'COUNT', 1000);
        cursor = next;
        const xs = keys.filter((k) => k.startsWith(`${this.prefix}x:`) || k.startsWith(`${this.prefix}xz:`));
        if (xs.length) await this.r.del(...xs);
      } while (cursor !== '0');
      await this.reindexAll();
      // a controller of another layout that started meanwhile: stay off (the next check rebuilds)
      if (!(await this.onlyThisLayoutLive())) return;
      this.compoundOn = (await this.script(COMPOUND_ON, 0, this.prefix, token, this.layout, this.combosTag)) === 1;
    } finally {
      await this.r.eval(`if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 1`, 1, lock, token);
    }
  }

  /**
   * Records written while other fields were indexed (an older controller) are missing from the
   * new fields' sets: index every record again once. Sets only ever narrow candidates that the
   * query then checks in full, so a stale member is harmless and a missing one is not (the
   * compound indexes, whose count is their set's size, are rebuilt instead: rebuildCompound).
   */
  private async reindexIfChanged(): Promise<void> {
    // Several controllers starting at once all index again: REINDEX reads each record itself,
    // so that is idempotent.
    if ((await this.r.get(`${this.prefix}meta:indexed`)) === this.layout) return;
    await this.reindexAll();
    await this.r.set(`${this.prefix}meta:indexed`, this.layout);
  }

  private async reindexAll(): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.r.scan(cursor, 'MATCH', `${this.prefix}k:*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) {
        const uuids = await this.r.smembers(k);
        // bounded batches: one script holds Redis for a few milliseconds at a time
        for (let i = 0; i < uuids.length; i += 500) await this.script(REINDEX, 0, this.prefix, this.fieldsArg, ...uuids.slice(i, i + 500));
      }
    } while (cursor !== '0');
  }

  async close(): Promise<void> {
    clearInterval(this.layoutTimer);
    this.layoutTimer = undefined;
    const c = this.client;
    this.client = undefined;
    if (c) await c.quit().catch(() => c.disconnect());
  }

  private get r(): Redis {
    if (!this.client) throw new TStackError('INTERNAL', 'redis store: init() was not called or the store is closed');
    return this.client;
  }

  /**
   * Run a Lua script by its SHA1 (EVALSHA), sending its text only when the server does not
   * know it yet: the write scripts are kilobytes, and sending them with every write and list
   * was most of the controller's Redis traffic.
   */
  private async script(lua: string, numKeys: number, ...args: Array<string | number>): Promise<unknown> {
    let sha = shas.get(lua);
    if (sha === undefined) shas.set(lua, (sha = createHash('sha1').update(lua).digest('hex')));
    try {
      return await this.r.evalsha(sha, numKeys, ...args);
    } catch (e) {
      if (!String((e as Error).message).startsWith('NOSCRIPT')) throw e;
      return this.r.eval(lua, numKeys, ...args);
    }
  }

  private key(uuid: string): string {
    return `${this.prefix}r:${uuid}`;
  }

  private async cas(uuid: string, expected: string, next: string): Promise<boolean> {
    const ok = await this.script(CAS, 1, this.key(uuid), this.prefix, this.fieldsArg, expected, next);
    return ok === 1;
  }

  async create<T extends Resource>(r: T): Promise<T> {
    const res = prepareNew(r, nowIso());
    if (!(await this.cas(res.uuid, '', JSON.stringify(res)))) {
      throw new TStackError('CONFLICT', `${r.kind} ${r.uuid} already exists`, { uuid: r.uuid, kind: r.kind });
    }
    return res;
  }

  async createMany<T extends Resource>(rs: T[]): Promise<T[]> {
    // each its own instant, as separate creates would have: the list order is the given order
    const out = rs.map((r) => prepareNew(r, nowIso()));
    if (out.length === 0) return out;
    const at = (await this.script(CREATE_MANY, out.length, ...out.map((r) => this.key(r.uuid)), this.prefix, this.fieldsArg, ...out.map((r) => JSON.stringify(r)))) as number;
    if (at > 0) {
      const r = out[at - 1]!;
      throw new TStackError('CONFLICT', `${r.kind} ${r.uuid} already exists`, { uuid: r.uuid, kind: r.kind });
    }
    return out;
  }

  /**
   * One BATCH script: the records the updates change are read first (one MGET), every write is
   * computed in JS (a later write of the same record on the earlier one's result), and the script
   * writes all only if none of those records moved meanwhile; else read again and retry (as
   * modify() does for one record).
   */
  async batch(writes: StoreWrite[]): Promise<Array<Resource | undefined>> {
    if (writes.length === 0) return [];
    const updated = [...new Set(writes.flatMap((w) => (w.op === 'update' || w.op === 'transition' ? [w.uuid] : [])))];
    for (let attempt = 0; attempt < MAX_CAS_RETRIES; attempt++) {
      const raws = updated.length ? await this.r.mget(...updated.map((u) => this.key(u))) : [];
      // per record: the JSON expected in Redis ('' = absent) and its latest version in this batch
      const recs = new Map<string, { expected: string; next: Resource | undefined }>();
      updated.forEach((u, i) => recs.set(u, { expected: raws[i] ?? '', next: raws[i] == null ? undefined : (JSON.parse(raws[i]!) as Resource) }));
      const docs: Array<{ key: string; op: 'put' | 'del'; id: string; body: string }> = [];
      const claims: Array<{ namespace: string; op: 'claim' | 'release' | 'release-any'; key: string; owner: string }> = [];
      const out = writes.map((w): Resource | undefined => {
        switch (w.op) {
          case 'create': {
            const res = prepareNew(w.resource, nowIso());
            const had = recs.get(res.uuid);
            if (had?.next) throw new TStackError('CONFLICT', `${res.kind} ${res.uuid} already exists`, { uuid: res.uuid, kind: res.kind });
            recs.set(res.uuid, { expected: had?.expected ?? '', next: res });
            return res;
          }
          case 'update': {
            const rec = recs.get(w.uuid)!;
            if (!rec.next) throw new TStackError('NOT_FOUND', `resource ${w.uuid} not found`, { uuid: w.uuid });
            rec.next = applyPatch(rec.next, w.patch, nowIso());
            return rec.next;
          }
          case 'transition': {
            // checked on what this attempt read: the script writes only if that is still the record
            const rec = recs.get(w.uuid)!;
            if (!rec.next) throw new TStackError('NOT_FOUND', `resource ${w.uuid} not found`, { uuid: w.uuid });
            const allowed = asList(w.from);
            if (!allowed.includes(rec.next.state ?? '')) throw transitionConflict(rec.next, allowed, w.to);
            rec.next = applyPatch(rec.next, { ...w.patch, state: w.to }, nowIso());
            return rec.next;
          }
          case 'putDoc':
            docs.push({ key: `${this.prefix}d:${w.collection}`, op: 'put', id: w.id, body: JSON.stringify(w.doc ?? null) });
            return undefined;
          case 'deleteDoc':
            docs.push({ key: `${this.prefix}d:${w.collection}`, op: 'del', id: w.id, body: '' });
            return undefined;
          case 'claim':
            claims.push({ namespace: w.namespace, op: 'claim', key: w.key, owner: w.owner });
            return undefined;
          case 'release':
            claims.push({ namespace: w.namespace, op: w.owner === undefined ? 'release-any' : 'release', key: w.key, owner: w.owner ?? '' });
            return undefined;
        }
      });
      const res = [...recs].filter(([, r]) => r.next !== undefined) as Array<[string, { expected: string; next: Resource }]>;
      const args: string[] = [String(res.length), String(docs.length)];
      for (const [, r] of res) args.push(r.expected, JSON.stringify(r.next));
      for (const d of docs) args.push(d.op, d.id, d.body);
      for (const c of claims) args.push(c.op, c.key, c.owner);
      const keys = [...res.map(([u]) => this.key(u)), ...docs.map((d) => d.key), ...claims.map((c) => `${this.prefix}c:${c.namespace}`)];
      const at = (await this.script(BATCH, keys.length, ...keys, this.prefix, this.fieldsArg, ...args)) as number;
      if (at === 0) return out;
      if (at < 0) {
        const c = claims[-at - 1]!;
        // the holder as it is now (the error's detail only)
        throw claimConflict(c.namespace, c.key, (await this.r.hget(`${this.prefix}c:${c.namespace}`, c.key)) ?? undefined);
      }
      const [uuid, r] = res[at - 1]!;
      // a record this batch creates exists already: CONFLICT; one it updates moved: again
      if (r.expected === '' && !updated.includes(uuid)) throw new TStackError('CONFLICT', `${r.next.kind} ${uuid} already exists`, { uuid, kind: r.next.kind });
    }
    throw new TStackError('CONFLICT', 'batch: too many concurrent writers, try again');
  }

  async get<T extends Resource = Resource>(uuid: string): Promise<T | undefined> {
    const s = await this.r.get(this.key(uuid));
    return s === null ? undefined : (JSON.parse(s) as T);
  }

  /** Optimistic read-modify-write: `change` returns the next version or throws. */
  private async modify<T extends Resource>(uuid: string, change: (cur: T) => T): Promise<T> {
    for (let i = 0; i < MAX_CAS_RETRIES; i++) {
      const raw = await this.r.get(this.key(uuid));
      if (raw === null) throw new TStackError('NOT_FOUND', `resource ${uuid} not found`, { uuid });
      const next = change(JSON.parse(raw) as T);
      if (await this.cas(uuid, raw, JSON.stringify(next))) return next;
    }
    throw new TStackError('CONFLICT', `resource ${uuid}: too many concurrent writers, try again`, { uuid });
  }

  async update<T extends Resource = Resource>(uuid: string, patch: Partial<Resource>): Promise<T> {
    return this.modify<T>(uuid, (cur) => applyPatch(cur, patch, nowIso()));
  }

  async transition<T extends Resource = Resource>(uuid: string, from: string | string[], to: string, patch: Partial<Resource> = {}): Promise<T> {
    const allowed = asList(from);
    return this.modify<T>(uuid, (cur) => {
      if (!allowed.includes(cur.state ?? '')) {
        throw transitionConflict(cur, allowed, to);
      }
      return applyPatch(cur, { ...patch, state: to }, nowIso());
    });
  }

  async delete(uuid: string): Promise<boolean> {
    return this.cas(uuid, '*', '');
  }

  private async load<T extends Resource>(uuids: string[]): Promise<T[]> {
    const out: T[] = [];
    for (let i = 0; i < uuids.length; i += 500) {
      const chunk = uuids.slice(i, i + 500);
      if (chunk.length === 0) break;
      const vals = await this.r.mget(...chunk.map((u) => this.key(u)));
      for (const v of vals) if (v !== null) out.push(JSON.parse(v) as T);
    }
    return out;
  }

  async list<T extends Resource = Resource>(q: Query): Promise<QueryResult<T>> {
    checkQuery(q);
    // the filters the index sets answer exactly: field = value
    const exact: Array<[string, string]> = [];
    if (q.ownerAccountUuid !== undefined) exact.push(['ownerAccountUuid', q.ownerAccountUuid]);
    let inexact = 0;
    for (const f of q.filters ?? []) {
      // a non-numeric text: the set holds exactly the candidates (a numeric text also matches numbers)
      if (f.op === '=' && plainString(f.value) && (f.field === 'parentUuid' || f.field === 'state' || f.field === 'ownerAccountUuid' || this.indexed.has(f.field))) exact.push([f.field, f.value]);
      else inexact++;
    }
    const plain = this.indexSets(q.kind, exact, false);
    if (inexact === 0) {
      const compound = this.compoundOn ? this.indexSets(q.kind, exact, true) : undefined;
      const page = (compound?.usesCompound ? await this.orderedPage<T>(q, compound) : undefined) ?? (await this.orderedPage<T>(q, plain));
      if (page) return page;
    }
    const { sets } = plain;
    // uuid = / ?= (the flat reconciler's VMs of its NICs…): those records only
    const byUuid = (q.filters ?? []).find((f) => f.field === 'uuid' && (f.op === '=' || f.op === '?=') && (f.op === '=' ? typeof f.value === 'string' : (f.value as unknown[]).every((v) => typeof v === 'string')));
    if (byUuid) return runQuery(await this.load<T>(byUuid.op === '=' ? [byUuid.value as string] : [...new Set(byUuid.value as string[])]), q);
    // the kind's set only when nothing narrower applies (SINTER walks the smallest set)
    const narrow = sets.length > 1 ? sets.slice(1) : sets;
    const uuids = narrow.length === 1 ? await this.r.smembers(narrow[0]!) : await this.r.sinter(...narrow);
    return runQuery(await this.load<T>(uuids), q);
  }

  /**
   * The index sets of exact filters, each with its sorted set by createDate (same name, 'z'
   * after the type letter); the kind's first. `compound`: a compound index's set stands for the
   * filters it covers (its fields' first filters), the largest indexes first.
   */
  private indexSets(kind: string, exact: Array<[string, string]>, compound: boolean): { sets: string[]; zsets: string[]; usesCompound: boolean } {
    const sets = [`${this.prefix}k:${kind}`];
    const zsets = [`${this.prefix}z:${kind}`];
    const add = (type: string, rest: string): void => {
      sets.push(`${this.prefix}${type}:${kind}:${rest}`);
      zsets.push(`${this.prefix}${type}z:${kind}:${rest}`);
    };
    let rest = exact;
    let usesCompound = false;
    if (compound) {
      for (const c of this.combos) {
        const at = c.fields.map((f) => rest.findIndex(([field]) => field === f));
        if (at.some((i) => i < 0)) continue;
        // as INDEX_LUA names it: each value after its length in bytes
        add('x', `${c.name}:${at.map((i) => `${Buffer.byteLength(rest[i]![1])}:${rest[i]![1]}`).join(':')}`);
        rest = rest.filter((_e, i) => !at.includes(i));
        usesCompound = true;
      }
    }
    for (const [field, value] of rest) {
      if (field === 'parentUuid') add('p', value);
      else if (field === 'state') add('s', value);
      else if (field === 'ownerAccountUuid') add('o', value);
      else add('f', `${field}:${value}`);
    }
    return { sets, zsets, usesCompound };
  }

  /**
   * The page straight from the sorted sets (the caller checked that the sets answer every filter
   * exactly) when the order is createDate's (either direction): no record outside the page is
   * read (LIST_PAGE). Undefined when that does not apply, when a compound index turned out off,
   * or when a page item disagrees with its sets (a record of an older controller): the caller
   * then pages without the compound index, or evaluates the query in full.
   */
  private async orderedPage<T extends Resource>(q: Query, plan: { sets: string[]; zsets: string[]; usesCompound: boolean }): Promise<QueryResult<T> | undefined> {
    const { sets, zsets } = plan;
    // paged only: an unbounded page would hold Redis for the whole kind in one script
    if (q.limit === undefined || (q.sort && q.sort.field !== 'createDate')) return undefined;
    let score = '';
    if (q.after) {
      // sorted by createDate, a position's sort value is its createDate (positionOf)
      if (q.sort && q.after.sort !== q.after.createDate) return undefined;
      score = String(Date.parse(q.after.createDate));
      // a position not in nowIso()'s form would not meet the scores
      if (score === 'NaN' || new Date(Number(score)).toISOString() !== q.after.createDate) return undefined;
    }
    const keys = [zsets[0]!, ...sets.slice(1), ...zsets.slice(1), `${this.prefix}tmp:${randomUUID()}`];
    const gate = plan.usesCompound ? [this.layout, this.combosTag] : ['', ''];
    const out = (await this.script(LIST_PAGE, keys.length, ...keys, this.prefix, String(q.start ?? 0), String(q.limit), score, q.after?.uuid ?? '', q.skipTotal ? '0' : '1', q.sort?.dir ?? 'asc', ...gate)) as [number, ...string[]];
    if (out[0] === -2 && out.length === 1) {
      this.compoundOn = false;
      return undefined;
    }
    const items = out.slice(1).map((d) => JSON.parse(d as string) as T);
    if (!items.every((r) => r.kind === q.kind && (q.ownerAccountUuid === undefined || r.ownerAccountUuid === q.ownerAccountUuid) && matchesAll(r, q.filters))) return undefined;
    return { items, total: out[0] };
  }

  private async fromSet<T extends Resource>(set: string): Promise<T[]> {
    const items = await this.load<T>(await this.r.smembers(set));
    return items.sort((a, b) => compareResources(a, b));
  }

  async byParent<T extends Resource = Resource>(kind: string, parentUuid: string): Promise<T[]> {
    return this.fromSet<T>(`${this.prefix}p:${kind}:${parentUuid}`);
  }

  async byState<T extends Resource = Resource>(kind: string, state: string): Promise<T[]> {
    return this.fromSet<T>(`${this.prefix}s:${kind}:${state}`);
  }

  async claim(namespace: string, key: string, owner: string): Promise<boolean> {
    return (await this.script(CLAIM, 1, `${this.prefix}c:${namespace}`, key, owner)) === 1;
  }

  async release(namespace: string, key: string, owner?: string): Promise<void> {
    if (owner === undefined) await this.r.hdel(`${this.prefix}c:${namespace}`, key);
    else await this.script(RELEASE_IF_OWNER, 1, `${this.prefix}c:${namespace}`, key, owner);
  }

  async claims(namespace: string): Promise<Array<{ key: string; owner: string }>> {
    const h = await this.r.hgetall(`${this.prefix}c:${namespace}`);
    return Object.keys(h)
      .sort()
      .map((key) => ({ key, owner: h[key]! }));
  }

  async reserve(r: Reservation): Promise<QuotaExceeded | undefined> {
    const q = (x: string): string => `${this.prefix}${x}:${r.scope}`;
    const holderKey = `${q('qh')}:${r.holder}`;
    const args: string[] = [r.holder, r.from ?? '', String(Object.keys(r.amounts).length)];
    for (const [name, amount] of Object.entries(r.amounts)) args.push(name, String(amount), r.limits?.[name] !== undefined ? String(r.limits[name]) : '');
    const fromKey = r.from !== undefined ? `${q('qh')}:${r.from}` : holderKey;
    const out = (await this.script(RESERVE, 4, q('qt'), holderKey, fromKey, q('qs'), ...args)) as string[];
    if (out.length === 0) return undefined;
    return { name: out[0]!, limit: Number(out[1]), used: Number(out[2]), requested: r.amounts[out[0]!]! };
  }

  async unreserve(scope: string, holder: string): Promise<void> {
    await this.script(UNRESERVE, 3, `${this.prefix}qt:${scope}`, `${this.prefix}qh:${scope}:${holder}`, `${this.prefix}qs:${scope}`, holder);
  }

  async reserved(scope: string): Promise<Record<string, number>> {
    const h = await this.r.hgetall(`${this.prefix}qt:${scope}`);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(h)) if (Number(v) !== 0) out[k] = Number(v);
    return out;
  }

  async holders(scope: string): Promise<Array<{ holder: string; amounts: Record<string, number> }>> {
    const hs = (await this.r.smembers(`${this.prefix}qs:${scope}`)).sort();
    const out: Array<{ holder: string; amounts: Record<string, number> }> = [];
    for (const holder of hs) {
      const h = await this.r.hgetall(`${this.prefix}qh:${scope}:${holder}`);
      out.push({ holder, amounts: Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Number(v)])) });
    }
    return out;
  }

  async putDoc(collection: string, id: string, doc: unknown): Promise<void> {
    await this.r.hset(`${this.prefix}d:${collection}`, id, JSON.stringify(doc ?? null));
  }

  async getDoc<T = unknown>(collection: string, id: string): Promise<T | undefined> {
    const s = await this.r.hget(`${this.prefix}d:${collection}`, id);
    return s === null ? undefined : (JSON.parse(s) as T);
  }

  async deleteDoc(collection: string, id: string): Promise<void> {
    await this.r.hdel(`${this.prefix}d:${collection}`, id);
  }

  async listDocs<T = unknown>(collection: string): Promise<Array<{ id: string; doc: T }>> {
    const h = await this.r.hgetall(`${this.prefix}d:${collection}`);
    return Object.keys(h)
      .sort()
      .map((id) => ({ id, doc: JSON.parse(h[id]!) as T }));
  }
}
