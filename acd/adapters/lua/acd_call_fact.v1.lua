-- callcenter acd_call_fact v1: append one call fact to the events stream (and keep a resume memo).
--
-- KEYS[1]  events stream
-- ARGV[4]  fact type (CallQueued, CallOffered, CallAnswered, CallAbandoned, CallCompleted,
--          CallbackRequested, CallResumed)
-- ARGV[5]  resume memo key suffix ('' for none): 'resume:<queue>:<caller hash>'
-- ARGV[6]  resume memo value (the enqueue time in ms to resume with)
-- ARGV[7]  resume memo time-to-live in ms
-- ARGV[8..] field, value, field, value, ...
--
-- The fact is written like the other scripts' facts (type, at = server ms, then the fields). With
-- a memo key the memo is set with its time-to-live in the same step, so an abandon and its memo
-- are never seen apart. Returns {'ok', stream entry id}.
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
if ARGV[5] ~= '' then
  redis.call('SET', P .. ARGV[5], ARGV[6], 'PX', math.max(1, num(ARGV[7])))
end
local id = emit(ARGV[4], fields)
return {'ok', id}
