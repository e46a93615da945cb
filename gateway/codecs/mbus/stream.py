"""The receive buffer that every incremental M-Bus parser shares (sans-IO).

Wired frames (:class:`gateway.codecs.mbus.link.LinkParser`) and the serial framings of the
wireless dongles (:mod:`gateway.codecs.mbus.dongles`) arrive in chunks of any size; a parser
keeps what it has not consumed yet and counts what it had to skip or reject.
"""

from __future__ import annotations

from gateway.codecs.mbus.errors import MBusFrameError


class ByteStream:
    """A receive buffer with the counters of an incremental parser."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.skipped_bytes = 0
        self.errors = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def clear(self) -> None:
        """Forget buffered bytes (e.g. after a timeout, so a late reply is never taken for
        the answer to the next request)."""
        self.skipped_bytes += len(self._buffer)
        self._buffer.clear()

    def _skip(self, count: int = 1) -> None:
        del self._buffer[:count]
        self.skipped_bytes += count

    def _fail(self, reason: str, offset: int, field: str) -> MBusFrameError:
        """Drop the first byte of a broken unit (the real one may start inside it), count it,
        and return the error to raise."""
        self._skip(1)
        self.errors += 1
        return MBusFrameError(reason, offset=offset, field=field)
