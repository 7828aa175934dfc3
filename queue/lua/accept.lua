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

local function create(jk, f, state)
  local h = {'k', f.kind, 's', state, 'dm', f.dm, 'dk', f.dk, 'ma', MA,
             'c', int(now), 'u', int(now)}
  local opt = {v = f.vol, al = f.alias, p = f.params}
  for name, v in pairs(opt) do
    if v ~= '' then h[#h + 1] = name; h[#h + 1] = v end
  end
  redis.call('HSET', jk, unpack(h))
end

local function accept_one(f, jk, ik, hk, ijk)
  if not KINDS[f.kind] then return 'invalid', '' end
  local prev = idem_hit(ik, f.idem_job, ijk)
  if prev then return 'idempotent', prev end
  -- The lock first: a disk busy with our own job is "locked", not refused.
  local h = holder_of(f.dk, f.holder, hk)
  if h then return 'locked', h end
  if f.refusal ~= '' then
    create(jk, f, 'failed')
    local j = {k = f.kind, dm = f.dm, dk = f.dk, v = f.vol, al = f.alias, c = int(now)}
    finish_job(jk, f.id, j, 'failed', f.refusal, now)
    if ik then redis.call('SET', ik, f.id, 'EX', TTL) end
    return 'refused', f.id
  end
  create(jk, f, 'queued')
  redis.call('HSET', LOCKS, f.dk, f.id)
  redis.call('LPUSH', Q, f.id)
  if ik then redis.call('SET', ik, f.id, 'EX', TTL) end
  return 'queued', f.id
end

local out = {}
for _ = 1, N do
  local f = {id = ARGV[ai], kind = ARGV[ai + 1], dm = ARGV[ai + 2], dk = ARGV[ai + 3],
             vol = ARGV[ai + 4], alias = ARGV[ai + 5], params = ARGV[ai + 6],
             refusal = ARGV[ai + 7], idem = ARGV[ai + 8], holder = ARGV[ai + 9],
             idem_job = ARGV[ai + 10]}
  ai = ai + 11
  local jk = next_key('x')
  local ik, hk, ijk = next_key(f.idem), next_key(f.holder), next_key(f.idem_job)
  local st, id = accept_one(f, jk, ik, hk, ijk)
  out[#out + 1] = st
  out[#out + 1] = id
end
return out
