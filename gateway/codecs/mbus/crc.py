"""The CRCs of wireless M-Bus and of the radio dongles' serial framings.

* :func:`crc_en13757` — EN 13757-4 (clause 5.2.2, frame formats A and B), also used by
  EN 13757-7 / OMS for the ELL payload CRC, the compact-frame format signature and the
  compact-frame data CRC: polynomial x^16+x^13+x^12+x^11+x^10+x^8+x^6+x^5+x^2+1 (0x3D65),
  initial value 0, not reflected, final value complemented (XOR 0xFFFF).
  Check value CRC("123456789") = 0xC2B7. Transmitted most significant byte first.
* :func:`crc_x25` — the CRC-16 of the IMST WM-Bus HCI (iM871A, iU891A): CRC-CCITT, reflected
  (polynomial 0x1021, i.e. 0x8408 bit-reversed), initial value 0xFFFF, final XOR 0xFFFF;
  check value CRC("123456789") = 0x906E. Transmitted least significant byte first.

Both are table driven: a wireless M-Bus gateway checks one CRC per 16 bytes received.
"""

from __future__ import annotations

from gateway.codecs.dlms.hdlc import fcs16

EN13757_POLYNOMIAL = 0x3D65
EN13757_CHECK = 0xC2B7
X25_CHECK = 0x906E


def _msb_first_table(polynomial: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ polynomial) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_EN13757_TABLE = _msb_first_table(EN13757_POLYNOMIAL)


def crc_en13757(data: bytes | bytearray | memoryview) -> int:
    """The EN 13757-4 CRC of ``data`` (an int; on the wire it is sent big-endian)."""
    crc = 0
    table = _EN13757_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc ^ 0xFFFF


#: CRC-16/X-25, the same CRC as the HDLC frame check sequence of DLMS (one implementation).
crc_x25 = fcs16
