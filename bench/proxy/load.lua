-- wrk script for the proxy benchmark: POST /v1/chat/completions with a body whose
-- identity (metadata.waystone, a JSON-encoded string) rotates over BENCH_USERS users,
-- user i belonging to group i % BENCH_GROUPS, so user->group links stay consistent.
--
-- Environment: BENCH_USERS (1000), BENCH_GROUPS (50), BENCH_STREAM (1 = SSE),
-- BENCH_INLINE_META (1 = send user tier/beta and group region metadata inline, which the
-- rulesets run's conditions read).  The requests are formatted once per thread in
-- init(), so wrk's per-request work is picking the next string.
-- done() prints one line "BENCH_RESULT {json}" that bench/proxy/run.py parses.

local requests = {}
local next_index = 1
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

local function identity(u, groups, inline)
  local g = u % groups
  if inline then
    local tier = (u % 2 == 0) and "free" or "pro"
    local beta = (u % 7 == 0) and "true" or "false"
    local region = (g % 2 == 0) and "eu" or "us"
    return string.format(
      '{\\"user\\": {\\"id\\": \\"u%d\\", \\"metadata\\": {\\"tier\\": \\"%s\\", \\"beta\\": %s}}, '
        .. '\\"group\\": {\\"id\\": \\"g%d\\", \\"metadata\\": {\\"region\\": \\"%s\\"}}}',
      u, tier, beta, g, region)
  end
  return string.format('{\\"user\\": \\"u%d\\", \\"group\\": \\"g%d\\"}', u, g)
end

function init(args)
  local users = tonumber(os.getenv("BENCH_USERS") or "1000")
  local groups = tonumber(os.getenv("BENCH_GROUPS") or "50")
  local stream = os.getenv("BENCH_STREAM") == "1"
  local inline = os.getenv("BENCH_INLINE_META") == "1"
  local streaming = stream and '"stream": true, "stream_options": {"include_usage": true}, ' or ''
  local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer bench" }
  for u = 0, users - 1 do
    local body = string.format(
      '{"model": "bench-model", "messages": [{"role": "system", "content": "You are a helpful assistant."}, '
        .. '{"role": "user", "content": "Say hello to user %d in one short sentence."}], '
        .. '"max_tokens": 64, "temperature": 0.2, %s"metadata": {"waystone": "%s", "app": "bench"}}',
      u, streaming, identity(u, groups, inline))
    requests[u + 1] = wrk.format("POST", "/v1/chat/completions", headers, body)
  end
  -- Threads start at different users so they do not all send the same identity.
  next_index = ((thread_id or 0) * 7919) % users + 1
end

function request()
  local r = requests[next_index]
  next_index = next_index + 1
  if next_index > #requests then next_index = 1 end
  return r
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
