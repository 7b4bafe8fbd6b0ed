-- callcenter acd_reserve v1: atomically offer a waiting item to a ready agent (compare-and-set).
--
-- KEYS[1]  events stream      KEYS[2]  item:<item_id>      KEYS[3]  agent:<agent_id>
-- ARGV[4]  item_id
-- ARGV[5]  agent_id
-- ARGV[6]  expected item version, '' for any
-- ARGV[7]  expected agent version, '' for any
-- ARGV[8]  offer time-to-live in ms (expiry = server time + ttl)
-- ARGV[9]  request id: unique per reserve decision, the same when the call is retried
--
-- Checks, in order, that the item is waiting, that the agent can take an item of its channel
-- now (logged in, no pending offer, not paused / missed / in wrap-up, free capacity on the
-- channel, no call in progress when calls block the other channels) and that both versions are
-- the expected ones; then marks the item offered and the agent reserved (load + 1 on the
-- channel), records the offer and emits ItemOffered. Skills are not checked: which agent may
-- take which item (relaxation over the wait) is the routing engine's decision.
-- Returns {'ok', offer_id, expires_ms, item version, agent version}; the same reply with
-- 'already' when this request id already made this offer (a retry after a lost reply; another
-- controller asking for the same pair has another request id and is refused); else
-- {reason, detail} with reason one of
-- item_unknown, item_not_waiting, item_version_mismatch, agent_unknown, agent_logged_out,
-- agent_reserved, agent_paused, agent_missed, agent_wrap_up, agent_no_channel,
-- agent_at_capacity, agent_on_call, agent_version_mismatch.
local item_id, agent_id = ARGV[4], ARGV[5]
local req = ARGV[9]
local it = hgetall(KEYS[2])
if it == nil then return {'item_unknown', ''} end
if it.state == 'offered' and it.agent == agent_id and it.req == req then
  local a = hgetall(KEYS[3])
  local raw = redis.call('HGET', OFFERS, it.offer)
  local expires = 0
  if raw then expires = cjson.decode(raw).expires end
  return {'already', it.offer, expires, num(it.ver), num(a and a.ver)}
end
if it.state ~= 'waiting' then return {'item_not_waiting', it.state} end
local a = hgetall(KEYS[3])
if a == nil then return {'agent_unknown', ''} end
local why = agent_refusal(a, it.channel, NOW)
if why ~= nil then return {why, agent_state(a)} end
if ARGV[6] ~= '' and num(ARGV[6]) ~= num(it.ver) then
  return {'item_version_mismatch', tostring(it.ver)}
end
if ARGV[7] ~= '' and num(ARGV[7]) ~= num(a.ver) then
  return {'agent_version_mismatch', tostring(a.ver)}
end
local offer_id = 'o' .. redis.call('INCR', SEQ)
local expires = NOW + num(ARGV[8])
redis.call('HSET', OFFERS, offer_id,
  cjson.encode({item = item_id, agent = agent_id, channel = it.channel, expires = expires}))
redis.call('ZADD', EXPIRY, expires, offer_id)
redis.call('ZREM', WAITING, item_id)
it.state = 'offered'
it.agent = agent_id
it.offer = offer_id
it.req = req
it.offers = num(it.offers) + 1
local ver = save_item(item_id, it)
a.offer = offer_id
a['load:' .. it.channel] = num(a['load:' .. it.channel]) + 1
local aver = save_agent(agent_id, a)
emit('ItemOffered', {'item', item_id, 'agent', agent_id, 'offer', offer_id,
  'channel', it.channel, 'queue', it.queue, 'expires', expires, 'ver', ver, 'aver', aver})
return {'ok', offer_id, expires, ver, aver}
