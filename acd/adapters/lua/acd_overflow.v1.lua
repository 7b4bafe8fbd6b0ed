-- callcenter acd_overflow v1: move a waiting item to another queue (overflow, or a closed queue).
--
-- KEYS[1]  events stream      KEYS[2]  item:<item_id>
-- ARGV[4]  item_id
-- ARGV[5]  the queue the item is in now (the move applies only from there)
-- ARGV[6]  the queue it moves to
-- ARGV[7]  reason: 'overflow' | 'closed'
--
-- The item keeps its score (its place in the one fair order: priority and enqueue time), gets
-- queue = the target and queue_since = server time (the target's relaxation steps, overflow and
-- maximum wait count from there), and its version is bumped, so a reserve decided on the old
-- queue is refused. Events: ItemOverflowed (item, from, to, reason, channel, ver).
-- Returns {'ok', item version}; {'already', version} when the item is in the target queue
-- already (another controller moved it); {'item_unknown'}, {'item_not_waiting', state},
-- {'item_queue_mismatch', current queue}.
local item_id, from, to = ARGV[4], ARGV[5], ARGV[6]
local it = hgetall(KEYS[2])
if it == nil then return {'item_unknown', ''} end
if it.queue == to then return {'already', num(it.ver)} end
if it.state ~= 'waiting' then return {'item_not_waiting', it.state} end
if it.queue ~= from then return {'item_queue_mismatch', it.queue} end
it.queue = to
it.queue_since = NOW
local ver = save_item(item_id, it)
emit('ItemOverflowed', {'item', item_id, 'from', from, 'to', to, 'reason', ARGV[7],
  'channel', it.channel, 'ver', ver})
return {'ok', ver}
