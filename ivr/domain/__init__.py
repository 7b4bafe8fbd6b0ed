"""Pure IVR domain: no asyncio or sockets."""
