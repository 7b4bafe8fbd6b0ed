-- callcenter acd_complete v2: the agent finished an assigned item; its wrap-up starts.
--
-- KEYS[1]  events stream      KEYS[2]  item:<item_id>
-- ARGV[4]  item_id
-- ARGV[5]  wrap-up duration in ms (0 for none)
--
-- v2: wrap-up is per item, as in the domain. Without a wrap-up the item's capacity is released
-- at once; with one the item keeps its slot on its channel until server time + wrap-up (the
-- agent's `wraps`), so the agent stays offerable on channels with capacity left (another chat
-- while one chat wraps up) and a wrapping call still blocks the other channels when calls block
-- them. When the agent holds nothing any more its idle time starts now (it is ready again, per
-- channel, when the wrap-ups holding that channel end: the ready-set scores).
-- Returns {'ok', item version} after ItemCompleted (its `wrap_until` is this item's wrap-up end,
-- 0 without one), {'already', version} when completed before, {'item_unknown'},
-- {'item_not_assigned', state}.
local item_id = ARGV[4]
local it = hgetall(KEYS[2])
if it == nil then return {'item_unknown', ''} end
if it.state == 'completed' then return {'already', num(it.ver)} end
if it.state ~= 'assigned' then return {'item_not_assigned', it.state} end
local agent_id, offer_id = it.agent, it.offer
local a = hgetall(agent_key(agent_id))
local wrap_until = 0
if a ~= nil then
  a['load:' .. it.channel] = math.max(0, num(a['load:' .. it.channel]) - 1)
  if num(ARGV[5]) > 0 then
    wrap_until = NOW + num(ARGV[5])
    local wraps = wraps_of(a)
    wraps[item_id] = {c = it.channel, u = wrap_until}
    set_wraps(a, wraps)
  end
  if held(a) == 0 then a.idle_since = NOW end
  save_agent(agent_id, a)
end
local ver = finish_item(item_id, it, 'completed')
emit('ItemCompleted', {'item', item_id, 'agent', agent_id, 'offer', offer_id,
  'channel', it.channel, 'queue', it.queue, 'wrap_until', wrap_until, 'ver', ver})
return {'ok', ver}
