-- retry.lua: failed -> queued by hand (LPUSH: the back of the queue), with
-- attempts, crashes, reason and clean-up mark reset (errors keep their history), taking the
-- disk lock again unless a live job holds it.
-- KEYS: common, per job: job key [, holder's job key when holder is set]
-- ARGV: common, n, per job: id, holder (the lock holder the caller read, or '')
-- Returns per job: status ('ok'|'missing'|'state'|'locked'), detail (the
-- state, or the holder's id).
local n = tonumber(ARGV[NA + 1])
local now = now_ms()
local ki = NK + 1

local function retry_one(jk, id, expected, hk)
  local j = job_get(jk)
  if not j then return 'missing', '' end
  if j.s ~= 'failed' then return 'state', j.s end
  local h = holder_of(j.dk, expected, hk)
  if h and h ~= id then return 'locked', h end
  redis.call('HSET', jk, 's', 'queued', 'a', 0, 'cr', 0, 'u', int(now))
  redis.call('HDEL', jk, 'r', 'n', 'cu')
  redis.call('ZREM', ENDIDX.failed, id)
  redis.call('HSET', LOCKS, j.dk, id)
  redis.call('LPUSH', Q, id)
  return 'ok', ''
end

local out = {}
for i = 1, n do
  local id, expected = ARGV[NA + 2 * i], ARGV[NA + 1 + 2 * i]
  local jk = KEYS[ki]
  local hk = nil
  if expected ~= '' then hk = KEYS[ki + 1] end
  ki = ki + (hk and 2 or 1)
  local st, detail = retry_one(jk, id, expected, hk)
  out[#out + 1] = st
  out[#out + 1] = detail
end
return out
