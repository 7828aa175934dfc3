-- beat.lua: registers or refreshes a worker (last beat in WORKERS by the
-- server's clock) with its current job ('' when idle).
-- KEYS: common
-- ARGV: common, worker, job id
beat(ARGV[NA + 1], ARGV[NA + 2], now_ms())
return 'ok'
