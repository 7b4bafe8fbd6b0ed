-- callcenter lease_renew v1: extend the ownership lease only if it is still ours, same term.
--
-- KEYS[1]  lease key   callcenter:lease:{asterisk:<asterisk_id>}   value "<node_id>:<token>"
-- ARGV[1]  node_id
-- ARGV[2]  fencing token of the caller's term
-- ARGV[3]  ttl in milliseconds
--
-- Returns 1 when the lease was extended, 0 when it expired or belongs to another node or term.
if redis.call('GET', KEYS[1]) == ARGV[1] .. ':' .. ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
