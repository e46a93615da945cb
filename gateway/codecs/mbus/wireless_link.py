"""Wireless M-Bus data link layer, EN 13757-4 clause 5 (frame formats A and B) and clause 6.

A frame starts with the first block ``L C M M A A A A A A`` (10 bytes): the L-field, the
C-field, the manufacturer (2 bytes, little-endian, three letters of five bits) and the address
(identification number as 4 BCD bytes least significant first, version, device type). The CI
field opens the second block. On the air every block carries an EN 13757-4 CRC
(:func:`gateway.codecs.mbus.crc.crc_en13757`, big-endian):

==========  ===========================================================================
format A    block 1 = 10 bytes + CRC; then blocks of 16 bytes + CRC, the last one shorter.
            L counts the bytes after L *without* the CRCs.
format B    blocks 1 and 2 together (at most 126 bytes, from L on) + one CRC; a longer frame
            has a block 3 (the rest) + CRC. L counts the bytes after L *including* the CRCs.
==========  ===========================================================================

Most receivers hand over the frame with its CRCs checked and removed ("stripped"): then L is
rewritten to count the bytes that follow it, as in format A. :func:`decode_frame` takes any of
the three, checks each CRC and names the failing block, and always returns the stripped form.

Modes (EN 13757-4 clause 4): S1 and T1 send format A (T1 3-of-6 coded,
:mod:`gateway.codecs.mbus.three_of_six`); C1 sends format A or B, told apart by the second
synchronisation word that follows the preamble (:func:`c_mode_frame_format`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.codecs.mbus import three_of_six
from gateway.codecs.mbus.application import manufacturer_letters
from gateway.codecs.mbus.crc import crc_en13757
from gateway.codecs.mbus.errors import MBusFrameError

FIRST_BLOCK = 10  # L, C, M (2), A (6)
BLOCK_A = 16  # data bytes per following block in format A
BLOCK_B_FIRST = 126  # bytes (from L on) covered by the first CRC of format B
CRC_SIZE = 2
MIN_L = FIRST_BLOCK - 1  # a frame without CI: C, M, A
MAX_L = 255


class FrameFormat(str, enum.Enum):
    """How the link-layer bytes arrive: with format A or B CRC blocks, or already stripped."""

    A = "a"
    B = "b"
    STRIPPED = "stripped"


class LinkMode(str, enum.Enum):
    """The meter-to-other modes a gateway listens to (EN 13757-4 clause 4)."""

    S1 = "S1"
    T1 = "T1"
    C1 = "C1"


# C-field values, EN 13757-4 clause 5.5 (table "C-field"). Primary station (PRM, 0x40 set)
# codes are looked up with the FCB bit (0x20) cleared, secondary ones with ACD (0x20) and
# DFC (0x10) cleared, as those bits toggle or flag without changing the function.
C_PRM = 0x40
PRIMARY_FUNCTIONS = {
    0x40: "SND_NKE",
    0x43: "SND_UD2",
    0x44: "SND_NR",
    0x46: "SND_IR",
    0x47: "ACC_NR",
    0x48: "ACC_DMD",
    0x53: "SND_UD",
    0x5A: "REQ_UD1",
    0x5B: "REQ_UD2",
}
SECONDARY_FUNCTIONS = {0x00: "ACK", 0x01: "NACK", 0x06: "CNF_IR", 0x08: "RSP_UD"}

# C mode: after the preamble and the synchronisation word 0x543D comes a second word that
# names the frame format, EN 13757-4 clause 6.5 (C mode synchronisation).
C_MODE_SYNC = b"\x54\x3d"
C_MODE_FORMATS = {b"\x54\xcd": FrameFormat.A, b"\x54\x3d": FrameFormat.B}


def c_field_function(c: int) -> str:
    """The name of a C-field value (``SND_NR``, ``RSP_UD`` ...), or its hex when unknown."""
    if c & C_PRM:
        return PRIMARY_FUNCTIONS.get(c & ~0x20 & 0xFF, f"0x{c:02X}")
    return SECONDARY_FUNCTIONS.get(c & ~0x30 & 0xFF, f"0x{c:02X}")


@dataclass(frozen=True, slots=True)
class WirelessFrame:
    """One wireless M-Bus frame with its CRCs removed (EN 13757-4 clause 5).

    ``identification`` is the 8-digit identification number as printed (the four BCD bytes
    most significant first; non-BCD nibbles print as hex digits). ``ci`` is ``None`` for a
    frame without a second block; ``data`` is everything after the CI field. ``frame_format``
    tells how the frame arrived; ``trailing`` holds bytes after the frame's end when the
    caller asked to keep them rather than reject them.
    """

    c: int
    manufacturer: int
    identification: str
    version: int
    device_type: int
    ci: int | None
    data: bytes
    frame_format: FrameFormat = FrameFormat.STRIPPED
    trailing: bytes = b""

    @property
    def manufacturer_code(self) -> str:
        return manufacturer_letters(self.manufacturer)

    @property
    def function(self) -> str:
        return c_field_function(self.c)

    @property
    def address(self) -> bytes:
        """The 6-byte A-field as transmitted: identification (LSB first), version, type."""
        return bytes.fromhex(self.identification)[::-1] + bytes([self.version, self.device_type])

    @property
    def manufacturer_bytes(self) -> bytes:
        return self.manufacturer.to_bytes(2, "little")

    @property
    def l_field(self) -> int:
        """The L-field of the stripped frame (bytes after L, CRCs excluded)."""
        return MIN_L + (0 if self.ci is None else 1 + len(self.data))

    def to_bytes(self, frame_format: FrameFormat | str = FrameFormat.STRIPPED) -> bytes:
        """The frame as sent: stripped (default) or with format A or B CRC blocks."""
        body = bytes([self.l_field, self.c]) + self.manufacturer_bytes + self.address
        if self.ci is not None:
            body += bytes([self.ci]) + self.data
        return add_crc_blocks(body, FrameFormat(frame_format))

    def as_dict(self) -> dict[str, object]:
        """The link fields as the ``link`` object of ``gateway decode wmbus``."""
        out: dict[str, object] = {
            "c": f"0x{self.c:02X}",
            "function": self.function,
            "manufacturer": self.manufacturer_code,
            "id": self.identification,
            "version": self.version,
            "device_type": f"0x{self.device_type:02X}",
            "ci": None if self.ci is None else f"0x{self.ci:02X}",
            "frame_format": self.frame_format.value,
        }
        if self.trailing:
            out["trailing"] = self.trailing.hex()
        return out


def wire_length(l_field: int, frame_format: FrameFormat) -> int:
    """How many bytes a frame with this L-field occupies (with CRCs for A and B)."""
    if frame_format is FrameFormat.A:
        rest = max(0, l_field + 1 - FIRST_BLOCK)
        return l_field + 1 + CRC_SIZE * (1 + (rest + BLOCK_A - 1) // BLOCK_A)
    return l_field + 1


def add_crc_blocks(stripped: bytes, frame_format: FrameFormat) -> bytes:
    """Insert the CRC blocks of ``frame_format`` into a stripped frame (and fix L for B)."""
    if frame_format is FrameFormat.STRIPPED:
        return bytes(stripped)
    if frame_format is FrameFormat.A:
        blocks = [stripped[:FIRST_BLOCK]]
        blocks += [stripped[i : i + BLOCK_A] for i in range(FIRST_BLOCK, len(stripped), BLOCK_A)]
        return b"".join(block + crc_en13757(block).to_bytes(2, "big") for block in blocks)
    crcs = 1 if len(stripped) <= BLOCK_B_FIRST else 2
    length = len(stripped) - 1 + CRC_SIZE * crcs
    if length > MAX_L:
        raise ValueError(f"a format B frame of {len(stripped)} bytes does not fit the L-field")
    body = bytes([length]) + stripped[1:]
    first = body[:BLOCK_B_FIRST]
    out = first + crc_en13757(first).to_bytes(2, "big")
    if crcs == 2:
        rest = body[BLOCK_B_FIRST:]
        out += rest + crc_en13757(rest).to_bytes(2, "big")
    return out


def _crc_ok(data: bytes, start: int, end: int) -> bool:
    return crc_en13757(data[start:end]) == int.from_bytes(data[end : end + CRC_SIZE], "big")


def _check_crc(data: bytes, start: int, end: int, block: int) -> None:
    if _crc_ok(data, start, end):
        return
    expected = crc_en13757(data[start:end])
    got = int.from_bytes(data[end : end + CRC_SIZE], "big")
    raise MBusFrameError(f"CRC of block {block} is 0x{got:04X}, computed 0x{expected:04X}", offset=end, field="CRC")


def strip_crc_blocks(data: bytes, frame_format: FrameFormat) -> bytes:
    """Check and remove the CRC blocks of one whole frame; L becomes the stripped length.

    ``data`` must hold exactly one frame (see :func:`wire_length`). A failing CRC raises
    :class:`MBusFrameError` naming the block (1 = the first) and the CRC's offset.
    """
    if frame_format is FrameFormat.STRIPPED:
        return bytes(data)
    if frame_format is FrameFormat.A:
        out = bytearray()
        pos, block, size = 0, 1, FIRST_BLOCK
        while pos < len(data):
            end = min(pos + size, len(data) - CRC_SIZE)
            _check_crc(data, pos, end, block)
            out += data[pos:end]
            pos, block, size = end + CRC_SIZE, block + 1, BLOCK_A
        return bytes(out)
    first_end = min(len(data), BLOCK_B_FIRST + CRC_SIZE) - CRC_SIZE
    _check_crc(data, 0, first_end, 1)
    out = bytearray(data[:first_end])
    if len(data) > BLOCK_B_FIRST + CRC_SIZE:
        _check_crc(data, first_end + CRC_SIZE, len(data) - CRC_SIZE, 2)
        out += data[first_end + CRC_SIZE : len(data) - CRC_SIZE]
    out[0] = len(out) - 1
    return bytes(out)


def _format_b_crcs_match(data: bytes) -> bool:
    if len(data) <= BLOCK_B_FIRST + CRC_SIZE:
        return _crc_ok(data, 0, len(data) - CRC_SIZE)
    return _crc_ok(data, 0, BLOCK_B_FIRST) and _crc_ok(data, BLOCK_B_FIRST + CRC_SIZE, len(data) - CRC_SIZE)


def detect_frame_format(data: bytes) -> FrameFormat:
    """Tell how a frame arrived, where that is unambiguous; else ``STRIPPED``.

    Format A is taken when the length fits the L-field with CRC blocks and the first block's
    CRC matches (a stripped frame never has the format A length). Format B has the same
    length as a stripped frame, so it is taken only when all its CRCs match (a stripped frame
    ends in a matching CRC by chance once in 65536).
    """
    if len(data) < FIRST_BLOCK + CRC_SIZE:
        return FrameFormat.STRIPPED
    length = data[0]
    if len(data) == wire_length(length, FrameFormat.A) and _crc_ok(data, 0, FIRST_BLOCK):
        return FrameFormat.A
    if len(data) == length + 1 and _format_b_crcs_match(data):
        return FrameFormat.B
    return FrameFormat.STRIPPED


def decode_frame(
    data: bytes,
    *,
    frame_format: FrameFormat | str = FrameFormat.STRIPPED,
    keep_trailing: bool = False,
) -> WirelessFrame:
    """Decode exactly one frame given stripped (default), with A or B CRC blocks, or ``auto``.

    ``auto`` uses :func:`detect_frame_format`. Bytes after the frame's end are an error,
    unless ``keep_trailing``: then they are kept in :attr:`WirelessFrame.trailing` (some
    receivers append their own status bytes).
    """
    data = bytes(data)
    fmt = detect_frame_format(data) if frame_format == "auto" else FrameFormat(frame_format)
    if not data:
        raise MBusFrameError("empty frame", offset=0, field="L")
    length = data[0]
    if length < MIN_L:
        raise MBusFrameError(f"L-field {length} is below the minimum of {MIN_L} (C, M, A)", offset=0, field="L")
    if fmt is FrameFormat.B and length < MIN_L + CRC_SIZE:
        raise MBusFrameError(f"L-field {length} is too short for a format B frame", offset=0, field="L")
    size = wire_length(length, fmt)
    if len(data) < size:
        raise MBusFrameError(
            f"frame is truncated: {len(data)} bytes, the L-field ({length}) needs {size}"
            + ("" if fmt is FrameFormat.STRIPPED else f" with format {fmt.name} CRCs"),
            offset=len(data),
            field="L",
        )
    trailing = data[size:]
    if trailing and not keep_trailing:
        raise MBusFrameError(
            f"{len(trailing)} bytes after the frame's end (L-field {length}, format {fmt.value})",
            offset=size,
            field="L",
        )
    stripped = strip_crc_blocks(data[:size], fmt)
    return WirelessFrame(
        c=stripped[1],
        manufacturer=int.from_bytes(stripped[2:4], "little"),
        identification=stripped[4:8][::-1].hex(),
        version=stripped[8],
        device_type=stripped[9],
        ci=stripped[10] if len(stripped) > FIRST_BLOCK else None,
        data=stripped[FIRST_BLOCK + 1 :],
        frame_format=fmt,
        trailing=trailing,
    )


def c_mode_frame_format(sync: bytes) -> FrameFormat:
    """The frame format named by the C mode synchronisation a receiver reports.

    ``sync`` is the second synchronisation word (``54CD`` format A, ``543D`` format B), or
    both words (``543D54CD`` / ``543D543D``).
    """
    word = sync[2:4] if len(sync) == 4 and sync[:2] == C_MODE_SYNC else sync[:2]
    try:
        return C_MODE_FORMATS[bytes(word)]
    except KeyError:
        raise MBusFrameError(f"not a C mode synchronisation word: {bytes(sync).hex()}", offset=0, field="sync") from None


def frame_from_radio(mode: LinkMode | str, raw: bytes) -> WirelessFrame:
    """Decode a frame from the bits a raw receiver delivers after the synchronisation word.

    T1: 3-of-6 coded format A (decoded up to the length the L-field gives; the rest is
    postamble). C1: the second synchronisation word (2 bytes) then NRZ format A or B.
    S1: NRZ format A (the Manchester chips already resolved by the receiver).
    """
    mode = LinkMode(mode)
    if mode is LinkMode.T1:
        first = three_of_six.decode(raw[:2], 1)
        length = wire_length(first[0], FrameFormat.A)
        return decode_frame(three_of_six.decode(raw, length), frame_format=FrameFormat.A)
    if mode is LinkMode.C1:
        fmt = c_mode_frame_format(raw[:2])
        body = raw[2:]
        if not body:
            raise MBusFrameError("no frame after the synchronisation word", offset=2, field="L")
        return decode_frame(body[: wire_length(body[0], fmt)], frame_format=fmt)
    return decode_frame(raw[: wire_length(raw[0], FrameFormat.A)] if raw else raw, frame_format=FrameFormat.A)
