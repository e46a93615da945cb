"""What the DLMS stream parsers share (HDLC frames, wrapper messages): a receive buffer with
its counters, and the strict decoding of exactly one unit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from gateway.codecs.dlms.errors import DLMSFrameError

Unit = TypeVar("Unit")


class StreamBuffer:
    """Bytes received and not yet decoded. ``skipped_bytes`` counts bytes that belonged to no
    unit, ``errors`` the broken units reported."""

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
        """Forget buffered bytes (after a timeout or a reconnect, so a late reply is never
        taken for the answer to the next request)."""
        self.skipped_bytes += self.buffered
        self._buffer.clear()

    def bytes_needed(self) -> int:
        """How many more bytes the unit being received needs at least."""
        return 1


def decode_exactly(parser: StreamBuffer, next_unit: Callable[[], Unit | None], data: bytes, name: str) -> Unit:
    """Decode ``data`` as exactly one unit; anything short, before or after it is an error."""
    parser.receive_data(data)
    unit = next_unit()
    if unit is None:
        raise DLMSFrameError(
            f"{name} is incomplete: {len(data)} bytes, need {parser.bytes_needed()} more", offset=len(data), field="length"
        )
    if parser.skipped_bytes:
        raise DLMSFrameError(f"bytes before the {name}", offset=0, field="start")
    if parser.buffered:
        raise DLMSFrameError(f"{parser.buffered} trailing bytes after the {name}", offset=len(data) - parser.buffered)
    return unit
