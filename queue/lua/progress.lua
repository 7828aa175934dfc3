-- progress.lua: records progress (done of total), fenced by the token.
-- KEYS: common, job key
-- ARGV: common, id, token, done, total
-- Returns 'ok' or 'stale' (nothing written).
local jk = KEYS[NK + 1]
local token, done, total = ARGV[NA + 2], ARGV[NA + 3], ARGV[NA + 4]
local f = redis.call('HMGET', jk, 's', 'tk')
if f[1] ~= 'running' or f[2] ~= token then return 'stale' end
redis.call('HSET', jk, 'd', done, 't', total, 'u', int(now_ms()))
return 'ok'
