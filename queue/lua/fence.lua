-- fence.lua: a lease check that writes nothing: 'ok' while the attempt (its
-- token) is current and its lease has not run out, else 'stale'.  A worker
-- sends it right before a file write the attempt does not own alone (a GEN
-- bump); having written nothing, its answer does not wait for Redis's fsync
-- under appendfsync always.  The lease itself is renewed by heartbeat.lua and
-- progress.lua.
-- KEYS: common, job key
-- ARGV: common, id, token
-- Returns 'ok' or 'stale'.
local jk = KEYS[NK + 1]
local id, token = ARGV[NA + 1], ARGV[NA + 2]
local f = redis.call('HMGET', jk, 's', 'tk')
if f[1] ~= 'running' or f[2] ~= token then return 'stale' end
local lease = redis.call('ZSCORE', RUN, id)
if not lease or tonumber(lease) <= now_ms() then return 'stale' end
return 'ok'
