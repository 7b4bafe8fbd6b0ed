-- callcenter acd_cancel v1: cancel a waiting or offered item (the customer left).
--
-- KEYS[1]  events stream      KEYS[2]  item:<item_id>
-- ARGV[4]  item_id
-- ARGV[5]  reason (free text, e.g. 'abandoned')
--
-- An offered item frees its agent at once (no miss counted); ItemCancelled then carries the
-- agent and offer. The cancelled hash is kept for the retention period so repeats are answered.
-- Returns {'ok', version}, {'already', version}, {'item_unknown'},
-- {'item_assigned', version} (an agent works on it: complete it instead),
-- {'item_finished', version, state} (completed).
local id = ARGV[4]
local it = hgetall(KEYS[2])
if it == nil then return {'item_unknown'} end
if it.state == 'cancelled' then return {'already', num(it.ver)} end
if it.state == 'completed' then return {'item_finished', num(it.ver), it.state} end
if it.state == 'assigned' then return {'item_assigned', num(it.ver)} end
local agent, offer_id = '', ''
if it.state == 'waiting' then
  redis.call('ZREM', WAITING, id)
else
  agent, offer_id = it.agent, it.offer
  local a = hgetall(agent_key(agent))
  drop_offer(offer_id, a, it.channel)
  if a ~= nil then save_agent(agent, a) end
end
local ver = finish_item(id, it, 'cancelled')
emit('ItemCancelled', {'item', id, 'agent', agent, 'offer', offer_id, 'channel', it.channel,
  'queue', it.queue, 'reason', ARGV[5], 'ver', ver})
return {'ok', ver}
