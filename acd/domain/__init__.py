"""Pure ACD domain: no asyncio, sockets, Redis or SQL."""
