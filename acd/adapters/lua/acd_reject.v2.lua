-- callcenter acd_reject v2: the agent refused or did not answer the offer: item back, agent missed.
--
-- KEYS[1]  events stream      KEYS[2]  item:<item_id>
-- ARGV[4]  item_id
-- ARGV[5]  offer_id
-- ARGV[6]  cause: 'rejected' | 'no_answer'
-- ARGV[7]  missed cooldown in ms ('' : missed until made ready; v2)
--
-- The item goes back to the waiting set with its original score (original priority and
-- enqueue time: ahead of everything that came later), the agent loses the reservation and is
-- marked missed with its consecutive and total miss counts increased (auto-pause after N misses
-- is the caller's policy, using the returned count). With a cooldown the miss ends by itself at
-- missed_until = server time + cooldown (the ready sets score the agent by it, and its idle time
-- starts then), so no controller has to stay alive to end it. Events: OfferMissed (with
-- missed_until), ItemRequeued.
-- Returns {'ok', item version, consecutive misses}, {'already', item version, 0} when this
-- offer was already rejected for this cause, {'item_unknown'}, {'offer_unknown', item state},
-- {'offer_ended', cause} when the offer ended otherwise before (timed out, rescinded).
local item_id, offer_id = ARGV[4], ARGV[5]
local it = hgetall(KEYS[2])
if it == nil then return {'item_unknown', ''} end
if it.last_offer == offer_id and it.offer ~= offer_id then
  if it.last_cause == ARGV[6] then return {'already', num(it.ver), 0} end
  return {'offer_ended', it.last_cause}
end
if it.state ~= 'offered' or it.offer ~= offer_id then return {'offer_unknown', it.state} end
local agent_id = it.agent
local a = hgetall(agent_key(agent_id))
drop_offer(offer_id, a, it.channel)
local misses, aver = 0, 0
if a ~= nil then
  a.missed = '1'
  if ARGV[7] ~= nil and ARGV[7] ~= '' then
    a.missed_until = NOW + num(ARGV[7])
    a.idle_since = a.missed_until
  else
    a.missed_until = 0
  end
  a.misses = num(a.misses) + 1
  a.missed_total = num(a.missed_total) + 1
  misses = a.misses
  aver = save_agent(agent_id, a)
end
emit('OfferMissed', {'item', item_id, 'agent', agent_id, 'offer', offer_id, 'cause', ARGV[6],
  'misses', misses, 'missed_until', a and a.missed_until or 0, 'aver', aver})
it.misses = num(it.misses) + 1
local ver = requeue(item_id, it, offer_id, ARGV[6])
return {'ok', ver, misses}
