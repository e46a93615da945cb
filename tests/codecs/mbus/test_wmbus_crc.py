"""The CRCs of wireless M-Bus (EN 13757-4) and of the IMST HCI (CRC-16/X-25)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.mbus.crc import EN13757_CHECK, X25_CHECK, crc_en13757, crc_x25


def bitwise_en13757(data: bytes) -> int:
    """The polynomial division one bit at a time, straight from the definition."""
    crc = 0
    for byte in data:
        for bit in range(7, -1, -1):
            feedback = ((crc >> 15) & 1) ^ ((byte >> bit) & 1)
            crc = (crc << 1) & 0xFFFF
            if feedback:
                crc ^= 0x3D65
    return crc ^ 0xFFFF


def bitwise_x25(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def test_en13757_crc_has_the_published_check_value():
    assert crc_en13757(b"123456789") == EN13757_CHECK == 0xC2B7


def test_x25_crc_has_the_published_check_value():
    assert crc_x25(b"123456789") == X25_CHECK == 0x906E


def test_crc_of_nothing_is_the_complemented_initial_value():
    assert crc_en13757(b"") == 0xFFFF
    assert crc_x25(b"") == 0x0000


@given(st.binary(max_size=300))
def test_table_driven_en13757_crc_equals_the_bitwise_definition(data):
    assert crc_en13757(data) == bitwise_en13757(data)


@given(st.binary(max_size=300))
def test_table_driven_x25_crc_equals_the_bitwise_definition(data):
    assert crc_x25(data) == bitwise_x25(data)


@given(st.binary(min_size=1, max_size=64), st.data())
def test_any_single_bit_flip_changes_the_en13757_crc(data, draw):
    bit = draw.draw(st.integers(0, len(data) * 8 - 1))
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert crc_en13757(bytes(flipped)) != crc_en13757(data)
