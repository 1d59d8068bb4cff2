-- wrk script for bench/reads: fetch random profiles of the 1,000,000 stored, and print the
-- figures as one JSON line (wrk's own summary has no p99.9).
local threads = 0

function setup(thread)
  thread:set("number", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed(42 + number)
  profiles = tonumber(args[1] or "1000000")
end

function request()
  local id = math.random(0, profiles - 1)
  return wrk.format("GET", string.format("/rest/v1/profiles/thirdPartyId/c%07d?client=bench", id))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "socketErrors": %d, "non2xx": %d, "p50Ms": %.3f, "p99Ms": %.3f, "p999Ms": %.3f, "maxMs": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
end
