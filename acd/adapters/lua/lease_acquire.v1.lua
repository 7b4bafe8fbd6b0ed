-- callcenter lease_acquire v1: take the ownership lease of one Asterisk, or re-take it if ours.
--
-- KEYS[1]  lease key   callcenter:lease:{asterisk:<asterisk_id>}   value "<node_id>:<token>"
-- KEYS[2]  epoch key   callcenter:lease:{asterisk:<asterisk_id>}:epoch  (fencing token counter)
-- ARGV[1]  node_id
-- ARGV[2]  ttl in milliseconds
--
-- Returns the new fencing token (> 0) when the caller now owns the lease, or 0 when another
-- node holds it. Every acquisition starts a new term and so gets a new token, also a re-take
-- by the same node id (a restarted node, or one that lost track of a reply): its previous
-- term, if anything of it is still running, is fenced off by the higher token.
local current = redis.call('GET', KEYS[1])
if current then
  local prefix = ARGV[1] .. ':'
  local rest = string.sub(current, #prefix + 1)
  if string.sub(current, 1, #prefix) ~= prefix or not string.match(rest, '^%d+$') then
    return 0
  end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
