-- One workload of the benchmark, for wrk 4:
--
--   wrk -t2 -c32 -d10s -s bench/wrk/workload.lua http://127.0.0.1:PORT -- POOL WORKLOAD THREADS
--
-- POOL is a file of "execution-id token" lines (the executions the harness seeded in the
-- fake backend, each with its own token and its own user); WORKLOAD is one of health,
-- variable_read, input_read, variable_write, output_write, mixed; THREADS is wrk's -t.
--
-- The rate limit (per execution) stays in force and is never reached: each wrk thread takes
-- its own slice of the pool and moves on to the next execution of its slice with every
-- request (every script cycle, for `mixed`), so each execution gets the total rate divided
-- by the pool's size, which the harness keeps under the limit. wrk's Lua cannot tell which
-- connection a request will go out on, so the rotation is per thread, over its connections.
--
-- Every request is formatted once, in init(); request() only hands the next one out.
-- done() prints one JSON line, `BENCH_WRK {...}`, which bench/report.py reads. No
-- response() function: defining one makes wrk parse every answer's headers in Lua, which
-- would take CPU from the server under test; wrk counts status errors (400 and over) anyway.

local threads_set_up = 0

function setup(thread)
   thread:set("thread_index", threads_set_up)
   threads_set_up = threads_set_up + 1
end

local READ_KEYS = { "greeting", "threshold", "settings" }
local WRITE_KEY = "counter"
local VARIABLE_BODY = '{"value":{"count":42,"by":"bench","tags":["a","b"]}}'
local OUTPUT_BODY = '{"data":{"greeting":"hello, bench","items":[1,2,3],"ok":true}}'

local prepared = {}
local next_request = 1

local function add(method, path, token, body)
   local headers = {}
   if token then
      headers["Authorization"] = "Bearer " .. token
   end
   if body then
      headers["Content-Type"] = "application/json"
   end
   prepared[#prepared + 1] = wrk.format(method, path, headers, body)
end

local function read_pool(path)
   local pool = {}
   for line in io.lines(path) do
      local id, token = line:match("^(%S+) (%S+)$")
      if id then
         pool[#pool + 1] = { id = id, token = token }
      end
   end
   return pool
end

local workloads = {
   health = function(execution)
      add("GET", "/health")
   end,
   variable_read = function(execution)
      add("GET", execution.base .. "/variables/settings", execution.token)
   end,
   input_read = function(execution)
      add("GET", execution.base .. "/input", execution.token)
   end,
   variable_write = function(execution)
      add("PUT", execution.base .. "/variables/" .. WRITE_KEY, execution.token, VARIABLE_BODY)
   end,
   output_write = function(execution)
      add("POST", execution.base .. "/output", execution.token, OUTPUT_BODY)
   end,
   -- What a script does: read its input, read three variables, write one, set its output.
   mixed = function(execution)
      add("GET", execution.base .. "/input", execution.token)
      for _, key in ipairs(READ_KEYS) do
         add("GET", execution.base .. "/variables/" .. key, execution.token)
      end
      add("PUT", execution.base .. "/variables/" .. WRITE_KEY, execution.token, VARIABLE_BODY)
      add("POST", execution.base .. "/output", execution.token, OUTPUT_BODY)
   end,
}

function init(args)
   local pool_path, workload, threads = args[1], args[2], tonumber(args[3])
   local prepare = workloads[workload]
   if not prepare or not threads then
      error("usage: -- POOL WORKLOAD THREADS (workload: health, variable_read, input_read,"
         .. " variable_write, output_write, mixed)")
   end
   if workload == "health" then
      prepare(nil)
      return
   end
   local pool = read_pool(pool_path)
   local first = math.floor(#pool * thread_index / threads) + 1
   local last = math.floor(#pool * (thread_index + 1) / threads)
   if last < first then
      error("the pool of " .. #pool .. " executions is smaller than the " .. threads .. " threads")
   end
   for i = first, last do
      local execution = pool[i]
      execution.base = "/executions/" .. execution.id
      prepare(execution)
   end
end

function request()
   local chosen = prepared[next_request]
   next_request = next_request % #prepared + 1
   return chosen
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'BENCH_WRK {"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
