// Redis inventory (ioredis), for several controllers sharing one inventory.
// Keys (all under `prefix`):
//   r:<uuid>                 the resource as JSON
//   k:<kind>                 set of uuids of a kind
//   p:<kind>:<parentUuid>    set, by parent
//   s:<kind>:<state>         set, by state
//   o:<kind>:<owner>         set, by owner account
//   f:<kind>:<field>:<value> set, by an indexed field (KindDef.indexes)
//   z:<kind>                 sorted set of uuids by createDate (ms), for ordered pages
//   pz: sz: oz: fz:          the same for each p: s: o: f: set (same members, createDate scores)
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
-- a set and its sorted set by createDate (walked in order by LIST_PAGE) change together
local function both(op, key, zkey, u, sc)
  redis.call(op, key, u)
  if op == 'SADD' then redis.call('ZADD', zkey, sc, u) else redis.call('ZREM', zkey, u) end
end
local function index(doc, op)
  local r = cjson.decode(doc)
  local u = r['uuid']
  local k = r['kind']
  local sc = string.format('%.0f', ms(r['createDate']))
  both(op, p .. 'k:' .. k, p .. 'z:' .. k, u, sc)
  if type(r['parentUuid']) == 'string' then both(op, p .. 'p:' .. k .. ':' .. r['parentUuid'], p .. 'pz:' .. k .. ':' .. r['parentUuid'], u, sc) end
  if type(r['state']) == 'string' then both(op, p .. 's:' .. k .. ':' .. r['state'], p .. 'sz:' .. k .. ':' .. r['state'], u, sc) end
  if type(r['ownerAccountUuid']) == 'string' then both(op, p .. 'o:' .. k .. ':' .. r['ownerAccountUuid'], p .. 'oz:' .. k .. ':' .. r['ownerAccountUuid'], u, sc) end
  for _, f in ipairs(fields) do
    local v = r[f]
    if type(v) == 'string' then
      both(op, p .. 'f:' .. k .. ':' .. f .. ':' .. v, p .. 'fz:' .. k .. ':' .. f .. ':' .. v, u, sc)
    elseif type(v) == 'table' then
      for _, x in ipairs(v) do
        if type(x) == 'string' then both(op, p .. 'f:' .. k .. ':' .. f .. ':' .. x, p .. 'fz:' .. k .. ':' .. f .. ':' .. x, u, sc) end
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

// ARGV[3..]: uuids of resources to index again (the layout or the indexed fields changed); each
// record is read here, so a write between the caller's listing and this cannot be indexed stale
const REINDEX = `${INDEX_LUA}
for i = 3, #ARGV do
  local d = redis.call('GET', p .. 'r:' .. ARGV[i])
  if d then index(d, 'SADD') end
end
return 1
`;

// An ordered page of a kind narrowed by exact index sets, in O(page) when the matches are not
// rare: the sorted set (by createDate) of the smallest filter set is walked in order from the
// position, each candidate checked against the other sets (SISMEMBER) until the page is full.
// When the walk would exceed a bound (sparse matches) the intersection is built as a sorted set
// (ZINTERSTORE, O(smallest set)) and walked instead, so a page costs at most about that.
// KEYS[1]: the kind's z: set, then the m filter sets, then their m sorted sets, last a scratch
// key. ARGV: key prefix, offset, limit, position score ('' = none), position uuid, count
// ('1'/'0'), 'asc'/'desc'. Returns {total or -1, JSON of each page item}.
// Order (compareResources): createDate (the score) then uuid ascending, in both directions, so a
// descending walk (uuid descending within a score) re-emits each group of equal scores reversed.
const LIST_PAGE = `
local p = ARGV[1]
local m = (#KEYS - 2) / 2
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local S, U, desc = ARGV[4], ARGV[5], ARGV[7] == 'desc'
local total = -1
local function count()
  if m == 0 then return redis.call('ZCARD', KEYS[1]) end
  if m == 1 then return redis.call('SCARD', KEYS[2]) end
  local args = {'SINTERCARD', m}
  for i = 2, m + 1 do args[#args + 1] = KEYS[i] end
  return redis.call(unpack(args))
end
if limit == 0 then
  if ARGV[6] == '1' then total = count() end
  return {total}
end

-- the page of w in order after the position, skipping 'skip' matches: uuids, or nil when more
-- than 'budget' candidates (-1: no bound) were looked at
local function walk(w, chk, budget, skip)
  local out, seen = {}, 0
  -- 0: go on, 1: the page is full, 2: over budget
  local function take(u)
    seen = seen + 1
    if budget >= 0 and seen > budget then return 2 end
    for _, k in ipairs(chk) do
      if redis.call('SISMEMBER', k, u) == 0 then return 0 end
    end
    if skip > 0 then skip = skip - 1 return 0 end
    out[#out + 1] = u
    if #out >= limit then return 1 end
    return 0
  end
  local bs = math.min(math.max(limit + skip + 1, 16), 1024)
  local rank = 0
  if not desc then
    if S ~= '' then
      rank = redis.call('ZCOUNT', w, '-inf', '(' .. S)
      for _, u in ipairs(redis.call('ZRANGEBYSCORE', w, S, S)) do
        if u <= U then rank = rank + 1 end
      end
    end
    if #chk == 0 then rank, skip = rank + skip, 0 end
    while true do
      local b = redis.call('ZRANGE', w, rank, rank + bs - 1)
      for _, u in ipairs(b) do
        local t = take(u)
        if t == 1 then return out elseif t == 2 then return nil end
      end
      if #b < bs then return out end
      rank, bs = rank + bs, math.min(bs * 2, 1024)
    end
  end
  if S ~= '' then
    -- the position's own score first: uuids after it, ascending
    for _, u in ipairs(redis.call('ZRANGEBYSCORE', w, S, S)) do
      if u > U then
        local t = take(u)
        if t == 1 then return out elseif t == 2 then return nil end
      end
    end
    rank = redis.call('ZCOUNT', w, S, '+inf')
  end
  if #chk == 0 and skip > 0 then
    -- jump, to the start of the group of equal scores holding the target
    local e = redis.call('ZREVRANGE', w, rank + skip, rank + skip, 'WITHSCORES')
    if #e == 0 then return out end
    local g = redis.call('ZCOUNT', w, '(' .. e[2], '+inf')
    rank, skip = g, rank + skip - g
  end
  local group, score = {}, nil
  local function flush()
    for i = #group, 1, -1 do
      local t = take(group[i])
      if t ~= 0 then return t end
    end
    group = {}
    return 0
  end
  while true do
    local b = redis.call('ZREVRANGE', w, rank, rank + bs - 1, 'WITHSCORES')
    for i = 1, #b, 2 do
      if b[i + 1] ~= score then
        local t = flush()
        if t == 1 then return out elseif t == 2 then return nil end
        score = b[i + 1]
      end
      group[#group + 1] = b[i]
      if budget >= 0 and #group > budget then return nil end
    end
    if #b < 2 * bs then
      if flush() == 2 then return nil end
      return out
    end
    rank, bs = rank + bs, math.min(bs * 2, 1024)
  end
end

local page = nil
if m == 0 then
  if ARGV[6] == '1' then total = count() end
  page = walk(KEYS[1], {}, -1, offset)
else
  -- walk the smallest set when the matches' density (the count) predicts a short walk, with a
  -- bound; a page deep in the set (offset) goes to the intersection at once, counted by ZCARD
  local best, size = 2, redis.call('SCARD', KEYS[2])
  for i = 3, m + 1 do
    local n = redis.call('SCARD', KEYS[i])
    if n < size then best, size = i, n end
  end
  if size == 0 then
    if ARGV[6] == '1' then total = 0 end
    return {total}
  end
  local need = offset + limit
  if 4 * need + 64 <= size / 2 then
    local chk = {}
    for i = 2, m + 1 do if i ~= best then chk[#chk + 1] = KEYS[i] end end
    local est = need
    if ARGV[6] == '1' then
      total = count()
      if total == 0 then return {0} end
      est = math.ceil(need * size / total)
    end
    local budget = 4 * est + 64
    if budget <= size / 2 then page = walk(KEYS[best + m], chk, budget, offset) end
  end
  if not page then
    local tmp = KEYS[#KEYS]
    local args = {'ZINTERSTORE', tmp, m + 1}
    for i = 1, m + 1 do args[#args + 1] = KEYS[i] end
    args[#args + 1] = 'WEIGHTS'
    args[#args + 1] = 1
    for i = 2, m + 1 do args[#args + 1] = 0 end
    redis.call(unpack(args))
    if ARGV[6] == '1' and total < 0 then total = redis.call('ZCARD', tmp) end
    page = walk(tmp, {}, -1, offset)
    redis.call('DEL', tmp)
  end
end
local out = {total}
for _, u in ipairs(page) do
  local d = redis.call('GET', p .. 'r:' .. u)
  if d then out[#out + 1] = d end
end
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
    // the value also names the layout version: z1 = the kind's createDate sorted set, z2 = one
    // for every index set too (pz/sz/oz/fz, walked by LIST_PAGE). Several controllers starting
    // at once all index again: REINDEX reads each record itself, so that is idempotent.
    const want = `${this.fieldsArg}|z2`;
    if ((await this.r.get(meta)) === want) return;
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
    // each index set with its sorted set by createDate (same name, 'z' after the type letter)
    const sets = [`${this.prefix}k:${q.kind}`];
    const zsets = [`${this.prefix}z:${q.kind}`];
    const add = (type: string, rest: string): void => {
      sets.push(`${this.prefix}${type}:${q.kind}:${rest}`);
      zsets.push(`${this.prefix}${type}z:${q.kind}:${rest}`);
    };
    if (q.ownerAccountUuid !== undefined) add('o', q.ownerAccountUuid);
    for (const f of q.filters ?? []) {
      // a non-numeric text: the set holds exactly the candidates (a numeric text also matches numbers)
      if (f.op !== '=' || !plainString(f.value)) continue;
      if (f.field === 'parentUuid') add('p', f.value);
      else if (f.field === 'state') add('s', f.value);
      else if (f.field === 'ownerAccountUuid') add('o', f.value);
      else if (this.indexed.has(f.field)) add('f', `${f.field}:${f.value}`);
    }
    const page = await this.orderedPage<T>(q, sets, zsets);
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
   * The page straight from the sorted sets when the sets answer every filter exactly (each
   * filter `=` a text on an indexed field) and the order is createDate's (either direction):
   * no record outside the page is read (LIST_PAGE). Undefined when that does not apply (or a page item disagrees with its
   * sets, a record of an older controller): the caller evaluates the query in full.
   */
  private async orderedPage<T extends Resource>(q: Query, sets: string[], zsets: string[]): Promise<QueryResult<T> | undefined> {
    // paged only: an unbounded page would hold Redis for the whole kind in one script
    if (q.limit === undefined || (q.sort && q.sort.field !== 'createDate')) return undefined;
    if ((q.filters ?? []).length + (q.ownerAccountUuid !== undefined ? 1 : 0) !== sets.length - 1) return undefined;
    let score = '';
    if (q.after) {
      // sorted by createDate, a position's sort value is its createDate (positionOf)
      if (q.sort && q.after.sort !== q.after.createDate) return undefined;
      score = String(Date.parse(q.after.createDate));
      // a position not in nowIso()'s form would not meet the scores
      if (score === 'NaN' || new Date(Number(score)).toISOString() !== q.after.createDate) return undefined;
    }
    const keys = [zsets[0]!, ...sets.slice(1), ...zsets.slice(1), `${this.prefix}tmp:${randomUUID()}`];
    const out = (await this.script(LIST_PAGE, keys.length, ...keys, this.prefix, String(q.start ?? 0), String(q.limit), score, q.after?.uuid ?? '', q.skipTotal ? '0' : '1', q.sort?.dir ?? 'asc')) as [number, ...string[]];
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
