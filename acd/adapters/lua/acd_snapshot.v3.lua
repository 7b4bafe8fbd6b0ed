-- callcenter acd_snapshot v3: one consistent read of the waiting items and the ready agents.
--
-- KEYS[1]  events stream (not written)      KEYS[2]  waiting
-- ARGV[4]  at most this many waiting items, in the fair order
-- ARGV[5]  at most this many ready agents per channel, longest idle first
--
-- Read-only. An agent in wrap-up or in a timed miss is not returned (its ready-set score is in
-- the future). v2: items carry queue_since ('' until an overflow moved them). v3: an agent's
-- loads count the items whose wrap-up is still running (they hold their slot).
-- Returns {server ms, waiting total,
--          {{item_id, ver, channel, queue, priority, enq, skills, misses, queue_since}, ...},
--          {{channel, {agent_id, ...}}, ...},
--          {{agent_id, ver, caps, blocks, skills, idle_since, load_call, load_chat,
--            load_email}, ...}}
local items, ids = {}, {}
if num(ARGV[4]) > 0 then ids = redis.call('ZRANGE', KEYS[2], 0, num(ARGV[4]) - 1) end
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', item_key(id), 'ver', 'channel', 'queue', 'priority', 'enq',
    'skills', 'misses', 'queue_since')
  items[#items + 1] = {id, v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]}
end
local ready, agents, seen = {}, {}, {}
for _, ch in ipairs(CHANNELS) do
  local agent_ids = redis.call('ZRANGEBYSCORE', ready_key(ch), '-inf', NOW, 'LIMIT', 0,
    num(ARGV[5]))
  ready[#ready + 1] = {ch, agent_ids}
  for _, id in ipairs(agent_ids) do
    if not seen[id] then
      seen[id] = true
      local v = redis.call('HMGET', agent_key(id), 'ver', 'caps', 'blocks', 'skills',
        'idle_since', 'load:call', 'load:chat', 'load:email', 'wraps')
      local loads = {call = num(v[6]), chat = num(v[7]), email = num(v[8])}
      for _, w in pairs(wraps_of({wraps = v[9]})) do loads[w.c] = (loads[w.c] or 0) + 1 end
      agents[#agents + 1] = {id, v[1], v[2], v[3], v[4], v[5], loads.call, loads.chat,
        loads.email}
    end
  end
end
return {NOW, redis.call('ZCARD', KEYS[2]), items, ready, agents}
