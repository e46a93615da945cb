"""Wired M-Bus link layer, EN 13757-2 clause 5 (frame formats of IEC 60870-5-2, class FT 1.2).

Four frame formats travel on the bus:

========================  ===================================================
single character          ``E5`` (ACK)
short frame               ``10 C A CS 16``
control frame             ``68 03 03 68 C A CI CS 16``
long frame                ``68 L L 68 C A CI data... CS 16``
========================  ===================================================

``L`` counts C, A, CI and the user data (3..255); ``CS`` is the arithmetic sum of the bytes
from C to the last data byte, modulo 256.

:func:`decode_frame` decodes exactly one whole frame; :class:`LinkParser` finds frames in a
byte stream fed in any chunking (sans-IO: the caller does the reading).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.stream import ByteStream

ACK = 0xE5
SHORT_START = 0x10
LONG_START = 0x68
STOP = 0x16

MAX_L_FIELD = 255
#: The largest frame on the bus: 4 header bytes, L = 255, CS and stop.
MAX_FRAME_SIZE = MAX_L_FIELD + 6

# C-field bits, EN 13757-2 5.5 (table 3).
C_PRM = 0x40  # 1: message from the primary station (master)
C_FCB = 0x20  # master: frame count bit
C_FCV = 0x10  # master: frame count bit valid
C_ACD = 0x20  # slave: access demand
C_DFC = 0x10  # slave: data flow control (slave cannot accept more data)
C_FUNCTION = 0x0F

# C-field function codes (low nibble), by direction. EN 13757-2 5.5 table 4.
MASTER_FUNCTIONS = {0x0: "SND_NKE", 0x3: "SND_UD", 0x4: "SND_UD2", 0xA: "REQ_UD1", 0xB: "REQ_UD2"}
SLAVE_FUNCTIONS = {0x0: "ACK", 0x8: "RSP_UD", 0xB: "RSP_SKE"}

# Whole C-field values the master sends (FCB clear; OR in C_FCB to toggle).
SND_NKE = 0x40
SND_UD = 0x53
REQ_UD1 = 0x5A
REQ_UD2 = 0x5B
RSP_UD = 0x08

# A-field values with a meaning of their own, EN 13757-2 5.6.
ADDRESS_UNCONFIGURED = 0
ADDRESS_FIRST = 1
ADDRESS_LAST = 250
ADDRESS_NETWORK_LAYER = 253  # secondary addressing: talk to the selected slave
ADDRESS_BROADCAST_REPLY = 254  # every slave answers (test, single-slave buses)
ADDRESS_BROADCAST = 255  # every slave listens, none answers


@dataclass(frozen=True, slots=True)
class ControlField:
    """The C-field, split into its bits (EN 13757-2 5.5)."""

    value: int

    @property
    def from_master(self) -> bool:
        return bool(self.value & C_PRM)

    @property
    def function(self) -> str:
        code = self.value & C_FUNCTION
        table = MASTER_FUNCTIONS if self.from_master else SLAVE_FUNCTIONS
        return table.get(code, f"0x{code:X}")

    @property
    def fcb(self) -> bool | None:
        return bool(self.value & C_FCB) if self.from_master else None

    @property
    def fcv(self) -> bool | None:
        return bool(self.value & C_FCV) if self.from_master else None

    @property
    def acd(self) -> bool | None:
        return None if self.from_master else bool(self.value & C_ACD)

    @property
    def dfc(self) -> bool | None:
        return None if self.from_master else bool(self.value & C_DFC)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "c": f"0x{self.value:02X}",
            "function": self.function,
            "direction": "master-to-slave" if self.from_master else "slave-to-master",
        }
        if self.from_master:
            out.update(fcb=self.fcb, fcv=self.fcv)
        else:
            out.update(acd=self.acd, dfc=self.dfc)
        return out


@dataclass(frozen=True, slots=True)
class SingleCharacter:
    """``E5``: the acknowledgement (EN 13757-2 5.2)."""

    def to_bytes(self) -> bytes:
        return bytes([ACK])


@dataclass(frozen=True, slots=True)
class ShortFrame:
    """``10 C A CS 16`` (EN 13757-2 5.2): SND_NKE and REQ_UD1/2."""

    c: int
    a: int

    @property
    def control(self) -> ControlField:
        return ControlField(self.c)

    def to_bytes(self) -> bytes:
        _check_byte("C", self.c)
        _check_byte("A", self.a)
        return bytes([SHORT_START, self.c, self.a, (self.c + self.a) & 0xFF, STOP])


@dataclass(frozen=True, slots=True)
class ControlFrame:
    """``68 03 03 68 C A CI CS 16`` (EN 13757-2 5.2): a long frame without user data."""

    c: int
    a: int
    ci: int

    @property
    def control(self) -> ControlField:
        return ControlField(self.c)

    def to_bytes(self) -> bytes:
        return _long_bytes(self.c, self.a, self.ci, b"")


@dataclass(frozen=True, slots=True)
class LongFrame:
    """``68 L L 68 C A CI data CS 16`` (EN 13757-2 5.2): SND_UD and RSP_UD with user data.

    ``data`` is the application data after the CI field, in transmission order."""

    c: int
    a: int
    ci: int
    data: bytes

    @property
    def control(self) -> ControlField:
        return ControlField(self.c)

    @property
    def user_data(self) -> bytes:
        """CI and data: what the application layer (EN 13757-3) decodes."""
        return bytes([self.ci]) + self.data

    def to_bytes(self) -> bytes:
        return _long_bytes(self.c, self.a, self.ci, self.data)


Frame = Union[SingleCharacter, ShortFrame, ControlFrame, LongFrame]


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} field must be one byte, got {value}")


def _long_bytes(c: int, a: int, ci: int, data: bytes) -> bytes:
    for name, value in (("C", c), ("A", a), ("CI", ci)):
        _check_byte(name, value)
    length = 3 + len(data)
    if length > MAX_L_FIELD:
        raise ValueError(f"user data of {len(data)} bytes does not fit a long frame (at most {MAX_L_FIELD - 3})")
    body = bytes([c, a, ci]) + bytes(data)
    return bytes([LONG_START, length, length, LONG_START]) + body + bytes([sum(body) & 0xFF, STOP])


def decode_frame(data: bytes) -> Frame:
    """Decode exactly one whole frame; anything short, broken or trailing is an error."""
    parser = LinkParser()
    parser.receive_data(data)
    frame = parser.next_frame()
    if frame is None:
        raise MBusFrameError(
            f"frame is incomplete: {len(data)} bytes, need {parser.bytes_needed()} more",
            offset=len(data),
            field="length",
        )
    if parser.skipped_bytes:
        raise MBusFrameError("bytes before the frame start", offset=0, field="start")
    if parser.buffered:
        raise MBusFrameError(f"{parser.buffered} trailing bytes after the frame", offset=len(data) - parser.buffered)
    return frame


class LinkParser(ByteStream):
    """Finds frames in a byte stream (sans-IO).

    Feed bytes with :meth:`receive_data`; call :meth:`next_frame` until it returns ``None``
    (need more data). Bytes that cannot start a frame are skipped and counted in
    :attr:`skipped_bytes`. A frame that starts well but is broken (length bytes that differ,
    bad checksum, wrong stop byte) raises :class:`MBusFrameError` with the reason and the
    offset within that frame; the parser has then moved past the bad start byte, so calling
    :meth:`next_frame` again resynchronises on what follows.
    """

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def bytes_needed(self) -> int:
        """How many more bytes the frame being received needs at least (0 if none started)."""
        buf = self._buffer
        if not buf:
            return 1
        if buf[0] == ACK:
            return 0
        if buf[0] == SHORT_START:
            return max(0, 5 - len(buf))
        if buf[0] == LONG_START:
            if len(buf) < 2:
                return 4 - len(buf)
            return max(0, buf[1] + 6 - len(buf))
        return 1

    def next_frame(self) -> Frame | None:
        while self._buffer:
            start = self._buffer[0]
            if start == ACK:
                del self._buffer[0]
                self.frames += 1
                return SingleCharacter()
            if start == SHORT_START:
                return self._short()
            if start == LONG_START:
                return self._long()
            del self._buffer[0]
            self.skipped_bytes += 1
        return None

    def _short(self) -> ShortFrame | None:
        buf = self._buffer
        if len(buf) < 5:
            return None
        c, a, cs, stop = buf[1], buf[2], buf[3], buf[4]
        if cs != (c + a) & 0xFF:
            raise self._fail(f"checksum 0x{cs:02X} does not match computed 0x{(c + a) & 0xFF:02X}", 3, "CS")
        if stop != STOP:
            raise self._fail(f"stop byte is 0x{stop:02X}, expected 0x16", 4, "stop")
        del buf[:5]
        self.frames += 1
        return ShortFrame(c, a)

    def _long(self) -> ControlFrame | LongFrame | None:
        buf = self._buffer
        if len(buf) < 4:
            if len(buf) >= 3 and buf[1] != buf[2]:
                raise self._fail(f"length bytes differ (0x{buf[1]:02X} and 0x{buf[2]:02X})", 2, "L")
            return None
        length, length2, start2 = buf[1], buf[2], buf[3]
        if length != length2:
            raise self._fail(f"length bytes differ (0x{length:02X} and 0x{length2:02X})", 2, "L")
        if start2 != LONG_START:
            raise self._fail(f"second start byte is 0x{start2:02X}, expected 0x68", 3, "start")
        if length < 3:
            raise self._fail(f"L field {length} is below the minimum of 3 (C, A, CI)", 1, "L")
        total = length + 6
        if len(buf) < total:
            return None
        body = bytes(buf[4 : 4 + length])
        cs, stop = buf[4 + length], buf[5 + length]
        if cs != sum(body) & 0xFF:
            raise self._fail(f"checksum 0x{cs:02X} does not match computed 0x{sum(body) & 0xFF:02X}", 4 + length, "CS")
        if stop != STOP:
            raise self._fail(f"stop byte is 0x{stop:02X}, expected 0x16", 5 + length, "stop")
        del buf[:total]
        self.frames += 1
        c, a, ci = body[0], body[1], body[2]
        if length == 3:
            return ControlFrame(c, a, ci)
        return LongFrame(c, a, ci, body[3:])
