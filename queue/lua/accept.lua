-- accept.lua: accepts n jobs in one step.  Per job, in order: an
-- idempotency key seen before answers with the job it made; a disk held by a
-- live job answers with the holder (nothing recorded); a refusal is recorded
-- as a failed job with its event (no lock); else the job is created, the disk
-- locked and the job queued (LPUSH: the back of the queue).
-- KEYS: common, then per job: job key [, idem key] [, holder's job key]
--       [, idem job's key] (the optional ones present when the field is set)
-- ARGV: common, max_attempts, idem_ttl_s, n, then 11 fields per job:
--       id kind domain disk volume alias params refusal idem holder idem_job
--       (holder / idem_job: what the caller read just before, '' for none)
-- Returns per job: status ('queued'|'refused'|'locked'|'idempotent'), job id.
local MA, TTL, N = ARGV[NA + 1], ARGV[NA + 2], tonumber(ARGV[NA + 3])
local KINDS = {amend = true, ['create-volume'] = true}
local now = now_ms()
local NOW = int(now)
local ki, ai = NK + 1, NA + 4

local function next_key(flag)
  if flag == '' then return nil end
  local k = KEYS[ki]
  ki = ki + 1
  return k
end

-- The job a known idempotency key made, if it still exists.
local function idem_hit(ik, idem_job, ijk)
  if not ik then return nil end
  local prev = redis.call('GET', ik)
  if not prev then return nil end
  -- Set after the caller looked: by a job made a moment ago.
  if prev ~= idem_job then return prev end
  if ijk and redis.call('EXISTS', ijk) == 1 then return prev end
  return nil
end

-- The job hash.  a: the job's first field in ARGV.  Written without building
-- a table in the common case (an amend with an alias): a bulk accept runs
-- this for every disk of a domain.
local function create(jk, a, state)
  local kind, dm, dk, vol, alias, params = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4],
    ARGV[a + 5], ARGV[a + 6]
  if vol == '' and params == '' and alias ~= '' then
    redis.call('HSET', jk, 'k', kind, 's', state, 'dm', dm, 'dk', dk, 'ma', MA, 'c', NOW,
      'u', NOW, 'al', alias)
    return
  end
  local h = {'k', kind, 's', state, 'dm', dm, 'dk', dk, 'ma', MA, 'c', NOW, 'u', NOW}
  if vol ~= '' then h[#h + 1] = 'v'; h[#h + 1] = vol end
  if alias ~= '' then h[#h + 1] = 'al'; h[#h + 1] = alias end
  if params ~= '' then h[#h + 1] = 'p'; h[#h + 1] = params end
  redis.call('HSET', jk, unpack(h))
end

-- Locks taken and jobs queued by this call, written together at the end (in
-- chunks, for Lua's stack): the same state as one HSET and one LPUSH per job.
local taken, locks, queued = {}, {}, {}
local CHUNK = 500

local function flush()
  for i = 1, #locks, 2 * CHUNK do
    redis.call('HSET', LOCKS, unpack(locks, i, math.min(i + 2 * CHUNK - 1, #locks)))
  end
  for i = 1, #queued, CHUNK do
    redis.call('LPUSH', Q, unpack(queued, i, math.min(i + CHUNK - 1, #queued)))
  end
end

local function accept_one(a, jk, ik, hk, ijk)
  local id, kind, dk, refusal = ARGV[a], ARGV[a + 1], ARGV[a + 3], ARGV[a + 7]
  if not KINDS[kind] then return 'invalid', '' end
  local prev = idem_hit(ik, ARGV[a + 10], ijk)
  if prev then return 'idempotent', prev end
  -- The lock first: a disk busy with our own job is "locked", not refused.
  -- A disk locked earlier in this very call is held by that job.
  local h = taken[dk] or holder_of(dk, ARGV[a + 9], hk)
  if h then return 'locked', h end
  if refusal ~= '' then
    create(jk, a, 'failed')
    local j = {k = kind, dm = ARGV[a + 2], dk = dk, v = ARGV[a + 4], al = ARGV[a + 5], c = NOW}
    finish_job(jk, id, j, 'failed', refusal, now)
    if ik then redis.call('SET', ik, id, 'EX', TTL) end
    return 'refused', id
  end
  create(jk, a, 'queued')
  taken[dk] = id
  locks[#locks + 1] = dk
  locks[#locks + 1] = id
  queued[#queued + 1] = id
  if ik then redis.call('SET', ik, id, 'EX', TTL) end
  return 'queued', id
end

local out = {}
for _ = 1, N do
  local jk = next_key('x')
  local ik, hk, ijk = next_key(ARGV[ai + 8]), next_key(ARGV[ai + 9]), next_key(ARGV[ai + 10])
  local st, id = accept_one(ai, jk, ik, hk, ijk)
  ai = ai + 11
  out[#out + 1] = st
  out[#out + 1] = id
end
flush()
return out
