-- callcenter acd_enqueue v1: put a new work item in the waiting set.
--
-- KEYS[1]  events stream      KEYS[2]  item:<item_id>
-- ARGV[4]  item_id
-- ARGV[5]  channel ('call' | 'chat' | 'email')
-- ARGV[6]  queue
-- ARGV[7]  priority, an integer in -1000..1000 (higher is served sooner)
-- ARGV[8]  enqueued_at in ms since the epoch, '' for the server's time now
-- ARGV[9]  required skills, JSON {"<skill>": <minimum level>, ...}
-- ARGV[10] opaque attributes, JSON object
--
-- Score = (1000 - priority) * 2^42 + enqueued_at_ms: exact in a double (< 2^53) for times
-- before the year 2109, so ZRANGE gives the fair order (priority, then age); equal scores are
-- ordered by item id, so the order is total and stable.
-- Returns {'ok', version} after ItemEnqueued, {'already', version, state} for a live item of
-- that id (a retried enqueue), {'item_finished', version, state} for a cancelled/completed one.
local id = ARGV[4]
local it = hgetall(KEYS[2])
if it ~= nil then
  if it.state == 'cancelled' or it.state == 'completed' then
    return {'item_finished', num(it.ver), it.state}
  end
  return {'already', num(it.ver), it.state}
end
local enq = NOW
if ARGV[8] ~= '' then enq = num(ARGV[8]) end
local priority = num(ARGV[7])
local score = string.format('%.0f', (1000 - priority) * 4398046511104 + enq)
it = {ver = 0, state = 'waiting', channel = ARGV[5], queue = ARGV[6], priority = priority,
  enq = enq, score = score, skills = ARGV[9], attrs = ARGV[10], agent = '', offer = '',
  last_offer = '', last_cause = '', req = '', offers = 0, misses = 0}
local ver = save_item(id, it)
redis.call('ZADD', WAITING, score, id)
emit('ItemEnqueued', {'item', id, 'channel', it.channel, 'queue', it.queue,
  'priority', priority, 'enq', enq, 'ver', ver})
return {'ok', ver}
