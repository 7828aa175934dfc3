-- start.lua: starts the attempt of a job the worker has just moved into its
-- in-flight list (BLMOVE): running, attempts+1, a new fencing token, a lease,
-- the worker's registration, and "Started to amend" on an amend's first attempt.
-- KEYS: common, job key, the worker's in-flight list
-- ARGV: common, id, worker
-- Returns {'ok', field, value, ...}; {'skip'} when the job is no longer queued
-- (cancelled meanwhile, or gone): it leaves the list; {'gone'} when it is not
-- in the list any more.
local jk, proc = KEYS[NK + 1], KEYS[NK + 2]
local id, worker = ARGV[NA + 1], ARGV[NA + 2]
if not redis.call('LPOS', proc, id) then return {'gone'} end
local j = job_get(jk)
if not j or j.s ~= 'queued' then
  redis.call('LREM', proc, 0, id)
  return {'skip'}
end
local now = now_ms()
local a = (tonumber(j.a) or 0) + 1
local tok = redis.call('INCR', TOKEN)
redis.call('HSET', jk, 's', 'running', 'a', a, 'tk', tok, 'w', worker, 'u', int(now))
redis.call('ZADD', RUN, now + LEASE_MS, id)
beat(worker, id, now)
j.s, j.a, j.tk, j.w, j.u = 'running', int(a), int(tok), worker, int(now)
if a == 1 then post(id, j, 'start', nil, now) end
-- The record as it is now, without reading it again.
local out = {'ok'}
for f, v in pairs(j) do
  out[#out + 1] = f
  out[#out + 1] = v
end
return out
