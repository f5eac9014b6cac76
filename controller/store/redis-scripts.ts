// The Lua scripts of the Redis store (redis.ts): every resource write (compare-and-swap, with
// the index sets and sorted sets kept in the same script), ordered pages, claims and the quota
// ledger. The key layout is described at the top of redis.ts.

// The index maintenance both write scripts share. ARGV[1] is the key prefix, ARGV[2] the indexed
// fields joined by ',', then (after '|') the compound indexes joined by ',' (each its fields
// joined by '+'): a string value (or each string of an array) is in f:<kind>:<field>:<value>;
// a record is in x:<kind>:<f1+f2>:<len1>:<v1>:<len2>:<v2> for each combination of its fields'
// strings (the byte length before each value keeps values holding ':' apart).
const INDEX_LUA = `
local p = ARGV[1]
local fields, combos = {}, {}
local fieldsArg, combosArg = string.match(ARGV[2], '^([^|]*)|?(.*)$')
for f in string.gmatch(fieldsArg, '[^,]+') do fields[#fields + 1] = f end
for c in string.gmatch(combosArg, '[^,]+') do
  local cf = {}
  for f in string.gmatch(c, '[^+]+') do cf[#cf + 1] = f end
  combos[#combos + 1] = {c, cf}
end
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
  for _, c in ipairs(combos) do
    local tails = {''}
    for _, f in ipairs(c[2]) do
      local v, vals, nxt = r[f], {}, {}
      if type(v) == 'string' then
        vals[1] = v
      elseif type(v) == 'table' then
        for _, x in ipairs(v) do
          if type(x) == 'string' then vals[#vals + 1] = x end
        end
      end
      for _, t in ipairs(tails) do
        for _, x in ipairs(vals) do nxt[#nxt + 1] = t .. ':' .. #x .. ':' .. x end
      end
      tails = nxt
    end
    for _, t in ipairs(tails) do both(op, p .. 'x:' .. k .. ':' .. c[1] .. t, p .. 'xz:' .. k .. ':' .. c[1] .. t, u, sc) end
  end
end
`;

// KEYS[1]: the resource; ARGV[3]: expected current JSON ('' = absent, '*' = any), ARGV[4]: next ('' = delete)
export const CAS = `${INDEX_LUA}
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
export const CREATE_MANY = `${INDEX_LUA}
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return i end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 2])
  index(ARGV[i + 2], 'SADD')
end
return 0
`;

// Several writes at once (InventoryStore.batch). KEYS: the n resource keys, then the d doc
// hashes, then a claims hash per claim or release. ARGV[3]: n, ARGV[4]: d; then per resource key
// its expected JSON ('' = absent) and next JSON; then per doc hash 'put' or 'del', the id and the
// JSON ('' for del); then per claims hash 'claim', 'release' (only the owner's) or 'release-any',
// the key and the owner. Every expectation and claim is checked before anything is written (a
// claim against what the earlier claims and releases of the batch did): returns 0 when all were
// written, else the 1-based position of the first resource key whose current value is not the
// expected one, or minus the 1-based position of the first claim held by another owner (nothing
// written).
export const BATCH = `${INDEX_LUA}
local n, d = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  local expected = ARGV[3 + 2 * i]
  if expected == '' then
    if cur then return i end
  elseif cur ~= expected then
    return i
  end
end
local c0 = 5 + 2 * n + 3 * d
-- (claims hash, key) -> owner after the batch's claims so far (false: released)
local held = {}
local function slot(j) return KEYS[n + d + j] .. ' ' .. ARGV[c0 + 3 * (j - 1) + 1] end
for j = 1, #KEYS - n - d do
  local a = c0 + 3 * (j - 1)
  local id = slot(j)
  local cur = held[id]
  if cur == nil then cur = redis.call('HGET', KEYS[n + d + j], ARGV[a + 1]) end
  if ARGV[a] == 'claim' then
    if cur and cur ~= ARGV[a + 2] then return -j end
    held[id] = ARGV[a + 2]
  elseif ARGV[a] == 'release-any' or cur == ARGV[a + 2] then
    held[id] = false
  end
end
for i = 1, n do
  local expected = ARGV[3 + 2 * i]
  if expected ~= '' then index(expected, 'SREM') end
  redis.call('SET', KEYS[i], ARGV[4 + 2 * i])
  index(ARGV[4 + 2 * i], 'SADD')
end
local a = 5 + 2 * n
for k = n + 1, n + d do
  if ARGV[a] == 'put' then redis.call('HSET', KEYS[k], ARGV[a + 1], ARGV[a + 2]) else redis.call('HDEL', KEYS[k], ARGV[a + 1]) end
  a = a + 3
end
local done = {}
for j = 1, #KEYS - n - d do
  local id = slot(j)
  local v = held[id]
  if v ~= nil and not done[id] then
    done[id] = true
    local k, key = KEYS[n + d + j], ARGV[c0 + 3 * (j - 1) + 1]
    if v then redis.call('HSET', k, key, v) else redis.call('HDEL', k, key) end
  end
end
return 0
`;

// ARGV[3..]: uuids of resources to index again (the layout or the indexed fields changed); each
// record is read here, so a write between the caller's listing and this cannot be indexed stale
export const REINDEX = `${INDEX_LUA}
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
// One filter set (a compound index's, or a lone filter's): its sorted set walked as is.
// KEYS[1]: the kind's z: set, then the m filter sets, then their m sorted sets, last a scratch
// key. ARGV: key prefix, offset, limit, position score ('' = none), position uuid, count
// ('1'/'0'), 'asc'/'desc', then the layout the sets need ('' = any) and the compound indexes
// that must be on. Returns {total or -1, JSON of each page item}, or {-2} when the store's
// layout is not the one named (a compound index is off: the caller pages without it).
// Order (compareResources): createDate (the score) then uuid ascending, in both directions, so a
// descending walk (uuid descending within a score) re-emits each group of equal scores reversed.
export const LIST_PAGE = `
local p = ARGV[1]
local m = (#KEYS - 2) / 2
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local S, U, desc = ARGV[4], ARGV[5], ARGV[7] == 'desc'
local total = -1
if ARGV[8] ~= '' and (redis.call('GET', p .. 'meta:indexed') ~= ARGV[8] or redis.call('GET', p .. 'meta:compound') ~= ARGV[9]) then return {-2} end
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
elseif m == 1 then
  if ARGV[6] == '1' then total = count() end
  page = walk(KEYS[3], {}, -1, offset)
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

// The compound indexes on, after their rebuild: the layout the sets now have and the compound
// indexes reads may use, only while the rebuild's lock is still the caller's. ARGV: key
// prefix, lock token, layout, compound indexes. Returns 1 when set.
export const COMPOUND_ON = `
local p = ARGV[1]
if redis.call('GET', p .. 'meta:compound-build') ~= ARGV[2] then return 0 end
redis.call('SET', p .. 'meta:indexed', ARGV[3])
redis.call('SET', p .. 'meta:compound', ARGV[4])
return 1
`;

export const CLAIM = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then return 1 end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 1 end
return 0
`;

export const RELEASE_IF_OWNER = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;

// KEYS: totals, holder hash, covering ('from') hash (= holder hash when none), holder set.
// ARGV: holder, from ('' = none), n, then n × (name, amount, limit ('' = unchecked)).
// Returns {} when applied, else {name, limit, used}.
export const RESERVE = `
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
export const UNRESERVE = `
local h = redis.call('HGETALL', KEYS[2])
for j = 1, #h, 2 do redis.call('HINCRBYFLOAT', KEYS[1], h[j], -tonumber(h[j + 1])) end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`;
