-- wrk script of scripts/bench-scim: one SCIM operation per run, chosen by BENCH_OP.
--   filter  GET  {base}/Users?filter=userName eq "userNNNNNN@example.com" (random existing user)
--   get     GET  {base}/Users/{id}          (random id from BENCH_IDS)
--   page    GET  {base}/Users?startIndex=R&count=100
--   create  POST {base}/Users               (unique userNames: BENCH_TAG, thread, counter)
--   patch   PATCH {base}/Groups/{BENCH_GROUP}: add one member not yet in it (ids from BENCH_IDS,
--           split between threads; `wraps` counts requests after a thread ran out of fresh ids)
-- done() writes the summary as JSON to BENCH_OUT. Status >= 400 counts as an error there
-- (wrk's "Non-2xx or 3xx responses").

local op = os.getenv("BENCH_OP")
local base = os.getenv("BENCH_BASE")
local token = os.getenv("BENCH_TOKEN")
local users = tonumber(os.getenv("BENCH_USERS") or "0")
local ids_file = os.getenv("BENCH_IDS")
local group = os.getenv("BENCH_GROUP")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local tag = os.getenv("BENCH_TAG") or "b"
local out = os.getenv("BENCH_OUT")

local threads = {}
local started = 0

function setup(thread)
  started = started + 1
  thread:set("tid", started)
  table.insert(threads, thread)
end

local ids = {}
sent = 0
wraps = 0

function init(args)
  math.randomseed(os.time() * 1000 + tid)
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Accept"] = "application/scim+json"
  wrk.headers["Content-Type"] = "application/scim+json"
  if op == "get" or op == "patch" then
    local f = assert(io.open(ids_file, "r"))
    local k = 0
    for line in f:lines() do
      k = k + 1
      if op == "get" or (k % nthreads) == (tid - 1) then
        ids[#ids + 1] = line
      end
    end
    f:close()
    assert(#ids > 0, "no ids in " .. ids_file)
  end
end

local patch_head = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],'
  .. '"Operations":[{"op":"add","path":"members","value":[{"value":"'
local patch_tail = '"}]}]}'

function request()
  sent = sent + 1
  if op == "filter" then
    return wrk.format("GET", string.format(
      "%s/Users?filter=userName%%20eq%%20%%22user%06d%%40example.com%%22", base, math.random(1, users)))
  elseif op == "get" then
    return wrk.format("GET", base .. "/Users/" .. ids[math.random(#ids)])
  elseif op == "page" then
    return wrk.format("GET", string.format("%s/Users?startIndex=%d&count=100", base,
      math.random(1, math.max(1, users - 99))))
  elseif op == "create" then
    local name = string.format("%s-%d-%d", tag, tid, sent)
    local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"'
      .. name .. '@example.com","displayName":"New ' .. name .. '","name":{"givenName":"New","familyName":"'
      .. name .. '"},"active":true,"emails":[{"value":"' .. name
      .. '@example.com","type":"work","primary":true}]}'
    return wrk.format("POST", base .. "/Users", nil, body)
  elseif op == "patch" then
    if sent > #ids then wraps = wraps + 1 end
    local id = ids[((sent - 1) % #ids) + 1]
    return wrk.format("PATCH", base .. "/Groups/" .. group, nil, patch_head .. id .. patch_tail)
  end
  error("unknown BENCH_OP " .. tostring(op))
end

function done(summary, latency, requests)
  local s, w = 0, 0
  for _, t in ipairs(threads) do
    s = s + (t:get("sent") or 0)
    w = w + (t:get("wraps") or 0)
  end
  local e = summary.errors
  local f = assert(io.open(out, "w"))
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p75_us":%d,'
      .. '"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,"sent":%d,"wraps":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, s, w))
  f:close()
end
