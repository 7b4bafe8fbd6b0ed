"""The `selftest` FastAGI route: proves the Asterisk -> controller wiring end to end.

Point an extension at `AGI(agi://<controller>:4573/selftest)`: the caller hears a beep, may key
up to four digits, hears them read back, and the channel gets `CC_SELFTEST` (the digits, or
`none`) and `CC_IVR_DONE=1` (the marker the generated failover dialplan waits for).
"""

from __future__ import annotations

import logging

from ivr.adapters.fastagi_server import AgiSession
from ivr.protocol.agi_commands import Answer, GetData, SayDigits, SetVariable, Verbose

log = logging.getLogger(__name__)

SELFTEST_SCRIPT = "selftest"
DONE_VARIABLE = "CC_IVR_DONE"


async def selftest(session: AgiSession) -> None:
    """Answer, beep, read up to four digits, say them back, mark the session done."""
    await session.send(Answer())
    await session.send(Verbose("callcenter selftest: FastAGI reached the controller", 1))
    reply = await session.send(GetData("beep", timeout_ms=5000, max_digits=4))
    digits = reply.digits()
    if digits:
        await session.send(SayDigits(digits))
    await session.send(SetVariable("CC_SELFTEST", digits or "none"))
    await session.send(SetVariable(DONE_VARIABLE, "1"))
    log.info("selftest call on %s: %d digit(s)", session.env.channel, len(digits))
