// Redis inventory (ioredis), for several controllers sharing one inventory.
// Keys (all under `prefix`):
//   r:<uuid>                 the resource as JSON
//   k:<kind>                 set of uuids of a kind
//   p:<kind>:<parentUuid>    set, by parent
//   s:<kind>:<state>         set, by state
//   o:<kind>:<owner>         set, by owner account
//   f:<kind>:<field>:<value> set, by an indexed field (KindDef.indexes)
//   z:<kind>                 sorted set of uuids by createDate (ms), for ordered pages
//   c:<namespace>            hash key -> owner (claims)
//   d:<collection>           hash id -> JSON (docs)
//   qt:<scope>               hash quota name -> total reserved (the quota ledger)
//   qh:<scope>:<holder>      hash quota name -> amount held by one holder
//   qs:<scope>               set of holders
// Every resource write goes through one Lua compare-and-swap script that also maintains the
// index sets, so a resource and its indexes never disagree and concurrent read-modify-write
// (update, transition) is optimistic: read, compute, CAS, retry on a lost race.
// Queries narrow candidates with the index sets, then filter/sort/page in JS with the same
// evaluator (query.ts) whose semantics mirror the SQLite store.
// Not for Redis Cluster: the script touches index keys it does not declare.
import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { TStackError } from '../../shared/errors.js';
import type { InventoryStore, Query, QueryResult, QuotaExceeded, Reservation, Resource } from './types.js';
import { INDEXED_FIELDS, checkIndexedFields } from './indexes.js';
import { NUMERIC_RE, applyPatch, asList, checkQuery, transitionConflict, compareResources, matchesAll, prepareNew, nowIso, runQuery } from './query.js';

// The index maintenance both write scripts share. ARGV[1] is the key prefix, ARGV[2] the indexed
// fields joined by ',': a string value (or each string of an array) is in f:<kind>:<field>:<value>.
const INDEX_LUA = `
local p = ARGV[1]
local fields = {}
for f in string.gmatch(ARGV[2], '[^,]+') do fields[#fields + 1] = f end
-- createDate (ISO 8601, UTC, as nowIso() writes it) in ms since 1970; anything else sorts as 0
local function ms(d)
  if type(d) ~= 'string' then return 0 end
  local y, mo, da, h, mi, s, f = string.match(d, '^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.?(%d*)Z$')
  if not y then return 0 end
  y, mo, da = tonumber(y), tonumber(mo), tonumber(da)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + da - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  local frac = 0
  if f ~= '' then frac = tonumber(string.sub(f .. '00', 1, 3)) end
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(s) * 1000 + frac
end
local function index(doc, op)
  local r = cjson.decode(doc)
  local u = r['uuid']
  local k = r['kind']
  redis.call(op, p .. 'k:' .. k, u)
  if op == 'SADD' then redis.call('ZADD', p .. 'z:' .. k, string.format('%.0f', ms(r['createDate'])), u)
  else redis.call('ZREM', p .. 'z:' .. k, u) end
  if type(r['parentUuid']) == 'string' then redis.call(op, p .. 'p:' .. k .. ':' .. r['parentUuid'], u) end
  if type(r['state']) == 'string' then redis.call(op, p .. 's:' .. k .. ':' .. r['state'], u) end
  if type(r['ownerAccountUuid']) == 'string' then redis.call(op, p .. 'o:' .. k .. ':' .. r['ownerAccountUuid'], u) end
  for _, f in ipairs(fields) do
    local v = r[f]
    if type(v) == 'string' then
      redis.call(op, p .. 'f:' .. k .. ':' .. f .. ':' .. v, u)
    elseif type(v) == 'table' then
      for _, x in ipairs(v) do
        if type(x) == 'string' then redis.call(op, p .. 'f:' .. k .. ':' .. f .. ':' .. x, u) end
      end
    end
  end
end
`;

// KEYS[1]: the resource; ARGV[3]: expected current JSON ('' = absent, '*' = any), ARGV[4]: next ('' = delete)
const CAS = `${INDEX_LUA}
local cur = redis.call('GET', KEYS[1])
local expected = ARGV[3]
if expected == '' then
  if cur then return 0 end
elseif expected ~= '*' then
  if cur ~= expected then return 0 end
end
if cur then index(cur, 'SREM') end
if ARGV[4] == '' then
  if not cur then return 0 end
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[4])
  index(ARGV[4], 'SADD')
end
return 1
`;

// KEYS: the resources; ARGV[3..]: their JSON. All or none: returns 0 when all were created,
// else the 1-based position of the first that exists.
const CREATE_MANY = `${INDEX_LUA}
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return i end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 2])
  index(ARGV[i + 2], 'SADD')
end
return 0
`;

// ARGV[3..]: JSON of resources to index again (after the indexed fields changed)
const REINDEX = `${INDEX_LUA}
for i = 3, #ARGV do index(ARGV[i], 'SADD') end
return 1
`;

// An ordered page of a kind narrowed by exact index sets. KEYS[1]: the kind's z: set, KEYS[2..n-1]:
// the filter sets, KEYS[n]: a scratch key. ARGV: key prefix, offset, limit, position score ('' =
// none), position uuid, count ('1'/'0'). Returns {total or -1, JSON of each page item}.
// The intersection costs the smallest set; the position is found with ZCOUNT (log n) plus the
// uuids sharing its millisecond (nowIso() gives each write of a process its own).
const LIST_PAGE = `
local p = ARGV[1]
local n = #KEYS - 1
if ARGV[3] == '0' and ARGV[4] == '' then
  -- a count: no ordering needed
  if ARGV[6] ~= '1' then return {-1} end
  if n == 1 then return {redis.call('ZCARD', KEYS[1])} end
  if n == 2 then return {redis.call('SCARD', KEYS[2])} end
  local args = {'SINTERCARD', n - 1}
  for i = 2, n do args[#args + 1] = KEYS[i] end
  return {redis.call(unpack(args))}
end
local src = KEYS[1]
if n > 1 then
  local args = {'ZINTERSTORE', KEYS[#KEYS], n}
  for i = 1, n do args[#args + 1] = KEYS[i] end
  args[#args + 1] = 'WEIGHTS'
  args[#args + 1] = 1
  for i = 2, n do args[#args + 1] = 0 end
  redis.call(unpack(args))
  src = KEYS[#KEYS]
end
local total = -1
if ARGV[6] == '1' then total = redis.call('ZCARD', src) end
local offset = tonumber(ARGV[2])
if ARGV[4] ~= '' then
  offset = offset + redis.call('ZCOUNT', src, '-inf', '(' .. ARGV[4])
  for _, u in ipairs(redis.call('ZRANGEBYSCORE', src, ARGV[4], ARGV[4])) do
    if u <= ARGV[5] then offset = offset + 1 end
  end
end
local out = {total}
local limit = tonumber(ARGV[3])
if limit ~= 0 then
  local last = -1
  if limit > 0 then last = offset + limit - 1 end
  for _, u in ipairs(redis.call('ZRANGE', src, offset, last)) do
    local d = redis.call('GET', p .. 'r:' .. u)
    if d then out[#out + 1] = d end
  end
end
if n > 1 then redis.call('DEL', KEYS[#KEYS]) end
return out
`;

const CLAIM = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then return 1 end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 1 end
return 0
`;

const RELEASE_IF_OWNER = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;

// KEYS: totals, holder hash, covering ('from') hash (= holder hash when none), holder set.
// ARGV: holder, from ('' = none), n, then n × (name, amount, limit ('' = unchecked)).
// Returns {} when applied, else {name, limit, used}.
const RESERVE = `
local n = tonumber(ARGV[3])
local from = ARGV[2]
local plan = {}
for i = 0, n - 1 do
  local name = ARGV[4 + i * 3]
  local amount = tonumber(ARGV[5 + i * 3])
  local lim = ARGV[6 + i * 3]
  local delta = amount - tonumber(redis.call('HGET', KEYS[2], name) or '0')
  local cover = 0
  if from ~= '' and delta > 0 then cover = math.min(tonumber(redis.call('HGET', KEYS[3], name) or '0'), delta) end
  if lim ~= '' and delta > cover then
    local used = tonumber(redis.call('HGET', KEYS[1], name) or '0')
    if used + delta - cover > tonumber(lim) then return {name, lim, tostring(used)} end
  end
  plan[#plan + 1] = {name, ARGV[5 + i * 3], delta, cover}
end
for _, p in ipairs(plan) do
  redis.call('HINCRBYFLOAT', KEYS[1], p[1], p[3] - p[4])
  redis.call('HSET', KEYS[2], p[1], p[2])
  if p[4] > 0 then redis.call('HINCRBYFLOAT', KEYS[3], p[1], -p[4]) end
end
if n > 0 then redis.call('SADD', KEYS[4], ARGV[1]) end
return {}
`;

// KEYS: totals, holder hash, holder set; ARGV: holder
const UNRESERVE = `
local h = redis.call('HGETALL', KEYS[2])
for j = 1, #h, 2 do redis.call('HINCRBYFLOAT', KEYS[1], h[j], -tonumber(h[j + 1])) end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`;

const MAX_CAS_RETRIES = 200;

/** SHA1 of each script text (EVALSHA). */
const shas = new Map<string, string>();

const plainString = (v: unknown): v is string => typeof v === 'string' && !NUMERIC_RE.test(v);

export interface RedisStoreOptions {
  url: string;
  /** Key prefix, so several inventories (or test runs) can share one server. Default 'tstack:'. */
  prefix?: string;
  /** Fields with index sets (the controller passes those its kinds declare); default INDEXED_FIELDS. */
  indexedFields?: readonly string[];
}

export class RedisStore implements InventoryStore {
  readonly backend = 'redis' as const;
  private client: Redis | undefined;
  private readonly prefix: string;
  private readonly indexed: ReadonlySet<string>;
  /** ARGV[2] of the scripts. */
  private readonly fieldsArg: string;

  constructor(private readonly opts: RedisStoreOptions) {
    this.prefix = opts.prefix ?? 'tstack:';
    const fields = checkIndexedFields(opts.indexedFields ?? INDEXED_FIELDS);
    this.indexed = new Set(fields);
    this.fieldsArg = fields.join(',');
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
    await this.reindexIfChanged();
  }

  /**
   * Records written while other fields were indexed (an older controller) are missing from the
   * new fields' sets: index every record again once. Sets only ever narrow candidates that the
   * query then checks in full, so a stale member is harmless and a missing one is not.
   */
  private async reindexIfChanged(): Promise<void> {
    const meta = `${this.prefix}meta:indexed`;
    // the value also names the layout version: z1 = the createDate sorted sets
    const want = `${this.fieldsArg}|z1`;
    if ((await this.r.get(meta)) === want) return;
    let cursor = '0';
    do {
      const [next, keys] = await this.r.scan(cursor, 'MATCH', `${this.prefix}k:*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) {
        const uuids = await this.r.smembers(k);
        for (let i = 0; i < uuids.length; i += 500) {
          const vals = (await this.r.mget(...uuids.slice(i, i + 500).map((u) => this.key(u)))).filter((v): v is string => v !== null);
          if (vals.length) await this.script(REINDEX, 0, this.prefix, this.fieldsArg, ...vals);
        }
      }
    } while (cursor !== '0');
    await this.r.set(meta, want);
  }

  async close(): Promise<void> {
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
    const sets = [`${this.prefix}k:${q.kind}`];
    if (q.ownerAccountUuid !== undefined) sets.push(`${this.prefix}o:${q.kind}:${q.ownerAccountUuid}`);
    for (const f of q.filters ?? []) {
      // a non-numeric text: the set holds exactly the candidates (a numeric text also matches numbers)
      if (f.op !== '=' || !plainString(f.value)) continue;
      if (f.field === 'parentUuid') sets.push(`${this.prefix}p:${q.kind}:${f.value}`);
      else if (f.field === 'state') sets.push(`${this.prefix}s:${q.kind}:${f.value}`);
      else if (f.field === 'ownerAccountUuid') sets.push(`${this.prefix}o:${q.kind}:${f.value}`);
      else if (this.indexed.has(f.field)) sets.push(`${this.prefix}f:${q.kind}:${f.field}:${f.value}`);
    }
    const page = await this.orderedPage<T>(q, sets);
    if (page) return page;
    // uuid = / ?= (the flat reconciler's VMs of its NICs…): those records only
    const byUuid = (q.filters ?? []).find((f) => f.field === 'uuid' && (f.op === '=' || f.op === '?=') && (f.op === '=' ? typeof f.value === 'string' : (f.value as unknown[]).every((v) => typeof v === 'string')));
    if (byUuid) return runQuery(await this.load<T>(byUuid.op === '=' ? [byUuid.value as string] : [...new Set(byUuid.value as string[])]), q);
    // the kind's set only when nothing narrower applies (SINTER walks the smallest set)
    const narrow = sets.length > 1 ? sets.slice(1) : sets;
    const uuids = narrow.length === 1 ? await this.r.smembers(narrow[0]!) : await this.r.sinter(...narrow);
    return runQuery(await this.load<T>(uuids), q);
  }

  /**
   * The page straight from the sorted set when the sets answer every filter exactly (each
   * filter `=` a text on an indexed field) and the order is createDate's: no record outside
   * the page is read. Undefined when that does not apply (or a page item disagrees with its
   * sets, a record of an older controller): the caller evaluates the query in full.
   */
  private async orderedPage<T extends Resource>(q: Query, sets: string[]): Promise<QueryResult<T> | undefined> {
    // paged only: an unbounded page would hold Redis for the whole kind in one script
    if (q.limit === undefined || (q.sort && !(q.sort.field === 'createDate' && q.sort.dir === 'asc'))) return undefined;
    if ((q.filters ?? []).length + (q.ownerAccountUuid !== undefined ? 1 : 0) !== sets.length - 1) return undefined;
    let score = '';
    if (q.after) {
      score = String(Date.parse(q.after.createDate));
      // a position not in nowIso()'s form would not meet the scores
      if (score === 'NaN' || new Date(Number(score)).toISOString() !== q.after.createDate) return undefined;
    }
    const keys = [`${this.prefix}z:${q.kind}`, ...sets.slice(1), `${this.prefix}tmp:${randomUUID()}`];
    const out = (await this.script(LIST_PAGE, keys.length, ...keys, this.prefix, String(q.start ?? 0), String(q.limit ?? -1), score, q.after?.uuid ?? '', q.skipTotal ? '0' : '1')) as [number, ...string[]];
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
