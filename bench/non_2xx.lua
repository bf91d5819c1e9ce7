-- wrk script for bench/proxy_throughput.py: counts the answers whose status is not 2xx, and
-- prints the 99.9th latency percentile, which wrk's --latency leaves out.
-- wrk's own "Non-2xx or 3xx responses" leaves out 3xx, and a 302 is how an authenticating
-- proxy sends a request whose session it did not find back to sign in.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non_2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("non_2xx")
  end
  io.write(string.format("non-2xx answers: %d of %d\n", total, summary.requests))
  io.write(string.format("p99.9 latency: %d us\n", latency:percentile(99.9)))
end
