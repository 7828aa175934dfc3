-- progress.lua: records progress (done of total), fenced by the token, and
-- renews the lease and the worker's registration as heartbeat.lua does (so a
-- progress write is also a lease check: one round trip per amended volume).
-- With a plan (an amend's volumes and their GEN, written before its first
-- qemu-img), it is kept in "pl" until the job ends.
-- KEYS: common, job key
-- ARGV: common, id, token, done, total [, plan]
-- Returns 'ok' or 'stale' (nothing written).
local jk = KEYS[NK + 1]
local id, token, done, total = ARGV[NA + 1], ARGV[NA + 2], ARGV[NA + 3], ARGV[NA + 4]
local plan = ARGV[NA + 5]
local f = redis.call('HMGET', jk, 's', 'tk', 'w')
if f[1] ~= 'running' or f[2] ~= token then return 'stale' end
local now = now_ms()
redis.call('HSET', jk, 'd', done, 't', total, 'u', int(now))
if plan then redis.call('HSET', jk, 'pl', plan) end
redis.call('ZADD', RUN, now + LEASE_MS, id)
beat(f[3], id, now)
return 'ok'
