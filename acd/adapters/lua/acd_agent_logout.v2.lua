-- callcenter acd_agent_logout v2: log an agent out, releasing a pending offer at once.
--
-- KEYS[1]  events stream      KEYS[2]  agent:<agent_id>
-- ARGV[4]  agent_id
--
-- A pending offer is rescinded (OfferRescinded) and its item requeued at its old place
-- (ItemRequeued), so a logged-out agent is never left reserved. Items already assigned stay
-- with the agent (their loads are kept) until completed. The hash is kept so that versions keep
-- increasing across logins. v2: the items' wrap-ups end with the logout, like the agent's.
-- Returns {'ok', agent version} after AgentLoggedOut, {'already', version} when logged out,
-- {'agent_unknown'}.
local id = ARGV[4]
local a = hgetall(KEYS[2])
if a == nil then return {'agent_unknown'} end
if a.logged_in ~= '1' then return {'already', num(a.ver)} end
local offer_id = a.offer
if offer_id ~= '' then
  emit('OfferRescinded', {'agent', id, 'offer', offer_id, 'cause', 'agent_logged_out'})
  release_offer(offer_id, 'agent_logged_out')
  a = hgetall(KEYS[2])
end
a.logged_in = '0'
a.pause = ''
a.missed = '0'
a.wrap_until = 0
a.wraps = ''
local ver = save_agent(id, a)
emit('AgentLoggedOut', {'agent', id, 'offer', offer_id, 'ver', ver})
return {'ok', ver}
