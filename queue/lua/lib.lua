-- lib.lua: sent in front of every script (queue/redis.c), never run alone.
-- Redis 7 forbids globals in scripts, so everything here is a chunk local.
--
-- Every script gets the same 11 common keys first (all in hash tag {volq},
-- see docs/queue.md) and the same 3 common arguments; its own keys and
-- arguments follow at KEYS[NK + 1] and ARGV[NA + 1].
local Q, RUN, DUE, LOCKS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- The ended jobs of each end state, scored by end time (the job's u when it
-- ended); together they are every ended job.
local ENDIDX = {succeeded = KEYS[5], failed = KEYS[6], cancelled = KEYS[7]}
local EVENTS, TOKEN, WORKERS, WJOB = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local NK = 11
local EVENTS_MAX, LEASE_MS, MAX_CRASHES = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local NA = 3
-- errors keeps the last lines only: a job retried by hand many times stays small.
local ERRORS_MAX = 20
local CANCEL_REASON = 'cancelled by the administrator'

-- Milliseconds since the epoch from the server's clock, so that every host
-- agrees on leases and due times.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as plain digits (tostring would switch to exponents past 1e14).
local function int(n)
  return string.format('%d', n)
end

-- RFC 3339 UTC with milliseconds (H. Hinnant's civil_from_days).  The last
-- one is kept: a script's events share its time (a run of no-op jobs posts
-- two per job).
local rfc_ms, rfc_str
local function rfc3339(ms)
  if ms == rfc_ms then return rfc_str end
  local s = math.floor(ms / 1000)
  local days = math.floor(s / 86400)
  local rem = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  rfc_ms = ms
  rfc_str = string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, ms - s * 1000)
  return rfc_str
end

local function live(s)
  return s == 'queued' or s == 'running' or s == 'retrying'
end

-- The job hash as a table, nil when there is none.
local function job_get(key)
  local f = redis.call('HGETALL', key)
  if #f == 0 then return nil end
  local j = {}
  for i = 1, #f, 2 do j[f[i]] = f[i + 1] end
  return j
end

-- Audit events (SPEC §2): oVirt's types and texts.
local EV = {
  amend = {
    start = {'USER_AMEND_IMAGE_START', 'normal'},
    ok = {'USER_AMEND_IMAGE_FINISH_SUCCESS', 'normal'},
    fail = {'USER_AMEND_IMAGE_FINISH_FAILURE', 'error'},
  },
  ['create-volume'] = {
    ok = {'VOLQ_CREATE_VOLUME_SUCCESS', 'normal'},
    fail = {'VOLQ_CREATE_VOLUME_FAILURE', 'error'},
  },
}

local function message(j, what)
  local alias = (j.al and j.al ~= '') and j.al or j.dk
  if j.k == 'amend' then
    if what == 'start' then return 'Started to amend ' .. alias end
    if what == 'ok' then return alias .. ' has been amended successfully.' end
    return 'Failed to amend ' .. alias .. '.'
  end
  local vol = j.v or ''
  if what == 'ok' then
    return 'Volume ' .. vol .. ' of disk ' .. alias .. ' has been created successfully.'
  end
  return 'Failed to create volume ' .. vol .. ' of disk ' .. alias .. '.'
end

-- Appends one event (one field "e": the JSON object, keys in a fixed order).
local function post(id, j, what, reason, now)
  local ev = EV[j.k] and EV[j.k][what]
  if not ev then return end
  local js = '{"time":"' .. rfc3339(now) .. '","severity":"' .. ev[2] .. '","type":"' .. ev[1]
    .. '","message":' .. cjson.encode(message(j, what)) .. ',"kind":' .. cjson.encode(j.k)
    .. ',"job_id":' .. cjson.encode(id) .. ',"domain_id":' .. cjson.encode(j.dm)
    .. ',"disk_id":' .. cjson.encode(j.dk) .. ',"reason":'
    .. (reason and cjson.encode(reason) or 'null') .. '}'
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAX, '*', 'e', js)
end

-- One line per failed attempt, in the job's "e" (a JSON array).
local function add_error(key, j, line)
  local e = j.e and cjson.decode(j.e) or {}
  e[#e + 1] = line
  while #e > ERRORS_MAX do table.remove(e, 1) end
  j.e = cjson.encode(e)
  redis.call('HSET', key, 'e', j.e)
end

-- The lock belongs to the job: only its own job releases it.
local function release_lock(disk, id)
  if redis.call('HGET', LOCKS, disk) == id then redis.call('HDEL', LOCKS, disk) end
end

-- Ends a live job: state, every index, the lock and the event in one step.
local function finish_job(key, id, j, state, reason, now)
  redis.call('HSET', key, 's', state, 'u', int(now))
  if reason then redis.call('HSET', key, 'r', reason) end
  -- A failed job keeps its plan ("pl"): a retry by hand still owes its bumps.
  if state == 'failed' then redis.call('HDEL', key, 'n') else redis.call('HDEL', key, 'n', 'pl') end
  redis.call('ZREM', RUN, id)
  redis.call('ZREM', DUE, id)
  release_lock(j.dk, id)
  redis.call('ZADD', ENDIDX[state], now, id)
  post(id, j, state == 'succeeded' and 'ok' or 'fail', reason, now)
end

-- The live job that holds the disk, or nil.  A lock whose job is missing or
-- ended is free: a lock never outlives its job.  expected is the holder the
-- caller read just before and hk its job key; a holder the caller did not
-- see was taken a moment ago by a new job: held.
local function holder_of(disk, expected, hk)
  local h = redis.call('HGET', LOCKS, disk)
  if not h then return nil end
  if h ~= expected or not hk then return h end
  local s = redis.call('HGET', hk, 's')
  if s and live(s) then return h end
  return nil
end

-- A worker's registration: last beat in WORKERS, current job in WJOB.
local function beat(worker, job_id, now)
  redis.call('ZADD', WORKERS, now, worker)
  redis.call('HSET', WJOB, worker, job_id)
end
