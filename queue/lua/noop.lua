-- noop.lua: jobs a worker claimed (moved into its in-flight list, not
-- started) and found to need nothing (an amend of a disk whose volumes are all
-- at compat 1.1 already).  Each is recorded in one step with what start.lua
-- and finish.lua would write for an attempt that ran and succeeded: attempts+1,
-- a new fencing token, the worker, the start event (first attempt), succeeded,
-- the lock released, the indexes, the success event.  A job that is no longer
-- in the list or no longer queued (cancelled meanwhile) is only dropped from
-- the list, as start.lua does.  The worker is registered idle.
-- KEYS: common, the worker's in-flight list, then one job key per job
-- ARGV: common, worker, then the job ids (in KEYS order)
-- Returns per job 1 (recorded) or 0.
local proc, worker = KEYS[NK + 1], ARGV[NA + 1]
local now = now_ms()
local out = {}
-- Only the fields this script and finish_job() read (HGETALL and a table of
-- every field cost three times as much: Redis runs these scripts one after
-- another for every worker).
local function job_few(key)
  local v = redis.call('HMGET', key, 's', 'a', 'k', 'al', 'dk', 'dm', 'v')
  if not v[1] then return nil end
  return {s = v[1], a = v[2], k = v[3], al = v[4] or nil, dk = v[5], dm = v[6], v = v[7] or nil}
end
for i = 1, #ARGV - NA - 1 do
  local jk, id = KEYS[NK + 1 + i], ARGV[NA + 1 + i]
  local j = redis.call('LREM', proc, 0, id) > 0 and job_few(jk)
  out[i] = 0
  if j and j.s == 'queued' then
    local a = (tonumber(j.a) or 0) + 1
    j.a, j.w, j.tk = int(a), worker, int(redis.call('INCR', TOKEN))
    redis.call('HSET', jk, 'a', j.a, 'tk', j.tk, 'w', worker)
    if a == 1 then post(id, j, 'start', nil, now) end
    finish_job(jk, id, j, 'succeeded', nil, now)
    out[i] = 1
  end
end
beat(worker, '', now)
return out
