-- waystone's counters in Redis: one script, one operation per call (ARGV[1]).
-- See daemon/counters/__init__.py for the key layout and the design.
--
-- Keys (S is a subject key such as "u:alice", "g:acme", "m:acme<US>alice", "r:"):
--   ws:b:S:DAY   hash "<minute>c|i|o|r" -> settled cost units, input, output, requests
--   ws:t:S|W     hash s (window start minute), c, i, o, r: the totals of window W
--   ws:w:S       set of the windows W that S has totals for
--   ws:p:S       hash c, t, n: live reservations (cost units, tokens, count)
--   ws:q:S       zset reservation id -> start ms (the rate window)
--   ws:k:S       hash reservation id -> tokens, "_" -> their sum
--   ws:r         hash reservation id -> "units<RS>tokens<RS>S1<RS>S2..."
--   ws:x         zset reservation id -> expiry ms
--   ws:ledgers   set of the ledgers whose rows are loaded; ws:gen: this data's generation
local P = 'ws:'
local RS = '\30'
local WALK = 2880  -- minutes walked to move a window's start; past that, re-summed
local op = ARGV[1]

local function num(x) return tonumber(x) or 0 end

local function bucket(s, m) return P .. 'b:' .. s .. ':' .. math.floor(m / 1440) end

local function resum(s, start, nowm)
  local c, i, o, r = 0, 0, 0, 0
  for d = math.floor(start / 1440), math.floor(nowm / 1440) + 1 do
    local h = redis.call('HGETALL', P .. 'b:' .. s .. ':' .. d)
    for j = 1, #h, 2 do
      local f = h[j]
      if tonumber(string.sub(f, 1, -2)) >= start then
        local v, kind = tonumber(h[j + 1]), string.sub(f, -1)
        if kind == 'c' then c = c + v elseif kind == 'i' then i = i + v
        elseif kind == 'o' then o = o + v else r = r + v end
      end
    end
  end
  return c, i, o, r
end

-- The totals of window w (from minute start) for s, moved forward as time passes.
local function totals(s, w, start, nowm, keep)
  local tk = P .. 't:' .. s .. '|' .. w
  local t = redis.call('HMGET', tk, 's', 'c', 'i', 'o', 'r')
  local st = tonumber(t[1])
  -- An instance whose clock is a little behind asks for an earlier start: the stored
  -- totals serve it rather than being re-summed back and forth.
  if st ~= nil and start < st and st - start <= 2 then return num(t[2]), num(t[3]), num(t[4]), num(t[5]) end
  local c, i, o, r
  if st == nil or start < st or start - st > WALK then
    c, i, o, r = resum(s, start, nowm)
    redis.call('SADD', P .. 'w:' .. s, w)
    redis.call('EXPIRE', P .. 'w:' .. s, keep)
  else
    c, i, o, r = num(t[2]), num(t[3]), num(t[4]), num(t[5])
    if start == st then return c, i, o, r end
    for m = st, start - 1 do
      local b = redis.call('HMGET', bucket(s, m), m .. 'c', m .. 'i', m .. 'o', m .. 'r')
      c, i, o, r = c - num(b[1]), i - num(b[2]), o - num(b[3]), r - num(b[4])
    end
  end
  redis.call('HSET', tk, 's', start, 'c', c, 'i', i, 'o', o, 'r', r)
  redis.call('EXPIRE', tk, keep)
  return c, i, o, r
end

local function rate_expire(s, now)
  local q, k = P .. 'q:' .. s, P .. 'k:' .. s
  local old = redis.call('ZRANGEBYSCORE', q, '-inf', now - 60000)
  if #old == 0 then return end
  local gone = 0
  for _, id in ipairs(old) do
    gone = gone + num(redis.call('HGET', k, id))
    redis.call('HDEL', k, id)
  end
  redis.call('HINCRBY', k, '_', -gone)
  redis.call('ZREMRANGEBYSCORE', q, '-inf', now - 60000)
end

-- A limit's value: usage in cost units, tokens or requests; rpm, tpm or concurrent.
local function value(s, w, start, metric, now, keep)
  local p = redis.call('HMGET', P .. 'p:' .. s, 'c', 't', 'n')
  if metric == 'concurrent' then return num(p[3]), 0 end
  if metric == 'rpm' or metric == 'tpm' then
    rate_expire(s, now)
    local first = redis.call('ZRANGE', P .. 'q:' .. s, 0, 0, 'WITHSCORES')
    local reset = first[2] and (tonumber(first[2]) + 60000) or 0
    if metric == 'rpm' then return redis.call('ZCARD', P .. 'q:' .. s), reset end
    return num(redis.call('HGET', P .. 'k:' .. s, '_')), reset
  end
  local c, i, o, r = totals(s, w, start, math.floor(now / 60000), keep)
  if metric == 'cost_usd' then return c + num(p[1]), 0 end
  if metric == 'tokens' then return i + o + num(p[2]), 0 end
  if metric == 'input_tokens' then return i + num(p[2]), 0 end
  if metric == 'output_tokens' then return o + num(p[2]), 0 end
  return r + num(p[3]), 0
end

local function reached(metric, v, limit)
  if metric == 'cost_usd' then return v / 1e10 >= limit end
  return v >= limit
end

local function split(text)
  local parts = {}
  for part in string.gmatch(text, '[^' .. RS .. ']+') do parts[#parts + 1] = part end
  return parts
end

local function unreserve(id)
  local rec = redis.call('HGET', P .. 'r', id)
  if not rec then return false end
  redis.call('HDEL', P .. 'r', id)
  redis.call('ZREM', P .. 'x', id)
  local parts = split(rec)
  local units, tokens = tonumber(parts[1]), tonumber(parts[2])
  for j = 3, #parts do
    local pk = P .. 'p:' .. parts[j]
    redis.call('HINCRBY', pk, 'c', -units)
    redis.call('HINCRBY', pk, 't', -tokens)
    redis.call('HINCRBY', pk, 'n', -1)
  end
  return true
end

-- Add settled usage to s's bucket of minute m and to every window total covering m.
local function charge(s, m, c, i, o, r, keep)
  local b = bucket(s, m)
  if c ~= 0 then redis.call('HINCRBY', b, m .. 'c', c) end
  if i ~= 0 then redis.call('HINCRBY', b, m .. 'i', i) end
  if o ~= 0 then redis.call('HINCRBY', b, m .. 'o', o) end
  if r ~= 0 then redis.call('HINCRBY', b, m .. 'r', r) end
  redis.call('EXPIRE', b, keep + 86400)
  for _, w in ipairs(redis.call('SMEMBERS', P .. 'w:' .. s)) do
    local tk = P .. 't:' .. s .. '|' .. w
    local st = tonumber(redis.call('HGET', tk, 's'))
    if st ~= nil and m >= st then
      if c ~= 0 then redis.call('HINCRBY', tk, 'c', c) end
      if i ~= 0 then redis.call('HINCRBY', tk, 'i', i) end
      if o ~= 0 then redis.call('HINCRBY', tk, 'o', o) end
      if r ~= 0 then redis.call('HINCRBY', tk, 'r', r) end
    end
  end
end

local function loaded(identity)
  return redis.call('SISMEMBER', P .. 'ledgers', identity) == 1
end

if op == 'admit' then
  -- identity now_ms keep id expiry_ms units tokens rate allow nsubjects S... then
  -- per limit: S window start metric limit expected(0|1)
  -- -> {1 reserved | 0 stale | 2 verified refusal | -1 not loaded, value, aux, ...}
  if not loaded(ARGV[2]) then return {-1} end
  local now, keep = tonumber(ARGV[3]), tonumber(ARGV[4])
  local ns = tonumber(ARGV[11])
  local out, stale = {0}, false
  local j = 12 + ns
  while j <= #ARGV do
    local metric, limit = ARGV[j + 3], tonumber(ARGV[j + 4])
    local v, aux = value(ARGV[j], ARGV[j + 1], tonumber(ARGV[j + 2]), metric, now, keep)
    out[#out + 1] = v
    out[#out + 1] = aux
    if (reached(metric, v, limit) and '1' or '0') ~= ARGV[j + 5] then stale = true end
    j = j + 6
  end
  if stale then return out end
  if ARGV[10] ~= '1' then out[1] = 2 return out end
  local id, units, tokens = ARGV[5], tonumber(ARGV[7]), tonumber(ARGV[8])
  local rec = {ARGV[7], ARGV[8]}
  for k = 12, 11 + ns do
    local s = ARGV[k]
    rec[#rec + 1] = s
    local pk = P .. 'p:' .. s
    redis.call('HINCRBY', pk, 'c', units)
    redis.call('HINCRBY', pk, 't', tokens)
    redis.call('HINCRBY', pk, 'n', 1)
    if ARGV[9] == '1' and string.sub(s, 1, 2) ~= 'm:' then
      redis.call('ZADD', P .. 'q:' .. s, now, id)
      redis.call('HSET', P .. 'k:' .. s, id, tokens)
      redis.call('HINCRBY', P .. 'k:' .. s, '_', tokens)
      redis.call('PEXPIRE', P .. 'q:' .. s, 61000)
      redis.call('PEXPIRE', P .. 'k:' .. s, 61000)
    end
  end
  redis.call('HSET', P .. 'r', id, table.concat(rec, RS))
  redis.call('ZADD', P .. 'x', tonumber(ARGV[6]), id)
  out[1] = 1
  return out
elseif op == 'settle' then
  -- identity keep, then per settle: id minute units input output nsubjects S...
  -- -> 1, or -1 when this instance's ledger is not loaded (nothing is charged)
  if not loaded(ARGV[2]) then return -1 end
  local keep = tonumber(ARGV[3])
  local j = 4
  while j <= #ARGV do
    local id, m = ARGV[j], tonumber(ARGV[j + 1])
    local c, i, o = tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4])
    local ns = tonumber(ARGV[j + 5])
    -- "?ID": a settle that may have been applied already (sent when the connection
    -- broke): charged only if its reservation is still held.
    local maybe_done = string.sub(id, 1, 1) == '?'
    if maybe_done then id = string.sub(id, 2) end
    local last = j + 5 + ns
    if not unreserve(id) and maybe_done then last = 0 end
    for k = j + 6, last do
      local s = ARGV[k]
      charge(s, m, c, i, o, 1, keep)
      local kk = P .. 'k:' .. s
      local was = redis.call('HGET', kk, id)
      if was then
        redis.call('HSET', kk, id, i + o)
        redis.call('HINCRBY', kk, '_', i + o - tonumber(was))
      end
    end
    j = j + 6 + ns
  end
  return 1
elseif op == 'release' then
  -- id -> 1 released, 0 unknown (settled or expired)
  return unreserve(ARGV[2]) and 1 or 0
elseif op == 'sweep' then
  -- now_ms -> how many expired reservations were released
  local ids = redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', ARGV[2], 'LIMIT', 0, 500)
  for _, id in ipairs(ids) do unreserve(id) end
  return #ids
elseif op == 'load' then
  -- keep, then per row: S minute units input output requests
  local keep = tonumber(ARGV[2])
  for j = 3, #ARGV, 6 do
    charge(ARGV[j], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3]),
      tonumber(ARGV[j + 4]), tonumber(ARGV[j + 5]), keep)
  end
  return 1
elseif op == 'read' then
  -- now_ms keep, then per item: S window start -> per item c i o r and pending c t n
  local now, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
  local out = {}
  for j = 4, #ARGV, 3 do
    local s = ARGV[j]
    local c, i, o, r = totals(s, ARGV[j + 1], tonumber(ARGV[j + 2]), math.floor(now / 60000), keep)
    local p = redis.call('HMGET', P .. 'p:' .. s, 'c', 't', 'n')
    for _, v in ipairs({c, i, o, r, num(p[1]), num(p[2]), num(p[3])}) do out[#out + 1] = v end
  end
  return out
elseif op == 'unlock' then
  -- owner -> 1 when the rebuild lock was this owner's and is released
  if redis.call('GET', P .. 'lock') == ARGV[2] then return redis.call('DEL', P .. 'lock') end
  return 0
elseif op == 'loaded' then
  -- identity generation -> the generation now in force
  redis.call('SADD', P .. 'ledgers', ARGV[2])
  redis.call('SET', P .. 'gen', ARGV[3], 'NX')
  return redis.call('GET', P .. 'gen')
end
return redis.error_reply('unknown operation ' .. tostring(op))
