-- trim.lua: deletes ended jobs past retention: ended at or before cutoff_ms,
-- or among the oldest beyond max_count.  A job that is live again (retried by
-- hand) is never deleted.
-- KEYS: common, job keys
-- ARGV: common, cutoff_ms, max_count, ids (same order as the keys)
-- Returns the number deleted.
local cutoff, max = tonumber(ARGV[NA + 1]), tonumber(ARGV[NA + 2])
local n = 0

local function expired(id)
  local at = redis.call('ZSCORE', ENDED, id)
  if not at then return false end
  if tonumber(at) <= cutoff then return true end
  local over = redis.call('ZCARD', ENDED) - max
  return over > 0 and redis.call('ZRANK', ENDED, id) < over
end

for i = 1, #KEYS - NK do
  local jk, id = KEYS[NK + i], ARGV[NA + 2 + i]
  if expired(id) then
    local s = redis.call('HGET', jk, 's')
    if not s or not live(s) then
      redis.call('DEL', jk)
      redis.call('ZREM', ENDED, id)
      for _, k in pairs(ENDIDX) do redis.call('ZREM', k, id) end
      n = n + 1
    end
  end
end
return n
