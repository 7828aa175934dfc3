-- unclaim.lua: hands jobs a worker claimed but did not start back to the
-- front of the queue (RPUSH: the end workers take from), so that the first
-- one claimed is taken first again.  Only ids still in the worker's list
-- move, and only jobs still queued go back to the queue: one cancelled
-- meanwhile just leaves the list (in the queue it would count as waiting
-- until a worker skipped it).  Records are not touched.
-- KEYS: common, the worker's in-flight list, then one job key per id
-- ARGV: common, the job ids in the order they were claimed (in KEYS order)
-- Returns the number handed back.
local proc = KEYS[NK + 1]
local n = 0
for i = #ARGV - NA, 1, -1 do
  local id = ARGV[NA + i]
  if redis.call('LREM', proc, 0, id) > 0 and redis.call('HGET', KEYS[NK + 1 + i], 's') == 'queued' then
    redis.call('RPUSH', Q, id)
    n = n + 1
  end
end
return n
