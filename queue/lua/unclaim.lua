-- unclaim.lua: hands jobs a worker claimed but did not start back to the
-- front of the queue (RPUSH: the end workers take from), so that the first
-- one claimed is taken first again.  Only ids still in the worker's list
-- move; their records are not touched (they are still queued).
-- KEYS: common, the worker's in-flight list
-- ARGV: common, the job ids in the order they were claimed
-- Returns the number handed back.
local proc = KEYS[NK + 1]
local n = 0
for i = #ARGV, NA + 1, -1 do
  if redis.call('LREM', proc, 0, ARGV[i]) > 0 then
    redis.call('RPUSH', Q, ARGV[i])
    n = n + 1
  end
end
return n
