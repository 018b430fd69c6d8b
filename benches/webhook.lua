-- wrk script for scripts/bench.sh: POST /webhook/alertmanager with a payload no other
-- request carries, so the relay stores every one (no duplicates).
--
-- Environment:
--   BENCH_ALERTS         alerts per payload (default 1)
--   BENCH_TOKEN          bearer token (the ceiling ignores it)
--   BENCH_MAX_PER_THREAD stop a thread after this many answers (bounds the count; wrk's
--                        -d bounds the time)
--   BENCH_STREAM         a number that keeps payloads of different runs apart
--
-- Each alert's fingerprint carries (stream + thread, request counter, index) and its
-- startsAt carries the counter in its nanoseconds: the same shape, sizes and labels as
-- benches/common/mod.rs payload(), which the fixed-rate client sends.
--
-- done() prints key=value lines for the script.

local n_alerts = tonumber(os.getenv("BENCH_ALERTS") or "1")
local token = os.getenv("BENCH_TOKEN") or ""
local max_per_thread = tonumber(os.getenv("BENCH_MAX_PER_THREAD") or "0")
local stream = tonumber(os.getenv("BENCH_STREAM") or "0")

local head = '{"version":"4","groupKey":"{}/{service=\\"samsa\\"}:{alertname=\\"SamsaLoginDown\\"}",'
  .. '"truncatedAlerts":0,"status":"firing","receiver":"samsa-relay",'
  .. '"groupLabels":{"alertname":"SamsaLoginDown"},"commonLabels":{"service":"samsa"},'
  .. '"commonAnnotations":{},"externalURL":"http://alertmanager.example:9093","alerts":['
local alert_format = '{"status":"firing","labels":{"alertname":"SamsaLoginDown","service":"samsa",'
  .. '"actor":"kommun-boras"},"annotations":{"summary":"SAMSA login page unreachable"},'
  .. '"startsAt":"2026-11-28T04:12:00.%09dZ","endsAt":"0001-01-01T00:00:00Z",'
  .. '"generatorURL":"http://prometheus.example/graph","fingerprint":"%04x%012x%04x"}'
local tail = "]}"

-- Wall-clock time (LuaJIT's FFI): when a thread stops at its count before wrk's -d is
-- over, the rate is answers over the time they took, not over -d.
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local timespec = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

function init(args)
  thread_stream = stream + wrk.thread:get("id")
  counter = 0
  answers = 0
  not_200 = 0
  status_503 = 0
  started = now()
  wrk.method = "POST"
  wrk.path = "/webhook/alertmanager"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local parts = {}
  for index = 0, n_alerts - 1 do
    parts[index + 1] = string.format(alert_format, counter % 1000000000, thread_stream, counter, index)
  end
  return wrk.format(nil, nil, nil, head .. table.concat(parts, ",") .. tail)
end

function response(status, headers, body)
  answers = answers + 1
  if status ~= 200 then
    not_200 = not_200 + 1
  end
  if status == 503 then
    status_503 = status_503 + 1
  end
  wrk.thread:set("answers", answers)
  wrk.thread:set("not_200", not_200)
  wrk.thread:set("status_503", status_503)
  wrk.thread:set("elapsed", now() - started)
  if max_per_thread > 0 and answers >= max_per_thread then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local answered, refused, unavailable, seconds = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    answered = answered + (thread:get("answers") or 0)
    refused = refused + (thread:get("not_200") or 0)
    unavailable = unavailable + (thread:get("status_503") or 0)
    seconds = math.max(seconds, thread:get("elapsed") or 0)
  end
  if seconds <= 0 then
    seconds = summary.duration / 1e6
  end
  local errors = summary.errors
  io.write(string.format("requests=%d\n", summary.requests))
  io.write(string.format("answered=%d\n", answered))
  io.write(string.format("not_200=%d\n", refused))
  io.write(string.format("status_503=%d\n", unavailable))
  io.write(string.format("socket_errors=%d\n", errors.connect + errors.read + errors.write + errors.timeout))
  io.write(string.format("seconds=%.3f\n", seconds))
  io.write(string.format("rps=%.1f\n", answered / seconds))
  io.write(string.format("p50_ms=%.2f\n", latency:percentile(50) / 1000))
  io.write(string.format("p99_ms=%.2f\n", latency:percentile(99) / 1000))
  io.write(string.format("max_ms=%.2f\n", latency.max / 1000))
end
