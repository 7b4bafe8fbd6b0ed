"""A controller node in a process of its own, for the lease tests: owns one Asterisk until stopped.

Usage: python tests/integration/lease_node.py <redis_url> <asterisk_id> <node_id> [ttl]
(with the repository root importable: installed, or on PYTHONPATH).

While it owns the lease it plays the AMI link owner and reports to Redis, so that a test can
check from outside that two owners never overlap. With ``<claims>`` =
``callcenter:test:lease:<asterisk_id>`` and ``<term>`` = ``<node_id>:<token>``, atomically
(one Lua script each):

* when its owner task starts: ``SADD <claims>:active <term>``, ``RPUSH <claims>:history
  <term>:acquired``, and if ``<claims>:active`` now has more than one member, ``SET
  <claims>:overlap`` to the members;
* when its owner task stops: if ``SREM <claims>:active <term>`` removed it, ``RPUSH
  <claims>:history <term>:stopped`` (so a start cancelled before it reached Redis leaves no trace).

SIGTERM stops it cleanly (the owner task stops, then the lease is released); SIGKILL is a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import redis.asyncio as aioredis

from acd.adapters.redis_lease import AsteriskLease

CALL_TIMEOUT = 2.0
START = """
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1] .. ':acquired')
local members = redis.call('SMEMBERS', KEYS[1])
if #members > 1 then redis.call('SET', KEYS[3], table.concat(members, ' ')) end
return #members
"""
STOP = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1] .. ':stopped')
end
return 0
"""


def claims_key(asterisk_id: str) -> str:
    """The prefix of the keys a node reports its ownership under."""
    return f"callcenter:test:lease:{asterisk_id}"


async def main(redis_url: str, asterisk_id: str, node_id: str, ttl: float) -> None:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=CALL_TIMEOUT)
    claims = claims_key(asterisk_id)
    keys = [f"{claims}:active", f"{claims}:history", f"{claims}:overlap"]
    start, stop_script = client.register_script(START), client.register_script(STOP)

    async def own(token: int) -> None:
        term = f"{node_id}:{token}"
        try:
            await asyncio.wait_for(start(keys, [term]), CALL_TIMEOUT)
            await asyncio.Event().wait()
        finally:
            await asyncio.wait_for(stop_script(keys, [term]), CALL_TIMEOUT)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    lease = AsteriskLease(client, asterisk_id, node_id, ttl=ttl)
    try:
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(lease.run(own))
            await stop.wait()
            runner.cancel()
    finally:
        with contextlib.suppress(OSError, aioredis.ConnectionError):
            await client.aclose()


if __name__ == "__main__":
    url, aid, node = sys.argv[1:4]
    asyncio.run(main(url, aid, node, float(sys.argv[4]) if len(sys.argv) > 4 else 1.0))
