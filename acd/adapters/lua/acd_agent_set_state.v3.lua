-- callcenter acd_agent_set_state v3: make a logged-in agent ready, paused, in wrap-up or missed.
--
-- KEYS[1]  events stream      KEYS[2]  agent:<agent_id>
-- ARGV[4]  agent_id
-- ARGV[5]  'ready' | 'paused' | 'wrap_up' | 'missed'
-- ARGV[6]  pause reason (for 'paused', not empty)
-- ARGV[7]  wrap-up duration in ms (for 'wrap_up'; ends at server time + duration)
-- ARGV[8]  expected agent version, '' for any
--
-- 'ready' clears the pause, the missed mark and a running wrap-up (the agent's idle time starts
-- again if it was unavailable). Events: AgentMadeReady, AgentPaused, AgentWrapUpStarted,
-- AgentMarkedMissed. A pending offer is not touched. 'missed' marks the agent missed until made
-- ready; a timed miss that has ended counts as not missed (v2). 'ready' also ends the items'
-- wrap-ups still running (v3: wrap-up is per item; the agent said it is done wrapping up);
-- 'wrap_up' is an agent-wide wrap-up (nothing is offered before it ends).
-- Returns {'ok', version}, {'already', version}, {'agent_unknown'}, {'agent_logged_out'},
-- {'agent_version_mismatch', current version}.
local id = ARGV[4]
local want = ARGV[5]
local a = hgetall(KEYS[2])
if a == nil then return {'agent_unknown'} end
if a.logged_in ~= '1' then return {'agent_logged_out', num(a.ver)} end
if ARGV[8] ~= '' and num(ARGV[8]) ~= num(a.ver) then
  return {'agent_version_mismatch', num(a.ver)}
end
local kind
if want == 'ready' then
  local wrapping = num(a.wrap_until) > NOW or next(wraps_of(a)) ~= nil
  local missed = missed_at(a, NOW)
  if a.pause == '' and not missed and not wrapping then return {'already', num(a.ver)} end
  if a.pause ~= '' or missed or wrapping then a.idle_since = NOW end
  a.pause = ''
  a.missed = '0'
  a.missed_until = 0
  a.wrap_until = 0
  a.wraps = ''
  kind = 'AgentMadeReady'
elseif want == 'paused' then
  if a.pause == ARGV[6] then return {'already', num(a.ver)} end
  a.pause = ARGV[6]
  kind = 'AgentPaused'
elseif want == 'wrap_up' then
  a.wrap_until = math.max(num(a.wrap_until), NOW + num(ARGV[7]))
  kind = 'AgentWrapUpStarted'
elseif want == 'missed' then
  if a.missed == '1' and num(a.missed_until) == 0 then return {'already', num(a.ver)} end
  a.missed = '1'
  a.missed_until = 0
  kind = 'AgentMarkedMissed'
else
  return redis.error_reply('acd_agent_set_state: unknown state ' .. want)
end
local ver = save_agent(id, a)
emit(kind, {'agent', id, 'reason', a.pause, 'wrap_until', a.wrap_until, 'ver', ver})
return {'ok', ver}
