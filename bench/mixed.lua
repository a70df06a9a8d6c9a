-- wrk script of `bench/run.sh` for the reload-under-load run: each request comes from
-- the next address of BENCH_ADDRS (comma-separated, sent as X-Forwarded-For through the
-- trusted loopback proxy), and every answer is counted by the jurisdiction it names and
-- its status, so the script can tell an expected 451 (a withdrawn market) from a failure.
-- `done` prints the counts of every wrk thread as `answer JURISDICTION STATUS COUNT`
-- lines.

local addrs = {}
for a in string.gmatch(os.getenv("BENCH_ADDRS") or "", "[^,]+") do
  addrs[#addrs + 1] = a
end
if #addrs == 0 then
  error("BENCH_ADDRS is empty")
end

-- Formatted in `init`, once wrk knows the host and path of the URL.
local requests = {}
init = function(args)
  for i, a in ipairs(addrs) do
    requests[i] = wrk.format(nil, nil, { ["Host"] = wrk.host, ["X-Forwarded-For"] = a })
  end
end

local next_request = 0
counts = {}

request = function()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

response = function(status, headers, body)
  local j = headers["x-marketgate-jurisdiction"] or headers["X-Marketgate-Jurisdiction"] or "-"
  local k = j .. " " .. status
  counts[k] = (counts[k] or 0) + 1
end

-- Runs in the main state: collect the threads to read their counts at the end.
local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end

done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts") or {}) do
      total[k] = (total[k] or 0) + v
    end
  end
  for k, v in pairs(total) do
    io.write(string.format("answer %s %d\n", k, v))
  end
end
