"""The 3-out-of-6 code of wireless M-Bus mode T (EN 13757-4, clause 6.4.4, "T mode coding").

In mode T1 (meter to other) every data nibble is sent as a 6-chip code word with exactly three
ones, most significant nibble of each byte first, chips most significant first. Most radio
dongles decode this themselves; a raw receiver (an SDR, a CC1101 in raw mode) delivers the
chips packed into bytes, and :func:`decode` turns them back into data bytes.

A code word that is not in the table is a reception error: :func:`decode` raises
:class:`MBusFrameError` with the offset of the raw byte in which the bad word starts.
"""

from __future__ import annotations

from gateway.codecs.mbus.errors import MBusFrameError

#: EN 13757-4 table "3 out of 6 code": data nibble (index) to its 6-chip code word.
CODE_WORDS: tuple[int, ...] = (
    0b010110, 0b001101, 0b001110, 0b001011, 0b011100, 0b011001, 0b011010, 0b010011,
    0b101100, 0b100101, 0b100110, 0b100011, 0b110100, 0b110001, 0b110010, 0b101001,
)  # fmt: skip

#: The inverse table: 6-chip word to nibble, ``None`` for the 48 words that are not codes.
NIBBLES: tuple[int | None, ...] = tuple(CODE_WORDS.index(w) if w in CODE_WORDS else None for w in range(64))

#: Chips sent after an odd number of data bytes to fill the last raw byte: the T mode
#: postamble is a short run of alternating chips (EN 13757-4, clause 6.4.4).
_PAD = 0b0101


def encoded_length(data_bytes: int) -> int:
    """How many raw bytes carry ``data_bytes`` data bytes (12 chips per byte)."""
    return (data_bytes * 12 + 7) // 8


def encode(data: bytes) -> bytes:
    """Encode data bytes to chips packed into bytes (odd lengths padded with postamble chips)."""
    out = bytearray()
    acc = 0
    bits = 0
    for byte in data:
        acc = (acc << 12) | (CODE_WORDS[byte >> 4] << 6) | CODE_WORDS[byte & 0x0F]
        bits += 12
        while bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
        acc &= (1 << bits) - 1
    if bits:
        out.append(((acc << 4) | _PAD) & 0xFF)
    return bytes(out)


def decode(raw: bytes, count: int | None = None) -> bytes:
    """Decode ``count`` data bytes (default: as many as ``raw`` holds) from packed chips.

    Raises :class:`MBusFrameError` for a word outside the code table, with ``offset`` the raw
    byte where that word starts, and when ``raw`` is shorter than ``count`` bytes need.
    """
    available = len(raw) * 8 // 12
    if count is None:
        count = available
    elif count > available:
        raise MBusFrameError(
            f"{len(raw)} raw bytes hold {available} data bytes, need {count}", offset=len(raw), field="3-of-6"
        )
    out = bytearray(count)
    for index in range(count):
        bit = index * 12
        start = bit // 8
        chunk = int.from_bytes(raw[start : start + 3].ljust(3, b"\x00"), "big")
        word = (chunk >> (24 - (bit % 8) - 12)) & 0xFFF
        high = NIBBLES[word >> 6]
        low = NIBBLES[word & 0x3F]
        if high is None:
            raise MBusFrameError(f"invalid 3-of-6 code word 0b{word >> 6:06b}", offset=start, field="3-of-6")
        if low is None:
            raise MBusFrameError(
                f"invalid 3-of-6 code word 0b{word & 0x3F:06b}", offset=(bit + 6) // 8, field="3-of-6"
            )
        out[index] = (high << 4) | low
    return bytes(out)
