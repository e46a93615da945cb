"""The receive buffer that every incremental M-Bus parser shares (sans-IO).

Wired frames (:class:`gateway.codecs.mbus.link.LinkParser`) and the serial framings of the
wireless dongles (:mod:`gateway.codecs.mbus.dongles`) arrive in chunks of any size; a parser
keeps what it has not consumed yet and counts what it had to skip or reject. The buffer is
the one the DLMS stream parsers use; M-Bus adds how it skips and rejects.
"""

from __future__ import annotations

from gateway.codecs.dlms.stream import StreamBuffer
from gateway.codecs.mbus.errors import MBusFrameError


class ByteStream(StreamBuffer):
    """A receive buffer with the counters of an incremental parser (``skipped_bytes``,
    ``errors``), and the M-Bus way of skipping and rejecting."""

    def _skip(self, count: int = 1) -> None:
        del self._buffer[:count]
        self.skipped_bytes += count

    def _fail(self, reason: str, offset: int, field: str) -> MBusFrameError:
        """Drop the first byte of a broken unit (the real one may start inside it), count it,
        and return the error to raise."""
        self._skip(1)
        self.errors += 1
        return MBusFrameError(reason, offset=offset, field=field)
