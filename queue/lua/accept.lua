-- accept.lua: accepts n jobs in one step.  Per job, in order: an
-- idempotency key seen before answers with the job it made; a disk held by a
-- live job answers with the holder (nothing recorded); a refusal is recorded
-- as a failed job with its event (no lock); else the job is created, the disk
-- locked and the job queued (LPUSH: the back of the queue).
-- KEYS: common, then per job: job key [, idem key] [, holder's job key]
--       [, idem job's key] (the optional ones present when the field is set)
-- ARGV: common, max_attempts, idem_ttl_s, n, kind, domain (the call's), then
--       per job: id disk alias m, and m name/value pairs of the fields that
--       are set: kind domain (when not the call's) volume params refusal
--       idem holder idem_job (holder / idem_job: what the caller read just
--       before).  A bulk upgrade's job is 4 arguments: every argument costs
--       the client, Redis's parser and Lua alike.
-- Returns {letters, job ids...}: one letter per job, q(ueued) r(efused)
-- l(ocked) i(dempotent) x (invalid), then, in order, the job each l or i
-- names (the holder, the key's job); a q or r job is the id it was given.
-- 20,000 jobs answer ~20 KB instead of 40,000 strings.
local MA, TTL, N = ARGV[NA + 1], ARGV[NA + 2], tonumber(ARGV[NA + 3])
local KIND, DOMAIN = ARGV[NA + 4], ARGV[NA + 5]
local KINDS = {amend = true, ['create-volume'] = true}
local NONE = {}
local now = now_ms()
local NOW = int(now)
local ki, ai = NK + 1, NA + 6

local function next_key(field)
  if not field then return nil end
  local k = KEYS[ki]
  ki = ki + 1
  return k
end

-- The optional fields of the job whose pairs start at ARGV[a] (NONE when
-- there are none: no table for a bulk upgrade's job).
local function fields(a, m)
  if m == 0 then return NONE end
  local f = {}
  for i = a, a + 2 * m - 1, 2 do f[ARGV[i]] = ARGV[i + 1] end
  return f
end

-- The job a known idempotency key made, if it still exists.
local function idem_hit(ik, idem_job, ijk)
  if not ik then return nil end
  local prev = redis.call('GET', ik)
  if not prev then return nil end
  -- Set after the caller looked: by a job made a moment ago.
  if prev ~= (idem_job or '') then return prev end
  if ijk and redis.call('EXISTS', ijk) == 1 then return prev end
  return nil
end

-- The job hash.  Written without building a table in the common case (an
-- amend with an alias): a bulk accept runs this for every disk of a domain.
local function create(jk, kind, dm, dk, alias, f, state)
  if not f.volume and not f.params and alias ~= '' then
    redis.call('HSET', jk, 'k', kind, 's', state, 'dm', dm, 'dk', dk, 'ma', MA, 'c', NOW,
      'u', NOW, 'al', alias)
    return
  end
  local h = {'k', kind, 's', state, 'dm', dm, 'dk', dk, 'ma', MA, 'c', NOW, 'u', NOW}
  if f.volume then h[#h + 1] = 'v'; h[#h + 1] = f.volume end
  if alias ~= '' then h[#h + 1] = 'al'; h[#h + 1] = alias end
  if f.params then h[#h + 1] = 'p'; h[#h + 1] = f.params end
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

local function accept_one(id, dk, alias, f, jk, ik, hk, ijk)
  local kind, dm = f.kind or KIND, f.domain or DOMAIN
  if not KINDS[kind] then return 'x', '' end
  local prev = idem_hit(ik, f.idem_job, ijk)
  if prev then return 'i', prev end
  -- The lock first: a disk busy with our own job is "locked", not refused.
  -- A disk locked earlier in this very call is held by that job.
  local h = taken[dk] or holder_of(dk, f.holder or '', hk)
  if h then return 'l', h end
  if f.refusal then
    create(jk, kind, dm, dk, alias, f, 'failed')
    local j = {k = kind, dm = dm, dk = dk, v = f.volume or '', al = alias, c = NOW}
    finish_job(jk, id, j, 'failed', f.refusal, now)
    if ik then redis.call('SET', ik, id, 'EX', TTL) end
    return 'r', id
  end
  create(jk, kind, dm, dk, alias, f, 'queued')
  taken[dk] = id
  locks[#locks + 1] = dk
  locks[#locks + 1] = id
  queued[#queued + 1] = id
  if ik then redis.call('SET', ik, id, 'EX', TTL) end
  return 'q', id
end

-- The answer: the status letters (out[1], joined at the end), then the job
-- of each request answered with a job it did not make (l, i).
local codes, out = {}, {''}
for _ = 1, N do
  local id, dk, alias, m = ARGV[ai], ARGV[ai + 1], ARGV[ai + 2], tonumber(ARGV[ai + 3])
  local f = fields(ai + 4, m)
  ai = ai + 4 + 2 * m
  local jk = next_key(id)
  local ik, hk, ijk = next_key(f.idem), next_key(f.holder), next_key(f.idem_job)
  local st, jid = accept_one(id, dk, alias, f, jk, ik, hk, ijk)
  codes[#codes + 1] = st
  if st == 'l' or st == 'i' then out[#out + 1] = jid end
end
flush()
out[1] = table.concat(codes)
return out
