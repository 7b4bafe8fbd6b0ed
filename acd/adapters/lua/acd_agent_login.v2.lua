-- callcenter acd_agent_login v2: log an agent in (or update a logged-in agent's profile).
--
-- KEYS[1]  events stream      KEYS[2]  agent:<agent_id>
-- ARGV[4]  agent_id
-- ARGV[5]  capacity per channel, JSON {"call": 1, "chat": 3, "email": 5}
-- ARGV[6]  '1' if a call blocks the other channels, else '0'
-- ARGV[7]  skills, JSON {"<skill>": <level 1-5>, ...}
-- ARGV[8]  pause reason to log in paused with, '' to log in ready
--
-- Returns {'ok', agent version} after AgentLoggedIn; when the agent is already logged in only
-- the profile is replaced: {'ok', version} after AgentProfileChanged, or {'already', version}
-- when it was the same. Loads of items still assigned from before a logout are kept; item
-- wrap-ups are not (v2: there are item wrap-ups, `wraps`, cleared like the agent's wrap-up).
local id = ARGV[4]
local a = hgetall(KEYS[2])
if a ~= nil and a.logged_in == '1' then
  if a.caps == ARGV[5] and a.blocks == ARGV[6] and a.skills == ARGV[7] then
    return {'already', num(a.ver)}
  end
  a.caps = ARGV[5]
  a.blocks = ARGV[6]
  a.skills = ARGV[7]
  local ver = save_agent(id, a)
  emit('AgentProfileChanged', {'agent', id, 'caps', a.caps, 'blocks', a.blocks, 'ver', ver})
  return {'ok', ver}
end
if a == nil then
  a = {ver = 0, misses = 0, missed_total = 0, offer = ''}
  for _, ch in ipairs(CHANNELS) do a['load:' .. ch] = 0 end
end
a.logged_in = '1'
a.caps = ARGV[5]
a.blocks = ARGV[6]
a.skills = ARGV[7]
a.pause = ARGV[8]
a.missed = '0'
a.misses = 0
a.wrap_until = 0
a.wraps = ''
a.idle_since = NOW
local ver = save_agent(id, a)
emit('AgentLoggedIn', {'agent', id, 'caps', a.caps, 'blocks', a.blocks, 'pause', a.pause,
  'ver', ver})
return {'ok', ver}
