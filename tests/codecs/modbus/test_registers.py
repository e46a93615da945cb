"""Register decoding: every data type and order round-trips exactly (hypothesis), floats
come out as their shortest decimal, scaling is exact, markers of missing values are data."""

from __future__ import annotations

import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.modbus.errors import RegisterValueError
from gateway.codecs.modbus.registers import (
    DATA_TYPES,
    Decoded,
    decode_raw,
    decode_value,
    encode_raw,
    float32_decimal,
    scale_value,
    value_bytes,
)

ORDERS = st.sampled_from(["big", "little"])
INTEGER_TYPES = [t for t in DATA_TYPES.values() if not t.is_float]


def integers_of(data_type):
    bits = 16 * data_type.registers
    if data_type.signed:
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


@st.composite
def typed_integers(draw):
    data_type = draw(st.sampled_from(INTEGER_TYPES))
    return data_type, draw(integers_of(data_type))


@given(typed_integers(), ORDERS, ORDERS)
def test_every_integer_type_round_trips_through_registers_in_every_order(typed, word_order, byte_order):
    data_type, value = typed
    words = encode_raw(value, data_type, word_order, byte_order)
    assert len(words) == data_type.registers and all(0 <= w <= 0xFFFF for w in words)
    assert decode_raw(words, data_type, word_order, byte_order) == value
    assert decode_value(words, data_type, word_order=word_order, byte_order=byte_order) == Decoded(Decimal(value))


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), ORDERS, ORDERS)
def test_every_finite_float32_round_trips_and_reads_back_from_its_decimal(value, word_order, byte_order):
    words = encode_raw(value, DATA_TYPES["float32"], word_order, byte_order)
    decoded = decode_value(words, DATA_TYPES["float32"], word_order=word_order, byte_order=byte_order).value
    assert struct.pack(">f", float(decoded)) == struct.pack(">f", value)  # the same float32, sign of zero too


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_a_float32_decimal_is_the_shortest_correctly_rounded_one_that_reads_back(value):
    text = float32_decimal(value)
    digits = len(text.normalize().as_tuple().digits) if text else 1
    assert 1 <= digits <= 9
    if digits > 1:
        shorter = float(f"{value:.{digits - 1}g}")
        assert struct.pack(">f", shorter) != struct.pack(">f", value)


@given(st.floats(allow_nan=False, allow_infinity=False), ORDERS, ORDERS)
def test_every_finite_float64_comes_back_as_its_repr(value, word_order, byte_order):
    words = encode_raw(value, DATA_TYPES["float64"], word_order, byte_order)
    decoded = decode_value(words, DATA_TYPES["float64"], word_order=word_order, byte_order=byte_order).value
    assert decoded == Decimal(repr(value)) and float(decoded) == value


@pytest.mark.parametrize(("words", "expected"), [
    ((0x4366, 0x199A), "230.1"),        # 230.1 as float32: 0x4366199A
    ((0x4248, 0x0000), "50"),
    ((0x3F7D, 0x70A4), "0.99"),
    ((0xC2C8, 0x0000), "-100"),
    ((0x4B18, 0x9680), "10000000"),      # one significant digit, printed as repr would
    ((0x5A0E, 0x1BCA), "1E+16"),         # from 1e16 on with an exponent, as repr prints it
    ((0x3DCC, 0xCCCD), "0.1"),
    ((0x8000, 0x0000), "-0"),
    ((0x0000, 0x0001), "1E-45"),         # the smallest subnormal
    ((0x7F7F, 0xFFFF), "3.4028235E+38"),  # the largest float32
])
def test_known_float32_registers_give_the_meters_own_decimal(words, expected):
    decoded = decode_value(words, DATA_TYPES["float32"])
    assert decoded == Decoded(Decimal(expected)) and str(decoded.value) == expected


def test_the_binary_expansion_of_a_float32_is_not_what_is_reported():
    value = decode_value((0x4366, 0x199A), DATA_TYPES["float32"]).value
    assert value == Decimal("230.1") and Decimal(struct.unpack(">f", bytes.fromhex("4366199a"))[0]) != value


@pytest.mark.parametrize(("words", "word_order", "byte_order"), [
    ((0x1234, 0x5678), "big", "big"),      # ABCD
    ((0x5678, 0x1234), "little", "big"),   # CDAB
    ((0x3412, 0x7856), "big", "little"),   # BADC
    ((0x7856, 0x3412), "little", "little"),  # DCBA
])
def test_the_four_orders_of_a_32_bit_value_name_the_same_number(words, word_order, byte_order):
    assert value_bytes(words, word_order, byte_order) == bytes.fromhex("12345678")
    assert decode_raw(words, DATA_TYPES["uint32"], word_order, byte_order) == 0x12345678


@pytest.mark.parametrize(("raw", "factor", "expected"), [
    (23012, Decimal("0.01"), "230.12"),
    (12300, Decimal("0.01"), "123.00"),         # the meter's resolution is kept
    (-15, Decimal("0.1"), "-1.5"),
    (2**64 - 1, Decimal("0.01"), "184467440737095516.15"),  # beyond float and the default context
    (7, Decimal("1E+3"), "7E+3"),
    (5, None, "5"),
])
def test_scaling_is_exact_in_decimal(raw, factor, expected):
    result = scale_value(raw, factor)
    assert isinstance(result, Decimal) and result == Decimal(expected) and str(result) == expected


def test_an_unsigned_value_of_all_ones_is_not_available_when_the_map_says_so():
    assert decode_value((0xFFFF, 0xFFFF), DATA_TYPES["uint32"], not_available=0xFFFF) == Decoded(None, "not-available")
    assert decode_value((0xFFFF, 0xFFFF), DATA_TYPES["uint32"]) == Decoded(Decimal(0xFFFFFFFF))


def test_a_signed_value_of_all_ones_is_minus_one_even_with_a_marker():
    decoded = decode_value((0xFFFF,), DATA_TYPES["int16"], factor=Decimal("0.1"), not_available=0xFFFF)
    assert decoded == Decoded(Decimal("-0.1"))


@pytest.mark.parametrize(("words", "status"), [
    ((0x7FC0, 0x0000), "NaN"), ((0x7F80, 0x0000), "+Infinity"), ((0xFF80, 0x0000), "-Infinity")])
def test_a_float_that_is_no_number_has_no_value_and_says_why(words, status):
    assert decode_value(words, DATA_TYPES["float32"]) == Decoded(None, status)
    assert math.isnan(decode_raw((0x7FC0, 0x0000), DATA_TYPES["float32"]))


def test_the_wrong_number_of_registers_is_the_codecs_error():
    with pytest.raises(RegisterValueError, match="int32 takes 2 registers, got 1"):
        decode_raw((1,), DATA_TYPES["int32"])


def test_a_register_outside_sixteen_bits_is_the_codecs_error():
    with pytest.raises(RegisterValueError, match="a register holds 0..65535"):
        decode_raw((0x10000,), DATA_TYPES["uint16"])


def test_a_value_too_wide_for_its_type_is_the_codecs_error():
    with pytest.raises(RegisterValueError, match="does not fit int16"):
        encode_raw(40000, DATA_TYPES["int16"])
