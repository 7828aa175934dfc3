-- promote.lua: retries whose time has come go back to the queue (LPUSH: the
-- back).  Each id is checked again (still retrying, still due).
-- KEYS: common, job keys
-- ARGV: common, ids (same order)
-- Returns the number promoted.
local now = now_ms()
local n = 0
for i = 1, #KEYS - NK do
  local jk, id = KEYS[NK + i], ARGV[NA + i]
  local at = redis.call('ZSCORE', DUE, id)
  if at and tonumber(at) <= now then
    if redis.call('HGET', jk, 's') == 'retrying' then
      redis.call('HSET', jk, 's', 'queued', 'u', int(now))
      redis.call('HDEL', jk, 'n')
      redis.call('LPUSH', Q, id)
      n = n + 1
    end
    redis.call('ZREM', DUE, id)
  end
end
return n
