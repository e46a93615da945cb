"""What each dongle sends for a corpus telegram, and a reader that drains an adapter.

The dongle side is built from the framings' descriptions (HCI message, Amber command frame,
culfw line), with the adapters' own ``message``/``command`` builders only where the test is
about the reading side.
"""

from __future__ import annotations

import random

from gateway.codecs.mbus.crc import crc_x25
from gateway.codecs.mbus.dongles import ReceivedTelegram
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import FrameFormat, decode_frame

from ..wmbus_corpus import wireless


def corpus_frames(count: int | None = None) -> list[bytes]:
    """Stripped link-layer frames of the corpus (whole frames only)."""
    frames = []
    for telegram in wireless():
        try:
            frames.append(decode_frame(telegram.data, frame_format="auto").to_bytes())
        except MBusFrameError:
            continue
    return frames[:count]


def imst_indication(frame: bytes, *, rssi: int | None = 0x80, crc: bool = True, timestamp: int | None = None) -> bytes:
    """RADIOLINK WMBUSMSG_IND: A5, control|endpoint 2, message id 3, length, frame without L."""
    control = (0x80 if crc else 0) | (0x40 if rssi is not None else 0) | (0x20 if timestamp is not None else 0)
    body = bytes([control | 0x02, 0x03, len(frame) - 1]) + frame[1:]
    if timestamp is not None:
        body += timestamp.to_bytes(4, "little")
    if rssi is not None:
        body += bytes([rssi])
    if crc:
        body += crc_x25(body).to_bytes(2, "little")
    return b"\xa5" + body


def iu891a_indication(frame: bytes, rssi_dbm: int = -60) -> bytes:
    body = bytes([0x09, 0x20]) + (123456).to_bytes(4, "little") + bytes(3) + bytes([rssi_dbm & 0xFF]) + frame
    body += crc_x25(body).to_bytes(2, "little")
    escaped = body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + escaped + b"\xc0"


def amber_indication(frame: bytes, rssi: int | None = 0x20) -> bytes:
    """CMD_DATA_IND: FF 03 length (C..end + RSSI) payload XOR-checksum."""
    payload = frame[1:] + (bytes([rssi]) if rssi is not None else b"")
    out = bytes([0xFF, 0x03, len(payload)]) + payload
    check = 0
    for byte in out:
        check ^= byte
    return out + bytes([check])


def cul_line(frame: bytes, fmt: FrameFormat = FrameFormat.A, *, lqi: int = 0x9A, rssi: int | None = 0x30) -> bytes:
    on_air = decode_frame(frame).to_bytes(fmt)
    prefix = b"bY" if fmt is FrameFormat.B else b"b"
    suffix = b"" if rssi is None else bytes([lqi, rssi]).hex().upper().encode()
    return prefix + on_air.hex().upper().encode() + suffix + b"\r\n"


def garbage(rng: random.Random, size: int, *, avoid: bytes = b"") -> bytes:
    return bytes(b for b in rng.randbytes(size * 2) if b not in avoid)[:size]


def drain(adapter) -> tuple[list, int]:
    """Every event the adapter yields for what it holds, counting the errors it raises."""
    events, errors = [], 0
    while True:
        try:
            event = adapter.next_event()
        except MBusFrameError:
            errors += 1
            continue
        if event is None:
            return events, errors
        events.append(event)


def telegrams_of(events) -> list[ReceivedTelegram]:
    return [e for e in events if isinstance(e, ReceivedTelegram)]


def fed_byte_by_byte(adapter, raw: bytes):
    """Feed ``raw`` one byte at a time: nothing may come out before the last byte, then
    exactly one event, which is returned."""
    for byte in raw[:-1]:
        adapter.receive_data(bytes([byte]))
        assert adapter.next_event() is None
    adapter.receive_data(raw[-1:])
    event = adapter.next_event()
    assert event is not None and adapter.next_event() is None
    return event


def recovers_after(adapter, bad: bytes, good: bytes):
    """Feed a broken message then a good one: the first ``next_event`` raises the codec's
    error (returned, for its reason and offset), then the good message still comes out."""
    adapter.receive_data(bytes(bad) + good)
    try:
        adapter.next_event()
    except MBusFrameError as exc:
        error = exc
    else:
        raise AssertionError("the broken message was not rejected")
    events, _ = drain(adapter)
    return error, telegrams_of(events)
