-- finish.lua: ends an attempt, fenced by its token.  success: succeeded, lock
-- released, success event.  refused: failed (never retried).  retry: retrying
-- until next_attempt (now + delay) in DUE with the lock kept, or failed once
-- attempts reach max_attempts.  Each failed attempt appends its line to "e".
-- The worker leaves the job's in-flight list and is registered idle, and the
-- qemu-img runs of its process since its last finish are added to the counter
-- /metrics shows.  The progress the worker last knew (done, total) is
-- written with the end: a worker writes progress at most every 250 ms.
-- KEYS: common, job key, the worker's in-flight list, the counters hash
-- ARGV: common, id, token, outcome ('success'|'refused'|'retry'), reason, delay_ms,
--       qemu-img runs, done, total ('' for both: progress left as it is)
--       [, ms the attempt ran, its bucket (counted in stats for /metrics)]
-- Returns {'ok', final state} or {'stale'} (nothing written).
local jk, proc, stats = KEYS[NK + 1], KEYS[NK + 2], KEYS[NK + 3]
local id, token, outcome = ARGV[NA + 1], ARGV[NA + 2], ARGV[NA + 3]
local reason, delay, runs = ARGV[NA + 4], tonumber(ARGV[NA + 5]), tonumber(ARGV[NA + 6])
local done, total = ARGV[NA + 7], ARGV[NA + 8]
local ran_ms, bucket = tonumber(ARGV[NA + 9]), tonumber(ARGV[NA + 10])
local j = job_get(jk)
if not j or j.s ~= 'running' or j.tk ~= token then return {'stale'} end
if runs and runs > 0 then redis.call('HINCRBY', stats, 'qemu_img_runs', runs) end
if ran_ms and bucket then
  redis.call('HINCRBY', stats, 'r:' .. j.k .. ':' .. int(bucket), 1)
  redis.call('HINCRBY', stats, 'r:' .. j.k .. ':ms', int(ran_ms))
end
local now = now_ms()
if done and done ~= '' and total and total ~= '' then
  redis.call('HSET', jk, 'd', done, 't', total)
end
redis.call('LREM', proc, 0, id)
beat(j.w, '', now)
if outcome == 'success' then
  finish_job(jk, id, j, 'succeeded', nil, now)
  return {'ok', 'succeeded'}
end
add_error(jk, j, reason)
if outcome == 'refused' or (tonumber(j.a) or 0) >= (tonumber(j.ma) or 1) then
  finish_job(jk, id, j, 'failed', reason, now)
  return {'ok', 'failed'}
end
local at = now + delay
redis.call('HSET', jk, 's', 'retrying', 'n', int(at), 'u', int(now))
redis.call('ZREM', RUN, id)
redis.call('ZADD', DUE, at, id)
return {'ok', 'retrying'}
