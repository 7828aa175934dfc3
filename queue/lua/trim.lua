-- trim.lua: deletes ended jobs past retention: ended at or before cutoff_ms,
-- or among the oldest beyond max_count.  A job that is live again (retried by
-- hand) is never deleted.
-- The ended jobs are the union of the three end-state indexes, each scored by
-- end time.  Their order, oldest first: by end time, then by index
-- (succeeded, failed, cancelled), then as ZRANK orders one index; a job's rank
-- in the union is its ZRANK in its own index plus the jobs of the other
-- indexes before it (ZCOUNT: up to its end time for the earlier indexes,
-- strictly before it for the later ones).
-- KEYS: common, job keys
-- ARGV: common, cutoff_ms, max_count, ids (same order as the keys)
-- Returns the number deleted.
local cutoff, max = tonumber(ARGV[NA + 1]), tonumber(ARGV[NA + 2])
local ORDER = {ENDIDX.succeeded, ENDIDX.failed, ENDIDX.cancelled}
local n = 0

-- Ended jobs kept: the size of the union, less what this call deleted.
local kept = 0
for _, k in ipairs(ORDER) do kept = kept + redis.call('ZCARD', k) end

local function rank(i, at, id)
  local r = redis.call('ZRANK', ORDER[i], id)
  for o, k in ipairs(ORDER) do
    if o < i then
      r = r + redis.call('ZCOUNT', k, '-inf', at)
    elseif o > i then
      r = r + redis.call('ZCOUNT', k, '-inf', '(' .. at)
    end
  end
  return r
end

local function expired(id)
  for i, k in ipairs(ORDER) do
    local at = redis.call('ZSCORE', k, id)
    if at then
      if tonumber(at) <= cutoff then return true end
      local over = kept - max
      return over > 0 and rank(i, at, id) < over
    end
  end
  return false
end

for i = 1, #KEYS - NK do
  local jk, id = KEYS[NK + i], ARGV[NA + 2 + i]
  if expired(id) then
    local s = redis.call('HGET', jk, 's')
    if not s or not live(s) then
      redis.call('DEL', jk)
      for _, k in ipairs(ORDER) do kept = kept - redis.call('ZREM', k, id) end
      n = n + 1
    end
  end
end
return n
