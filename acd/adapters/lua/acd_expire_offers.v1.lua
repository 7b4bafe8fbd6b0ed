-- callcenter acd_expire_offers v1: end the offers whose expiry (server clock) has passed.
--
-- KEYS[1]  events stream      KEYS[2]  offer_expiry
-- ARGV[4]  at most this many offers per call
--
-- For a controller that died mid-offer: the agent is freed without a miss (it was never asked,
-- as far as Redis knows) and the item requeued at its old place. Events: OfferTimedOut,
-- ItemRequeued. Returns {{offer_id, item_id, agent_id}, ...}.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', NOW, 'LIMIT', 0, num(ARGV[4]))
local out = {}
for _, offer_id in ipairs(due) do
  local raw = redis.call('HGET', OFFERS, offer_id)
  if raw then
    local o = cjson.decode(raw)
    emit('OfferTimedOut', {'item', o.item, 'agent', o.agent, 'offer', offer_id})
    release_offer(offer_id, 'offer_timed_out')
    out[#out + 1] = {offer_id, o.item, o.agent}
  else
    redis.call('ZREM', KEYS[2], offer_id)
  end
end
return out
