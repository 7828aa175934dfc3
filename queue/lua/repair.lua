-- repair.lua: makes what a crash or a hand edit left agree again.  Every
-- fact is read here, so what the caller suspected is only a hint.
--   mode 'locks': drops each lock (disk -> job) whose job is missing, ended,
--                 or is for another disk.
--                 KEYS: common, per lock: the job key;  ARGV: common, 'locks',
--                 per lock: disk, job id
--   mode 'jobs':  leaves each job only in the index its state names, puts it
--                 in that index when missing (an ended job scored by its end
--                 time, u, also when it was there with another score), gives
--                 a live job its free lock and takes the lock from an ended
--                 one; a job without a record leaves every index.
--                 KEYS: common, per job: job key, then the in-flight lists it
--                 was seen in;  ARGV: common, 'jobs', per job: id, number of lists
--   mode 'old':   deletes the keys of an earlier version that nothing reads
--                 any more ({volq}:ended, the ended jobs by end time: the
--                 end-state indexes are scored by end time instead).
--                 KEYS: common, the old keys;  ARGV: common, 'old'
-- Returns {fixed, conflicts} (a conflict: a live job whose disk another live
-- job holds; left for the administrator).
local mode = ARGV[NA + 1]
local now = now_ms()
local fixed, conflicts = 0, 0

local function count(n)
  fixed = fixed + n
end

local function fix_lock(jk, disk, id)
  if redis.call('HGET', LOCKS, disk) ~= id then return end
  local f = redis.call('HMGET', jk, 's', 'dk')
  if not f[1] or not live(f[1]) or f[2] ~= disk then
    redis.call('HDEL', LOCKS, disk)
    count(1)
  end
end

-- Out of every index but the one of state s (nil: out of all).
local function drop_other_indexes(id, s, procs, j)
  if s ~= 'queued' then count(redis.call('LREM', Q, 0, id)) end
  if s ~= 'running' then count(redis.call('ZREM', RUN, id)) end
  if s ~= 'retrying' then count(redis.call('ZREM', DUE, id)) end
  for st, k in pairs(ENDIDX) do
    if st ~= s then count(redis.call('ZREM', k, id)) end
  end
  for _, p in ipairs(procs) do
    local mine = s == 'queued' or (s == 'running' and p == '{volq}:proc:' .. j.w)
    if not mine then count(redis.call('LREM', p, 0, id)) end
  end
end

local function in_some_list(id, procs)
  if redis.call('LPOS', Q, id) then return true end
  for _, p in ipairs(procs) do
    if redis.call('LPOS', p, id) then return true end
  end
  return false
end

local function add_own_index(id, j, procs)
  local s = j.s
  if s == 'queued' then
    if not in_some_list(id, procs) then redis.call('RPUSH', Q, id); count(1) end
  elseif s == 'running' then
    -- A lease from now: housekeeping requeues it if no worker renews it.
    if redis.call('ZADD', RUN, 'NX', now + LEASE_MS, id) == 1 then count(1) end
  elseif s == 'retrying' then
    if redis.call('ZADD', DUE, 'NX', tonumber(j.n) or now, id) == 1 then count(1) end
  elseif ENDIDX[s] then
    -- By end time.  Without u (a hand edit), an entry present is kept.
    local u = tonumber(j.u)
    if not u then
      count(redis.call('ZADD', ENDIDX[s], 'NX', now, id))
    elseif tonumber(redis.call('ZSCORE', ENDIDX[s], id)) ~= u then
      redis.call('ZADD', ENDIDX[s], j.u, id)
      count(1)
    end
  end
end

local function fix_job_lock(id, j)
  local h = redis.call('HGET', LOCKS, j.dk)
  if live(j.s) and h ~= id then
    if h then
      conflicts = conflicts + 1
    else
      redis.call('HSET', LOCKS, j.dk, id)
      count(1)
    end
  elseif not live(j.s) and h == id then
    redis.call('HDEL', LOCKS, j.dk)
    count(1)
  end
end

local function fix_job(jk, id, procs)
  local j = job_get(jk)
  if not j or not j.s then
    drop_other_indexes(id, nil, procs, {})
    return
  end
  drop_other_indexes(id, j.s, procs, j)
  add_own_index(id, j, procs)
  if j.dk then fix_job_lock(id, j) end
end

if mode == 'locks' then
  for i = 1, #KEYS - NK do
    fix_lock(KEYS[NK + i], ARGV[NA + 2 * i], ARGV[NA + 1 + 2 * i])
  end
elseif mode == 'old' then
  for i = NK + 1, #KEYS do count(redis.call('DEL', KEYS[i])) end
else
  local ki, ai = NK + 1, NA + 2
  while ai <= #ARGV do
    local id, np = ARGV[ai], tonumber(ARGV[ai + 1])
    local procs = {}
    for p = 1, np do procs[p] = KEYS[ki + p] end
    fix_job(KEYS[ki], id, procs)
    ki, ai = ki + 1 + np, ai + 2
  end
end
return {fixed, conflicts}
