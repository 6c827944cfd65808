-- wrk script for bench/messages_sse.py: POST /v1/messages, streamed, in Anthropic's shape,
-- with the same users, groups, prompt and token cap as bench/proxy/load.lua's chat
-- requests (metadata.waystone rotates over BENCH_USERS users in BENCH_GROUPS groups).
-- done() prints one line "BENCH_RESULT {json}", as load.lua does.

local requests = {}
local next_index = 1

function init(args)
  local users = tonumber(os.getenv("BENCH_USERS") or "1000")
  local groups = tonumber(os.getenv("BENCH_GROUPS") or "50")
  local headers = {
    ["Content-Type"] = "application/json",
    ["x-api-key"] = "bench",
    ["anthropic-version"] = "2023-06-01",
  }
  for u = 0, users - 1 do
    local body = string.format(
      '{"model": "anth/bench-claude", "system": "You are a helpful assistant.", '
        .. '"messages": [{"role": "user", "content": "Say hello to user %d in one short sentence."}], '
        .. '"max_tokens": 64, "temperature": 0.2, "stream": true, '
        .. '"metadata": {"waystone": "{\\"user\\": \\"u%d\\", \\"group\\": \\"g%d\\"}"}}',
      u, u, u % groups)
    requests[u + 1] = wrk.format("POST", "/v1/messages", headers, body)
  end
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
