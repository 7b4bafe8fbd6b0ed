-- callcenter acd_resume_take v1: take (read and delete) a caller's resume memo, if still there.
--
-- KEYS[1]  events stream (not written)
-- ARGV[4]  resume memo key suffix: 'resume:<queue>:<caller hash>'
--
-- Atomic, so two calls of the same caller arriving together cannot both resume the old place.
-- Returns {'ok', enqueue time in ms} or {'none', ''}.
local key = P .. ARGV[4]
local value = redis.call('GET', key)
if not value then return {'none', ''} end
redis.call('DEL', key)
return {'ok', value}
