"""I/O adapters of the IVR: the FastAGI and AudioSocket asyncio servers."""
