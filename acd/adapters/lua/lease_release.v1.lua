-- callcenter lease_release v1: give the ownership lease up, only if it is still ours, same term.
--
-- KEYS[1]  lease key   callcenter:lease:{asterisk:<asterisk_id>}   value "<node_id>:<token>"
-- ARGV[1]  node_id
-- ARGV[2]  fencing token of the caller's term
--
-- Returns 1 when the lease was deleted, 0 when it was not ours (nothing is changed then).
-- The epoch key is kept, so tokens keep increasing across releases.
if redis.call('GET', KEYS[1]) == ARGV[1] .. ':' .. ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
