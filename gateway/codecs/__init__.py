"""Sans-IO codecs: bytes in, typed frames/APDUs/records out. No I/O, clocks or asyncio.

Codecs import only :mod:`gateway.model` and :mod:`gateway.errors`."""
