-- callcenter acd_common v3: shared prelude of every acd_* script (prepended when loaded).
--
-- v2: a miss lasts until `missed_until` (server ms; 0: until the agent is made ready), and the
-- ready sets score an agent by max(idle_since, wrap_until, missed_until), so a missed agent is
-- ready again by itself when the cooldown ends, whichever node saw the miss and even if it died.
-- Items carry `queue_since` (when they entered their current queue; overflow moves them).
-- v3: wrap-up is per item, as in the domain: a completed item with a wrap-up keeps its capacity
-- slot on its channel until its own wrap-up ends (`wraps`: JSON item id -> {c = channel,
-- u = end in server ms}); the agent stays offerable on channels with capacity left, and a
-- wrapping call blocks the other channels when calls block them. `wrap_until` is now only the
-- agent-wide wrap-up of `acd_agent_set_state 'wrap_up'`. Each ready set scores the agent by the
-- time it can take that channel: max(idle_since, wrap_until, missed_until, the end of the
-- wrap-up that frees a slot on the channel, the end of a wrapping call's wrap-up when calls
-- block), so it is ready by itself when that wrap-up ends.
--
-- Every ACD script is run as <this prelude> .. <script body> and starts with the same ARGV:
--   ARGV[1]  key prefix  "acd:{<site>}:"  (the hash tag puts every key of a site in one slot)
--   ARGV[2]  approximate MAXLEN of the event stream
--   ARGV[3]  retention in ms of finished (cancelled / completed) item hashes
-- Script arguments start at ARGV[4]. KEYS[1] is always the event stream; the entity keys a
-- script is about follow it. Other keys of the site (ready sets, waiting set, offers) are
-- derived from the prefix: they share the hash tag, so they live in the declared keys' slot.
--
-- Scripts read TIME before writing: this needs effects replication (the default since Redis 5).
--
-- Replies are arrays whose first element is 'ok', 'already' (an idempotent repeat: nothing
-- changed) or a refusal reason (nothing changed either).
--
-- Layout (see acd/adapters/redis_state.py for the full description):
--   agent:<id>    hash  ver state logged_in pause missed missed_until misses missed_total
--                       wrap_until wraps idle_since caps blocks skills offer
--                       load:call load:chat load:email (offered + assigned, not wrapping)
--   item:<id>     hash  ver state channel queue queue_since priority enq score skills attrs
--                       agent offer
--                       last_offer last_cause req offers misses
--   ready:<ch>    zset  agents that can take <ch>,
--                       score = when it can (see v3 above) in ms
--   waiting       zset  waiting items, score = (1000 - priority) * 2^42 + enqueued_at_ms
--   offers        hash  offer id -> JSON {item, agent, channel, expires}
--   offer_expiry  zset  offer id, score = expiry in ms (server clock)
--   offer_seq     counter of offer ids
--   events        stream of facts, one entry per fact: type, at (server ms), fields
local P = ARGV[1]
local MAXLEN = ARGV[2]
local RETAIN_MS = ARGV[3]
local CHANNELS = {'call', 'chat', 'email'}
local EVENTS = P .. 'events'
local WAITING = P .. 'waiting'
local OFFERS = P .. 'offers'
local EXPIRY = P .. 'offer_expiry'
local SEQ = P .. 'offer_seq'

local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The server's clock, read once: controllers' clocks never decide expiry or wrap-up.
local NOW = server_ms()

local function num(v)
  return tonumber(v) or 0
end

local function agent_key(id) return P .. 'agent:' .. id end
local function item_key(id) return P .. 'item:' .. id end
local function ready_key(ch) return P .. 'ready:' .. ch end

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function hset_all(key, t)
  local args = {'HSET', key}
  for k, v in pairs(t) do
    args[#args + 1] = k
    args[#args + 1] = v
  end
  redis.call(unpack(args))
end

local function emit(kind, fields)
  local args = {'XADD', EVENTS, 'MAXLEN', '~', MAXLEN, '*', 'type', kind, 'at', NOW}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  return redis.call(unpack(args))
end

-- Agents -------------------------------------------------------------------------------------

local function held(a)
  local n = 0
  for _, ch in ipairs(CHANNELS) do n = n + num(a['load:' .. ch]) end
  return n
end

-- The running item wrap-ups: item id -> {c = channel, u = end ms}; those ended by NOW are left
-- out (and so dropped at the next save_agent).
local function wraps_of(a)
  local out = {}
  if a.wraps == nil or a.wraps == '' then return out end
  for item, w in pairs(cjson.decode(a.wraps)) do
    if num(w.u) > NOW then out[item] = w end
  end
  return out
end

local function set_wraps(a, wraps)
  if next(wraps) == nil then a.wraps = '' else a.wraps = cjson.encode(wraps) end
end

-- The ends of the item wrap-ups on channel `ch` still running at server time `at`, latest first
-- (`at` = math.huge: none, i.e. once every wrap-up is over).
local function wrap_ends(a, ch, at)
  local ends = {}
  for _, w in pairs(wraps_of(a)) do
    if w.c == ch and num(w.u) > at then ends[#ends + 1] = num(w.u) end
  end
  table.sort(ends, function(x, y) return x > y end)
  return ends
end

-- Whether the agent is still missed at server time `at` (math.huge: ever, i.e. a miss without
-- an end; a timed miss is left to the ready-set score like wrap-up).
local function missed_at(a, at)
  if a.missed ~= '1' then return false end
  local untl = num(a.missed_until)
  return untl == 0 or (at ~= math.huge and untl > at)
end

-- Same precedence as the domain's AgentStatus: facts first, then availability.
local function agent_state(a)
  if a.logged_in ~= '1' then return 'logged_out' end
  if a.offer ~= '' then return 'reserved' end
  if held(a) > 0 then return 'on_work' end
  if num(a.wrap_until) > NOW or next(wraps_of(a)) ~= nil then return 'wrap_up' end
  if missed_at(a, NOW) then return 'missed' end
  if a.pause ~= '' then return 'paused' end
  return 'ready'
end

-- Why the agent cannot be offered an item of channel `ch` at server time `at` (math.huge: any
-- time, i.e. ignoring wrap-up), or nil if it can.
local function agent_refusal(a, ch, at)
  if a.logged_in ~= '1' then return 'agent_logged_out' end
  if a.offer ~= '' then return 'agent_reserved' end
  if a.pause ~= '' then return 'agent_paused' end
  if missed_at(a, at) then return 'agent_missed' end
  if num(a.wrap_until) > at then return 'agent_wrap_up' end
  local cap = num(cjson.decode(a.caps)[ch])
  if cap <= 0 then return 'agent_no_channel' end
  local load = num(a['load:' .. ch])
  if load >= cap then return 'agent_at_capacity' end
  if a.blocks == '1' and ch ~= 'call' and num(a['load:call']) > 0 then return 'agent_on_call' end
  -- the slots and the call block held by item wrap-ups still running at `at`
  if load + #wrap_ends(a, ch, at) >= cap then return 'agent_wrap_up' end
  if a.blocks == '1' and ch ~= 'call' and #wrap_ends(a, 'call', at) > 0 then
    return 'agent_wrap_up'
  end
  return nil
end

-- When the agent can take channel `ch` as far as item wrap-ups go (0: now): the end of the
-- wrap-up that leaves a slot free, and of a wrapping call's when calls block the other channels.
-- Only called when the agent could take `ch` once every wrap-up is over.
local function wraps_free_at(a, ch)
  local free = 0
  local ends = wrap_ends(a, ch, NOW)
  local slots = num(cjson.decode(a.caps)[ch]) - num(a['load:' .. ch])
  if #ends >= slots then free = ends[slots] end
  if a.blocks == '1' and ch ~= 'call' then
    local calls = wrap_ends(a, 'call', NOW)
    if #calls > 0 then free = math.max(free, calls[1]) end
  end
  return free
end

-- Write the agent (version bumped, state derived) and its membership of the ready sets.
local function save_agent(id, a)
  a.ver = num(a.ver) + 1
  set_wraps(a, wraps_of(a))
  a.state = agent_state(a)
  hset_all(agent_key(id), a)
  local missed_until = 0
  if a.missed == '1' then missed_until = num(a.missed_until) end
  local score = math.max(num(a.idle_since), num(a.wrap_until), missed_until)
  for _, ch in ipairs(CHANNELS) do
    -- Wrap-ups and a timed miss are left to the score: an agent is ready for `ch` from
    -- max(idle_since, wrap_until, missed_until, wraps_free_at) on.
    if agent_refusal(a, ch, math.huge) == nil then
      redis.call('ZADD', ready_key(ch), math.max(score, wraps_free_at(a, ch)), id)
    else
      redis.call('ZREM', ready_key(ch), id)
    end
  end
  return a.ver
end

-- Items --------------------------------------------------------------------------------------

local function save_item(id, it)
  it.ver = num(it.ver) + 1
  hset_all(item_key(id), it)
  return it.ver
end

local function finish_item(id, it, state)
  it.state = state
  it.agent = ''
  it.offer = ''
  local ver = save_item(id, it)
  redis.call('PEXPIRE', item_key(id), RETAIN_MS)
  return ver
end

-- Offers -------------------------------------------------------------------------------------

-- Drop the offer record; the agent (if any) loses the reservation and its load on the channel.
-- The caller saves the agent.
local function drop_offer(offer_id, a, channel)
  redis.call('HDEL', OFFERS, offer_id)
  redis.call('ZREM', EXPIRY, offer_id)
  if a ~= nil then
    if a.offer == offer_id then a.offer = '' end
    a['load:' .. channel] = math.max(0, num(a['load:' .. channel]) - 1)
  end
end

-- Put an offered item back in the waiting set at its original score (its old place: ahead of
-- everything enqueued later at the same priority) and record why.
local function requeue(id, it, offer_id, cause)
  local agent = it.agent
  it.state = 'waiting'
  it.agent = ''
  it.offer = ''
  it.last_offer = offer_id
  it.last_cause = cause
  local ver = save_item(id, it)
  redis.call('ZADD', WAITING, it.score, id)
  emit('ItemRequeued', {'item', id, 'agent', agent, 'offer', offer_id, 'channel', it.channel,
    'queue', it.queue, 'cause', cause, 'ver', ver})
  return ver
end

-- End an offer that was not accepted (expired, rescinded by logout): the agent is freed without
-- a miss, the item requeued. Returns the item's new version (0 if the item is gone).
local function release_offer(offer_id, cause)
  local raw = redis.call('HGET', OFFERS, offer_id)
  if not raw then return 0 end
  local o = cjson.decode(raw)
  local a = hgetall(agent_key(o.agent))
  drop_offer(offer_id, a, o.channel)
  local aver = 0
  if a ~= nil then aver = save_agent(o.agent, a) end
  local it = hgetall(item_key(o.item))
  local ver = 0
  if it ~= nil and it.state == 'offered' and it.offer == offer_id then
    ver = requeue(o.item, it, offer_id, cause)
  end
  return ver, o, aver
end
