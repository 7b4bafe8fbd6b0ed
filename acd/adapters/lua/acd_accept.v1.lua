-- callcenter acd_accept v1: the agent took the offered item: offer -> assigned, agent on work.
--
-- KEYS[1]  events stream      KEYS[2]  item:<item_id>
-- ARGV[4]  item_id
-- ARGV[5]  offer_id
--
-- An offer past its expiry (server clock) is dead even if expire_offers has not run yet: it is
-- expired here (OfferTimedOut, ItemRequeued) and the accept refused, so the outcome never
-- depends on when the clean-up runs. Accepting resets the agent's consecutive misses.
-- Returns {'ok', item version} after ItemAssigned, {'already', version} when this offer was
-- accepted before, {'item_unknown'}, {'offer_unknown', item state}, {'offer_expired', version}.
local item_id, offer_id = ARGV[4], ARGV[5]
local it = hgetall(KEYS[2])
if it == nil then return {'item_unknown', ''} end
if it.offer ~= offer_id then return {'offer_unknown', it.state} end
if it.state == 'assigned' then return {'already', num(it.ver)} end
local raw = redis.call('HGET', OFFERS, offer_id)
if raw and cjson.decode(raw).expires <= NOW then
  emit('OfferTimedOut', {'item', item_id, 'agent', it.agent, 'offer', offer_id})
  local ver = release_offer(offer_id, 'offer_timed_out')
  return {'offer_expired', ver}
end
redis.call('HDEL', OFFERS, offer_id)
redis.call('ZREM', EXPIRY, offer_id)
local a = hgetall(agent_key(it.agent))
local aver = 0
if a ~= nil then
  a.offer = ''
  a.misses = 0
  aver = save_agent(it.agent, a)
end
it.state = 'assigned'
local ver = save_item(item_id, it)
emit('ItemAssigned', {'item', item_id, 'agent', it.agent, 'offer', offer_id,
  'channel', it.channel, 'queue', it.queue, 'ver', ver, 'aver', aver})
return {'ok', ver}
