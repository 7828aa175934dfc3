-- requeue.lua: puts back the jobs of dead workers or of expired leases, then
-- drops the registrations of dead workers whose in-flight list is empty.
-- A running job goes back to the FRONT of the queue (RPUSH: the end workers
-- take from) with crashes+1 and its attempt not counted, or fails at
-- max_crashes ("worker died N times during this job": lock released, event;
-- a create-volume first gets its clean-up attempts, see crash()).
-- A job moved but not started yet (still queued) just goes back to the front.
-- Every job is checked again here, so two schedulers may run this at once:
--   mode 'worker': the job must still be in the worker's list, and the
--                  worker's last beat must be <= cutoff (dead);
--   mode 'lease':  the job's lease must still be expired and its worker the same;
--   mode 'gone':   as 'worker', for a worker that says it is going (a clean
--                  exit): a job it started but did not run goes back
--                  without a crash counted (its attempt not counted either).
-- KEYS: common, per job: job key, its worker's in-flight list;
--       then per worker to drop: its in-flight list
-- ARGV: common, mode, cutoff_ms, njobs, per job: id, worker;
--       then per worker to drop: worker
-- Returns {requeued, failed, registrations dropped}.
local mode, cutoff, n = ARGV[NA + 1], tonumber(ARGV[NA + 2]), tonumber(ARGV[NA + 3])
local now = now_ms()

local function dead(worker)
  local b = redis.call('ZSCORE', WORKERS, worker)
  return not b or tonumber(b) <= cutoff
end

-- Whether the job may be taken from its worker now (see the modes above).
local function eligible(j, id, proc, worker)
  if mode == 'lease' then
    local dl = redis.call('ZSCORE', RUN, id)
    if not dl or tonumber(dl) > now then return false end
    if not j or j.s ~= 'running' then
      redis.call('ZREM', RUN, id)
      return false
    end
    return j.w == worker
  end
  return redis.call('LPOS', proc, id) ~= false and dead(worker)
end

-- A running job back to the front of the queue with a attempts recorded.
local function back(jk, id, a)
  redis.call('ZREM', RUN, id)
  redis.call('HSET', jk, 's', 'queued', 'a', a, 'u', int(now))
  redis.call('RPUSH', Q, id)
  return 'requeued'
end

-- The attempts of j without the one that did not end.
local function undone(j)
  return math.max((tonumber(j.a) or 1) - 1, 0)
end

-- At max_crashes a job fails, but a create-volume first goes back marked cu
-- (clean up: the number of clean-up tries so far): a dead worker may have
-- left its volume half-made, and that attempt, which starts nothing, removes
-- it (or keeps a volume it finds whole) before the job ends and its lock
-- goes.  It has CLEAN_TRIES tries, counted in cu (not from cr, so that a
-- max_crashes changed meanwhile cannot skip them), with attempts of its own.
local CLEAN_TRIES = 3
local function crash(jk, id, j)
  local cr = (tonumber(j.cr) or 0) + 1
  redis.call('HSET', jk, 'cr', cr)
  local cu = tonumber(j.cu) or 0
  if cr >= MAX_CRASHES or cu > 0 then
    if j.k ~= 'create-volume' or cu >= CLEAN_TRIES then
      local reason = 'worker died ' .. cr .. ' times during this job'
      if cu > 0 then reason = reason .. '; its clean-up did not end: the volume may be half-made' end
      add_error(jk, j, reason)
      finish_job(jk, id, j, 'failed', reason, now)
      return 'failed'
    end
    redis.call('HSET', jk, 'cu', cu + 1)
    if cu == 0 then return back(jk, id, 0) end -- the clean-up's attempts start from 0
  end
  return back(jk, id, undone(j))
end

local function requeue_one(jk, proc, id, worker)
  local j = job_get(jk)
  if not eligible(j, id, proc, worker) then return nil end
  redis.call('LREM', proc, 0, id)
  if not j then return nil end
  if j.s == 'running' and j.w == worker then
    if mode == 'gone' then return back(jk, id, undone(j)) end
    return crash(jk, id, j)
  end
  if j.s == 'queued' then
    redis.call('RPUSH', Q, id)
    return 'requeued'
  end
  return nil
end

local requeued, failed = 0, 0
for i = 1, n do
  local r = requeue_one(KEYS[NK + 2 * i - 1], KEYS[NK + 2 * i], ARGV[NA + 2 + 2 * i],
                        ARGV[NA + 3 + 2 * i])
  if r == 'requeued' then requeued = requeued + 1 end
  if r == 'failed' then failed = failed + 1 end
end
local dropped = 0
for w = 1, #ARGV - (NA + 3 + 2 * n) do
  local worker, proc = ARGV[NA + 3 + 2 * n + w], KEYS[NK + 2 * n + w]
  if dead(worker) and redis.call('LLEN', proc) == 0 then
    dropped = dropped + redis.call('ZREM', WORKERS, worker)
    redis.call('HDEL', WJOB, worker)
  end
end
return {requeued, failed, dropped}
