"""A-XDR Data (IEC 62056-6-2 4.1.5): every type encoded by hand from the Blue Book, round trips
of generated values, exact numbers, lengths, and malformed input refused with its offset."""

from __future__ import annotations

import math
import struct
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codecs.dlms.axdr import (
    BitString,
    CompactArray,
    Data,
    DataType,
    TypeDescription,
    decode_data,
    decode_length,
    encode_length,
    to_decimal,
)
from gateway.codecs.dlms.dates import CosemDate, CosemDateTime, CosemTime
from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError
from gateway.codecs.dlms.units import ScalerUnit, unit_symbol

from .strategies import data_values, has_nan

D = DataType

# (bytes, Data): the encodings written out from the type definitions.
KNOWN = [
    ("00", Data(D.NULL_DATA)),
    ("FF", Data(D.DONT_CARE)),
    ("0300", Data(D.BOOLEAN, False)),
    ("0301", Data(D.BOOLEAN, True)),
    ("040AB340", Data(D.BIT_STRING, BitString(10, b"\xb3\x40"))),
    ("05FFFFFFFE", Data(D.DOUBLE_LONG, -2)),
    ("0600BC614E", Data(D.DOUBLE_LONG_UNSIGNED, 12_345_678)),
    ("0903010203", Data(D.OCTET_STRING, b"\x01\x02\x03")),
    ("0A034C4E47", Data(D.VISIBLE_STRING, "LNG")),
    ("0C03C2B543", Data(D.UTF8_STRING, "µC")),
    ("0D42", Data(D.BCD, 0x42)),
    ("0F80", Data(D.INTEGER, -128)),
    ("108000", Data(D.LONG, -32768)),
    ("11FF", Data(D.UNSIGNED, 255)),
    ("12FFFF", Data(D.LONG_UNSIGNED, 65535)),
    ("148000000000000000", Data(D.LONG64, -(1 << 63))),
    ("15FFFFFFFFFFFFFFFF", Data(D.LONG64_UNSIGNED, (1 << 64) - 1)),
    ("161E", Data(D.ENUM, 30)),
    ("173F800000", Data(D.FLOAT32, 1.0)),
    ("18C000000000000000", Data(D.FLOAT64, -2.0)),
    ("1907E50C1F05173B3B63FF8800", Data(D.DATE_TIME, CosemDateTime(2021, 12, 31, 5, 23, 59, 59, 99, -120, 0))),
    ("19FFFFFFFFFFFFFFFFFF800000", Data(D.DATE_TIME, CosemDateTime(None, None, None, None, None, None, None,
                                                                   None, None, 0))),
    ("1A07E5FE0001", Data(D.DATE, CosemDate(2021, 0xFE, 0, 1))),
    ("1B0C00FFFF", Data(D.TIME, CosemTime(12, 0, None, None))),
    ("1CFF", Data(D.DELTA_INTEGER, -1)),
    ("21FFFFFFFF", Data(D.DELTA_DOUBLE_LONG_UNSIGNED, 0xFFFFFFFF)),
    ("0100", Data(D.ARRAY, ())),
    ("02021100120001", Data(D.STRUCTURE, (Data(D.UNSIGNED, 0), Data(D.LONG_UNSIGNED, 1)))),
    # compact-array of structure {unsigned, octet-string}: two elements, contents of 6 bytes.
    ("1302021109" "06" "0102AABB0300",
     Data(D.COMPACT_ARRAY, CompactArray(
         TypeDescription(D.STRUCTURE, 0, (TypeDescription(D.UNSIGNED), TypeDescription(D.OCTET_STRING))),
         (Data(D.STRUCTURE, (Data(D.UNSIGNED, 1), Data(D.OCTET_STRING, b"\xaa\xbb"))),
          Data(D.STRUCTURE, (Data(D.UNSIGNED, 3), Data(D.OCTET_STRING, b""))))))),
    # compact-array of array[2] of long-unsigned: one element.
    ("13010002120400010002",
     Data(D.COMPACT_ARRAY, CompactArray(
         TypeDescription(D.ARRAY, 2, (TypeDescription(D.LONG_UNSIGNED),)),
         (Data(D.ARRAY, (Data(D.LONG_UNSIGNED, 1), Data(D.LONG_UNSIGNED, 2))),)))),
]


@pytest.mark.parametrize("hexed,value", KNOWN, ids=[v.type.name for _, v in KNOWN])
def test_each_type_decodes_and_encodes_as_the_blue_book_defines_it(hexed, value):
    raw = bytes.fromhex(hexed)
    assert decode_data(raw) == value
    assert value.to_bytes() == raw


@pytest.mark.parametrize("hexed,value", KNOWN, ids=[v.type.name for _, v in KNOWN])
def test_each_type_truncated_anywhere_is_refused(hexed, value):
    raw = bytes.fromhex(hexed)
    for size in range(len(raw)):
        with pytest.raises(DLMSFrameError):
            decode_data(raw[:size])


@pytest.mark.parametrize("hexed,value", KNOWN, ids=[v.type.name for _, v in KNOWN])
def test_each_type_with_trailing_junk_is_refused_at_the_junk(hexed, value):
    raw = bytes.fromhex(hexed)
    with pytest.raises(DLMSFrameError, match="trailing") as info:
        decode_data(raw + b"\x00")
    assert info.value.offset == len(raw)


@given(data_values)
@settings(max_examples=400, deadline=None)
def test_generated_data_round_trips_exactly(value):
    raw = value.to_bytes()
    decoded = decode_data(raw)
    assert decoded.to_bytes() == raw
    if not has_nan(value):
        assert decoded == value


@given(st.binary(min_size=4, max_size=4))
def test_every_float32_bit_pattern_survives_a_round_trip_even_nan_payloads(raw):
    assert decode_data(b"\x17" + raw).to_bytes() == b"\x17" + raw


@given(st.binary(min_size=8, max_size=8))
def test_every_float64_bit_pattern_survives_a_round_trip(raw):
    assert decode_data(b"\x18" + raw).to_bytes() == b"\x18" + raw


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_decimal_is_the_shortest_text_that_reads_back_to_the_same_float(value):
    number = to_decimal(Data(D.FLOAT32, value))
    assert struct.unpack(">f", struct.pack(">f", float(number)))[0] == value
    if value and len(number.as_tuple().digits) > 1:
        shorter = f"{value:.{len(number.as_tuple().digits) - 1}g}"
        assert struct.unpack(">f", struct.pack(">f", float(shorter)))[0] != value


def test_reals_are_reported_with_their_exact_decimal_representation():
    assert to_decimal(decode_data(bytes.fromhex("173F8CCCCD"))) == Decimal("1.1")  # the float32 nearest 1.1
    assert to_decimal(Data(D.FLOAT64, 0.1)) == Decimal("0.1")
    assert to_decimal(decode_data(bytes.fromhex("177F7FFFFF"))) == Decimal("3.4028235E+38")  # float32 max
    assert to_decimal(Data(D.FLOAT32, 16777216.0)) == Decimal("16777216")
    assert to_decimal(Data(D.FLOAT32, math.inf)) == Decimal("Infinity")
    assert to_decimal(Data(D.FLOAT64, math.nan)).is_nan()


def test_integers_stay_integers_and_scale_exactly():
    value = decode_data(bytes.fromhex("0600BC614E"))
    assert type(value.value) is int
    scaler_unit = ScalerUnit.from_data(decode_data(bytes.fromhex("02020FFF161E")))
    assert scaler_unit == ScalerUnit(-1, 30) and scaler_unit.symbol == "Wh"
    assert scaler_unit.apply(value) == Decimal("1234567.8")
    assert str(ScalerUnit(3, 27).apply(Data(D.LONG, -5))) == "-5E+3"
    assert ScalerUnit(-2, 35).apply(Data(D.FLOAT32, 230.5)) == Decimal("2.305")
    assert to_decimal(Data(D.BCD, 0x42)) == 42
    with pytest.raises(DLMSError, match="bcd"):
        to_decimal(Data(D.BCD, 0x4A))
    with pytest.raises(DLMSError, match="not a number"):
        to_decimal(Data(D.OCTET_STRING, b""))


def test_scaling_is_exact_whatever_the_callers_decimal_context():
    with localcontext(prec=6):
        assert ScalerUnit(-3, 30).apply(Data(D.LONG64_UNSIGNED, (1 << 64) - 1)) == Decimal("18446744073709551.615")
        assert ScalerUnit(5, 30).apply(Data(D.FLOAT64, 1.2345678901234567)) == Decimal("123456.78901234567")


def test_scaler_unit_that_is_not_integer_and_enum_is_refused():
    with pytest.raises(DLMSError, match="scaler_unit"):
        ScalerUnit.from_data(Data(D.STRUCTURE, (Data(D.UNSIGNED, 1), Data(D.ENUM, 30))))
    assert ScalerUnit(0, 255).to_data() == decode_data(bytes.fromhex("02020F0016FF"))


def test_unit_table_has_the_blue_book_symbols_and_keeps_unknown_codes():
    assert [unit_symbol(c) for c in (30, 27, 35, 33, 13, 9, 32, 44, 56, 255)] == [
        "Wh", "W", "V", "A", "m^3", "°C", "varh", "Hz", "%", "count"]
    assert unit_symbol(99) == "unit-99"


@pytest.mark.parametrize("length", [0, 1, 127, 128, 255, 256, 65535, 65536, 0xFFFFFFFF])
def test_lengths_use_the_shortest_ber_form_and_read_back(length):
    raw = encode_length(length)
    assert decode_length(raw, 0) == (length, len(raw))
    assert len(raw) == (1 if length < 128 else 2 + (length > 255) + (length > 65535) + (length > 0xFFFFFF))


def test_long_form_lengths_where_short_would_do_are_accepted_and_normalised():
    # 09 81 02 AABB: an octet string of 2 with a one-byte long-form length.
    value = decode_data(bytes.fromhex("098102AABB"))
    assert value == Data(D.OCTET_STRING, b"\xaa\xbb")
    assert value.to_bytes() == bytes.fromhex("0902AABB")
    assert decode_data(bytes.fromhex("09840000000100")).value == b"\x00"


def test_non_canonical_true_is_accepted_as_true():
    assert decode_data(b"\x03\xff") == Data(D.BOOLEAN, True)


@pytest.mark.parametrize(
    "hexed,field,offset",
    [
        ("07", "Data tag", 0),  # tag 7 is not defined
        ("0980", "octet-string", 1),  # indefinite length
        ("0985", "octet-string", 1),  # 5 length bytes
        ("09850000000001", "octet-string", 1),
        ("0905AABB", "octet-string", 2),
        ("01051101", "array", 2),  # 5 items announced, 2 bytes left
        ("130700", "contents-description", 1),  # type 7 in a description
        ("1300", "contents-description", 2),  # null-data elements have no size
        ("1313", "contents-description", 1),  # compact-array in a compact-array
    ],
)
def test_malformed_data_is_refused_with_offset_and_field(hexed, field, offset):
    with pytest.raises(DLMSFrameError) as info:
        decode_data(bytes.fromhex(hexed))
    assert info.value.field == field
    assert info.value.offset == offset


def test_compact_array_whose_contents_end_inside_an_element_is_refused():
    with pytest.raises(DLMSFrameError, match="array-contents"):
        decode_data(bytes.fromhex("1312" "03" "000100"))


def test_compact_array_description_that_explodes_is_refused():
    # array[65535] of array[65535] of unsigned: 4 billion items per element.
    with pytest.raises(DLMSFrameError, match="too large"):
        decode_data(bytes.fromhex("1301FFFF01FFFF11" "01" "00"))


def test_data_nested_deeper_than_the_limit_is_refused_not_crashed():
    with pytest.raises(DLMSFrameError, match="nested"):
        decode_data(b"\x01\x01" * 200 + b"\x00")
    assert decode_data(b"\x01\x01" * 60 + b"\x00").to_bytes() == b"\x01\x01" * 60 + b"\x00"


def test_invalid_utf8_is_kept_as_raw_bytes_and_reencoded_byte_for_byte():
    raw = bytes.fromhex("0C02C328")
    assert decode_data(raw) == Data(D.UTF8_STRING, b"\xc3(")
    assert decode_data(raw).to_bytes() == raw


def test_invalid_utf8_in_one_element_leaves_the_other_elements_decoded():
    # A structure of a visible-string, a bad utf8-string ("A", 0xFF, "B") and a long-unsigned.
    raw = bytes.fromhex("0203" "0A024142" "0C0341FF42" "120102")
    data = decode_data(raw)
    assert data.value == (Data(D.VISIBLE_STRING, "AB"), Data(D.UTF8_STRING, b"A\xffB"), Data(D.LONG_UNSIGNED, 258))
    assert data.to_bytes() == raw


@given(st.binary(max_size=40))
def test_no_decoded_text_holds_a_lone_surrogate(payload):
    for tag in (D.UTF8_STRING, D.VISIBLE_STRING):
        value = decode_data(bytes((tag, len(payload))) + payload).value
        if isinstance(value, str):
            value.encode("utf-8")  # raises on a lone surrogate
        else:
            assert tag is D.UTF8_STRING and value == payload


def test_values_that_do_not_fit_their_type_cannot_be_encoded():
    with pytest.raises(ValueError):
        Data(D.UNSIGNED, 256).to_bytes()
    with pytest.raises(TypeError):
        Data(D.LONG, 1.5).to_bytes()
    with pytest.raises(ValueError):
        Data(D.NULL_DATA, 1).to_bytes()
    with pytest.raises(ValueError):
        BitString(9, b"\x00")


def test_bit_strings_read_as_bits():
    bits = BitString.from_bits("1011001101")
    assert bits == BitString(10, b"\xb3\x40")
    assert str(bits) == "1011001101" and bits[0] and not bits[1] and bits[9]
    assert str(BitString(0, b"")) == ""


def test_to_python_strips_the_tags():
    assert decode_data(bytes.fromhex("02021100120001")).to_python() == [0, 1]
    assert Data(D.COMPACT_ARRAY, CompactArray(TypeDescription(D.UNSIGNED), (Data(D.UNSIGNED, 7),))).to_python() == [7]
