-- wrk script for bench/run.py: replays prepared requests and reports one JSON line.
--
-- BENCH_REQUESTS names a file of tab-separated lines: METHOD, PATH, BODY (may be
-- empty), then optional header lines "Name: value". Each wrk thread walks the
-- whole list from its own starting point, so the threads do not poll the same
-- device code at the same moment. A response whose body lacks BENCH_EXPECT
-- counts as unexpected (a slow_down would mean the polling budget, not the
-- server, was measured).

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   requests = {}
   for line in io.lines(os.getenv("BENCH_REQUESTS")) do
      local fields = {}
      for field in (line .. "\t"):gmatch("([^\t]*)\t") do
         table.insert(fields, field)
      end
      local method, path, body = fields[1], fields[2], fields[3]
      local headers = {}
      if body ~= "" then
         headers["Content-Type"] = "application/x-www-form-urlencoded"
      else
         body = nil
      end
      for i = 4, #fields do
         local name, value = fields[i]:match("^([^:]+):%s*(.*)$")
         if name then headers[name] = value end
      end
      table.insert(requests, wrk.format(method, path, headers, body))
   end
   expect = os.getenv("BENCH_EXPECT") or ""
   unexpected = 0
   local threads = tonumber(os.getenv("BENCH_THREADS") or "1")
   index = math.floor(#requests * id / threads) % #requests
end

function request()
   index = index % #requests + 1
   return requests[index]
end

function response(status, headers, body)
   if expect ~= "" and not body:find(expect, 1, true) then
      unexpected = unexpected + 1
   end
end

function done(summary, latency, requests)
   local odd = 0
   for _, thread in ipairs(threads) do
      odd = odd + thread:get("unexpected")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
      '"max_us": %d, "socket_errors": %d, "http_errors": %d, "unexpected": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, e.status, odd))
end
