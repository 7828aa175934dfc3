-- cancel.lua: queued|retrying -> cancelled: out of the queue / due set, lock
-- released, failure event with reason "cancelled by the administrator".  A
-- copy already moved into a worker's list is skipped by start.lua.
-- KEYS: common, job key
-- ARGV: common, id
-- A job marked cu (its clean-up attempt, requeue.lua) is not cancelled: it
-- removes what dead workers left half-made.
-- Returns {'ok'}, {'missing'}, {'state', current state} or {'cleanup', crashes}.
local jk, id = KEYS[NK + 1], ARGV[NA + 1]
local j = job_get(jk)
if not j then return {'missing'} end
if j.s ~= 'queued' and j.s ~= 'retrying' then return {'state', j.s} end
if j.cu then return {'cleanup', j.cr or '0'} end
redis.call('LREM', Q, 0, id)
finish_job(jk, id, j, 'cancelled', CANCEL_REASON, now_ms())
return {'ok'}
