"""Serial framings of wireless M-Bus radio dongles (sans-IO).

Each adapter turns the bytes a dongle sends into events and builds the bytes of the commands
it understands:

* :mod:`.imst` — IMST iM871A (WM-Bus HCI) and iU891A (SLIP-framed HCI);
* :mod:`.amber` — Amber / Würth Elektronik Metis AMB8465 family (command and transparent mode);
* :mod:`.cul` — CUL / nanoCUL with culfw (text lines).

All share the shape of :class:`gateway.codecs.mbus.link.LinkParser`: feed bytes with
``receive_data``, call ``next_event`` until it returns ``None`` (need more data). Bytes that
cannot start a message are skipped and counted in ``skipped_bytes``; a message that starts well
but is broken (bad checksum, impossible length) raises :class:`MBusFrameError` after the
adapter has moved past its first byte, so the next call resynchronises. A received telegram
comes out as :class:`ReceivedTelegram`: the link-layer bytes, how their CRCs stand, and the
signal strength where the dongle reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import FrameFormat


@dataclass(frozen=True, slots=True)
class ReceivedTelegram:
    """A telegram heard by a dongle.

    ``frame`` is the link-layer frame from its L-field on; ``frame_format`` says whether it
    still carries its format A/B CRC blocks (CUL) or was stripped by the dongle (IMST,
    Amber), ready for :func:`gateway.codecs.mbus.wireless_link.decode_frame`. ``rssi_dbm`` is
    the dongle's signal strength converted to dBm (approximate, per the dongle's
    documentation) and ``rssi_raw`` the value as sent; both ``None`` when not reported.
    """

    frame: bytes
    frame_format: FrameFormat = FrameFormat.STRIPPED
    rssi_dbm: int | None = None
    rssi_raw: int | None = None
    lqi: int | None = None


class StreamAdapter:
    """The buffer and counters every dongle adapter shares."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.skipped_bytes = 0
        self.errors = 0
        self.events = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def clear(self) -> None:
        """Forget buffered bytes (after a timeout or a reconnect)."""
        self.skipped_bytes += len(self._buffer)
        self._buffer.clear()

    def _skip(self, count: int = 1) -> None:
        del self._buffer[:count]
        self.skipped_bytes += count

    def _emit(self, count: int) -> bytes:
        """Consume ``count`` bytes of a good message and return them."""
        chunk = bytes(self._buffer[:count])
        del self._buffer[:count]
        self.events += 1
        return chunk

    def _fail(self, reason: str, *, offset: int, field: str) -> MBusFrameError:
        """Drop the first byte of a broken message (the next may start inside it), count it,
        and return the error to raise."""
        self._skip(1)
        self.errors += 1
        return MBusFrameError(reason, offset=offset, field=field)
