-- progress.lua: records progress (done of total), fenced by the token, and
-- renews the lease and the worker's registration as heartbeat.lua does (so a
-- progress write is also a lease check: one round trip per amended volume).
-- KEYS: common, job key
-- ARGV: common, id, token, done, total
-- Returns 'ok' or 'stale' (nothing written).
local jk = KEYS[NK + 1]
local id, token, done, total = ARGV[NA + 1], ARGV[NA + 2], ARGV[NA + 3], ARGV[NA + 4]
local f = redis.call('HMGET', jk, 's', 'tk', 'w')
if f[1] ~= 'running' or f[2] ~= token then return 'stale' end
local now = now_ms()
redis.call('HSET', jk, 'd', done, 't', total, 'u', int(now))
redis.call('ZADD', RUN, now + LEASE_MS, id)
beat(f[3], id, now)
return 'ok'
