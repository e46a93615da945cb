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

from collections.abc import Callable
from dataclasses import dataclass

from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.stream import ByteStream
from gateway.codecs.mbus.wireless_link import MIN_L, FrameFormat, LinkMode


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


class StreamAdapter(ByteStream):
    """The buffer and counters every dongle adapter shares; ``events`` counts good messages."""

    def __init__(self) -> None:
        super().__init__()
        self.events = 0

    def _telegram_without_l(
        self, body: bytes, rssi: int | None, to_dbm: Callable[[int], int], *, offset: int
    ) -> ReceivedTelegram:
        """A telegram the dongle sent from its C-field on, its own length byte standing in for
        the L-field (IMST, Amber); ``rssi`` is the raw byte the dongle appended, if any."""
        if len(body) < MIN_L:
            self.errors += 1
            raise MBusFrameError(f"received telegram of {len(body)} bytes is too short", offset=offset, field="length")
        return ReceivedTelegram(
            frame=bytes([len(body)]) + body, rssi_dbm=None if rssi is None else to_dbm(rssi), rssi_raw=rssi
        )

    def _emit(self, count: int) -> bytes:
        """Consume ``count`` bytes of a good message and return them."""
        chunk = bytes(self._buffer[:count])
        del self._buffer[:count]
        self.events += 1
        return chunk


def link_mode_value(modes: tuple, values: dict, combined: int | None, dongle: str) -> int:
    """The dongle's code for receiving ``modes``: one mode, or C1 and T1 together where the
    dongle has a combined mode (``combined``)."""
    wanted = {LinkMode(mode) for mode in modes}
    if wanted == {LinkMode.C1, LinkMode.T1} and combined is not None:
        return combined
    if len(wanted) != 1:
        raise ValueError(f"the {dongle} listens to one mode, or to C1 and T1 together, not {sorted(modes)}")
    return values[wanted.pop()]
