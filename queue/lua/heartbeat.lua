-- heartbeat.lua: extends the lease of the current attempt (fenced by its token)
-- and refreshes the worker's registration.
-- KEYS: common, job key
-- ARGV: common, id, token
-- Returns 'ok' or 'stale' (the attempt is no longer current: nothing written).
local jk = KEYS[NK + 1]
local id, token = ARGV[NA + 1], ARGV[NA + 2]
local f = redis.call('HMGET', jk, 's', 'tk', 'w')
if f[1] ~= 'running' or f[2] ~= token then return 'stale' end
local now = now_ms()
redis.call('ZADD', RUN, now + LEASE_MS, id)
beat(f[3], id, now)
return 'ok'
