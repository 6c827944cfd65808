-- waystone's counters in Redis: one script, one operation per call (ARGV[1]).
-- See daemon/counters/redis_store.py for the design.
--
-- Keys (S is a subject key such as "u:alice", "g:acme", "m:acme<US>alice", "r:"):
--   ws:b:S:DAY   hash "<minute>c|i|o|r" -> settled cost units, input, output, requests
--   ws:t:S|W     hash s, e, c, i, o, r: window W's totals over minutes s..e (e is the
--                minute before the reader's current one, which is read from its bucket)
--   ws:w:S       hash W -> e: S's windows, for a settle of a minute some totals hold
--   ws:p:S       hash c, t, n: live reservations (cost units, tokens, count)
--   ws:q:S       hash e, R, T, "<second>r|t": the rate window, requests and tokens per
--                second started; seconds up to e have left it, R and T sum the others
--   ws:r         hash reservation id -> "units<RS>tokens<RS>S1<RS>S2..."
--   ws:x         zset reservation id -> expiry ms
--   ws:ledgers   set of the ledgers whose rows are loaded; ws:gen: this data's generation
--
-- Most of a call's cost is its redis.call()s: each value is read once per call
-- (the caches below) and a settle writes the buckets of its minute and little else.
local P = 'ws:'
local RS = '\30'
local WALK = 2880  -- minutes walked to move a window's edges; past that, re-summed
local op = ARGV[1]

local function num(x) return tonumber(x) or 0 end

local function bucket(s, m) return P .. 'b:' .. s .. ':' .. math.floor(m / 1440) end

local function minute_values(s, m)
  local b = redis.call('HMGET', bucket(s, m), m .. 'c', m .. 'i', m .. 'o', m .. 'r')
  return num(b[1]), num(b[2]), num(b[3]), num(b[4])
end

local function resum(s, first, last)
  local c, i, o, r = 0, 0, 0, 0
  for d = math.floor(first / 1440), math.floor(last / 1440) do
    local h = redis.call('HGETALL', P .. 'b:' .. s .. ':' .. d)
    for j = 1, #h, 2 do
      local f = h[j]
      local m = tonumber(string.sub(f, 1, -2))
      if m >= first and m <= last then
        local v, kind = tonumber(h[j + 1]), string.sub(f, -1)
        if kind == 'c' then c = c + v elseif kind == 'i' then i = i + v
        elseif kind == 'o' then o = o + v else r = r + v end
      end
    end
  end
  return c, i, o, r
end

local current = {}  -- per subject: its current minute's bucket, read once per call
local function now_bucket(s, nowm)
  local v = current[s]
  if v == nil then
    local c, i, o, r = minute_values(s, nowm)
    v = {c, i, o, r}
    current[s] = v
  end
  return v[1], v[2], v[3], v[4]
end

-- Window w's totals for s from minute start up to now (minute nowm), the stored
-- totals moved forward as time passes.
local function totals(s, w, start, nowm, keep)
  local tk = P .. 't:' .. s .. '|' .. w
  local t = redis.call('HMGET', tk, 's', 'e', 'c', 'i', 'o', 'r')
  local st, e = tonumber(t[1]), tonumber(t[2])
  -- An instance whose clock is a little behind asks for an earlier start: the stored
  -- totals serve it rather than being re-summed back and forth.
  if st ~= nil and start < st and st - start <= 2 then start = st end
  local last = nowm - 1
  local c, i, o, r
  if st == nil or start < st or start - st > WALK or last - e > WALK or e > last + 2 then
    c, i, o, r = resum(s, start, last)
    e = last
  else
    c, i, o, r = num(t[3]), num(t[4]), num(t[5]), num(t[6])
    if start == st and e >= last then
      local nc, ni, no, nr = now_bucket(s, nowm)
      if e == last then return c + nc, i + ni, o + no, r + nr end
      return c, i, o, r  -- a clock ahead moved e on: its minute is in the totals
    end
    for m = e + 1, last do
      local bc, bi, bo, br = minute_values(s, m)
      c, i, o, r = c + bc, i + bi, o + bo, r + br
    end
    for m = st, start - 1 do
      local bc, bi, bo, br = minute_values(s, m)
      c, i, o, r = c - bc, i - bi, o - bo, r - br
    end
  end
  if e < last then e = last end
  redis.call('HSET', tk, 's', start, 'e', e, 'c', c, 'i', i, 'o', o, 'r', r)
  redis.call('EXPIRE', tk, keep)
  redis.call('HSET', P .. 'w:' .. s, w, e)
  redis.call('EXPIRE', P .. 'w:' .. s, keep)
  if e > last then return c, i, o, r end
  local nc, ni, no, nr = now_bucket(s, nowm)
  return c + nc, i + ni, o + no, r + nr
end

local pendings = {}
local function pending(s)
  local p = pendings[s]
  if p == nil then
    local h = redis.call('HMGET', P .. 'p:' .. s, 'c', 't', 'n')
    p = {num(h[1]), num(h[2]), num(h[3])}
    pendings[s] = p
  end
  return p
end

-- The rate window of s at second sec: requests, tokens and when its oldest second
-- still counted leaves (ms, 0 when empty).  A second's requests leave once all of
-- them are 60 s old: up to a second later than their own start + 60 s.
local rates = {}
local function rate(s, sec)
  local v = rates[s]
  if v ~= nil then return v end
  local q = P .. 'q:' .. s
  local h = redis.call('HMGET', q, 'e', 'R', 'T', 'f')
  local e, R, T, f = tonumber(h[1]), num(h[2]), num(h[3]), tonumber(h[4])
  local cutoff = sec - 61
  local fresh = false
  if e == nil or cutoff - e > 120 then
    if e ~= nil then redis.call('DEL', q) end
    e, R, T, f, fresh = cutoff, 0, 0, nil, true
  elseif e < cutoff then
    local fields = {}
    for b = e + 1, cutoff do
      fields[#fields + 1] = b .. 'r'
      fields[#fields + 1] = b .. 't'
    end
    local old = redis.call('HMGET', q, unpack(fields))
    for j = 1, #old, 2 do R, T = R - num(old[j]), T - num(old[j + 1]) end
    redis.call('HDEL', q, unpack(fields))
    redis.call('HSET', q, 'e', cutoff, 'R', R, 'T', T)
    e = cutoff
  end
  if R <= 0 then
    f = nil
  elseif f == nil or f <= e then  -- the oldest second left: find the next one
    local fields = {}
    for b = e + 1, sec do fields[#fields + 1] = b .. 'r' end
    local counts = redis.call('HMGET', q, unpack(fields))
    f = nil
    for n = 1, #counts do
      if counts[n] then f = e + n break end
    end
    if f then redis.call('HSET', q, 'f', f) end
  end
  -- The oldest second counted leaves at f + 61 (its last start is 60 s old by then).
  v = {R, T, f and (f + 61) * 1000 or 0, e, fresh, f}
  rates[s] = v
  return v
end

-- A limit's value: usage in cost units, tokens or requests; rpm, tpm or concurrent.
local function value(s, w, start, metric, now, keep)
  local p = pending(s)
  if metric == 'concurrent' then return p[3], 0 end
  if metric == 'rpm' or metric == 'tpm' then
    local q = rate(s, math.floor(now / 1000))
    if metric == 'rpm' then return q[1], q[3] end
    return q[2], q[3]
  end
  local c, i, o, r = totals(s, w, start, math.floor(now / 60000), keep)
  if metric == 'cost_usd' then return c + p[1], 0 end
  if metric == 'tokens' then return i + o + p[2], 0 end
  if metric == 'input_tokens' then return i + p[2], 0 end
  if metric == 'output_tokens' then return o + p[2], 0 end
  return r + p[3], 0
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
  return tokens  -- what it reserved
end

-- Add settled usage to s's bucket of minute m, and to the totals that already hold m.
local function charge(s, m, c, i, o, r, keep)
  local b = bucket(s, m)
  if c ~= 0 then redis.call('HINCRBY', b, m .. 'c', c) end
  if i ~= 0 then redis.call('HINCRBY', b, m .. 'i', i) end
  if o ~= 0 then redis.call('HINCRBY', b, m .. 'o', o) end
  -- The day's key gets its expiry with its minute's first request (or a load).
  if r == 0 or redis.call('HINCRBY', b, m .. 'r', r) == r then
    redis.call('EXPIRE', b, keep + 86400)
  end
  local windows = redis.call('HGETALL', P .. 'w:' .. s)
  for j = 1, #windows, 2 do
    if tonumber(windows[j + 1]) >= m then
      local tk = P .. 't:' .. s .. '|' .. windows[j]
      local st = tonumber(redis.call('HGET', tk, 's'))
      if st ~= nil and m >= st then
        if c ~= 0 then redis.call('HINCRBY', tk, 'c', c) end
        if i ~= 0 then redis.call('HINCRBY', tk, 'i', i) end
        if o ~= 0 then redis.call('HINCRBY', tk, 'o', o) end
        if r ~= 0 then redis.call('HINCRBY', tk, 'r', r) end
      end
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
  local sec = math.floor(now / 1000)
  local rec = {ARGV[7], ARGV[8]}
  for k = 12, 11 + ns do
    local s = ARGV[k]
    rec[#rec + 1] = s
    local pk = P .. 'p:' .. s
    redis.call('HINCRBY', pk, 'c', units)
    redis.call('HINCRBY', pk, 't', tokens)
    redis.call('HINCRBY', pk, 'n', 1)
    if ARGV[9] == '1' and string.sub(s, 1, 2) ~= 'm:' then
      local q = P .. 'q:' .. s
      local state = rate(s, sec)
      if state[5] then redis.call('HSET', q, 'e', state[4]) end
      if state[6] == nil then
        redis.call('HSET', q, 'f', sec)
        state[6] = sec
      end
      redis.call('HINCRBY', q, sec .. 't', tokens)
      redis.call('HINCRBY', q, 'R', 1)
      redis.call('HINCRBY', q, 'T', tokens)
      if redis.call('HINCRBY', q, sec .. 'r', 1) == 1 then  -- the second's first
        redis.call('PEXPIRE', q, 62000)
      end
    end
  end
  redis.call('HSET', P .. 'r', id, table.concat(rec, RS))
  redis.call('ZADD', P .. 'x', tonumber(ARGV[6]), id)
  out[1] = 1
  return out
elseif op == 'settle' then
  -- identity keep, then per settle: id minute second units input output nsubjects S...
  -- -> 1, or -1 when this instance's ledger is not loaded (nothing is charged)
  if not loaded(ARGV[2]) then return -1 end
  local keep = tonumber(ARGV[3])
  local j = 4
  while j <= #ARGV do
    local id, m, sec = ARGV[j], tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
    local c, i, o = tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4]), tonumber(ARGV[j + 5])
    local ns = tonumber(ARGV[j + 6])
    -- "?ID": a settle that may have been applied already (sent when the connection
    -- broke): charged only if its reservation is still held.
    local maybe_done = string.sub(id, 1, 1) == '?'
    if maybe_done then id = string.sub(id, 2) end
    local held = unreserve(id)  -- the tokens it reserved, or false
    if held or not maybe_done then
      for k = j + 7, j + 6 + ns do
        local s = ARGV[k]
        charge(s, m, c, i, o, 1, keep)
        if held and sec > 0 and i + o ~= held and string.sub(s, 1, 2) ~= 'm:' then
          -- tpm reads the actual tokens once known, while the second still counts
          local q = P .. 'q:' .. s
          local e = tonumber(redis.call('HGET', q, 'e'))
          if e ~= nil and sec > e then
            redis.call('HINCRBY', q, sec .. 't', i + o - held)
            redis.call('HINCRBY', q, 'T', i + o - held)
          end
        end
      end
    end
    j = j + 7 + ns
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
    local p = pending(s)
    for _, v in ipairs({c, i, o, r, p[1], p[2], p[3]}) do out[#out + 1] = v end
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
