"""The JSON form of COSEM Data: every type in and out, round trips of any Data (hypothesis),
and values that do not fit their type refused with where they are."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.dlms.axdr import (
    INTEGER_FORMATS,
    BitString,
    CompactArray,
    Data,
    DataType,
    TypeDescription,
    decode_data,
)
from gateway.codecs.dlms.dates import CosemDate, CosemDateTime, CosemTime
from gateway.operations.data_json import DataJsonError, data_from_json, data_to_json


def test_a_long_unsigned_and_a_structure_read_as_the_documentation_shows():
    assert data_from_json({"type": "long-unsigned", "value": 5}) == Data(DataType.LONG_UNSIGNED, 5)
    data = data_from_json({"type": "structure", "value": [{"type": "octet-string", "value": "0000010000ff"},
                                                          {"type": "double-long-unsigned", "value": 1024}]})
    assert data.to_bytes().hex() == "0202" + "09060000010000ff" + "0600000400"


def test_every_simple_type_is_written_in_its_documented_form():
    cases = [
        (Data(DataType.NULL_DATA), {"type": "null-data"}),
        (Data(DataType.BOOLEAN, True), {"type": "boolean", "value": True}),
        (Data(DataType.BIT_STRING, BitString.from_bits("0101")), {"type": "bit-string", "value": "0101"}),
        (Data(DataType.LONG64_UNSIGNED, 2**64 - 1), {"type": "long64-unsigned", "value": str(2**64 - 1)}),
        (Data(DataType.INTEGER, -5), {"type": "integer", "value": -5}),
        (Data(DataType.ENUM, 3), {"type": "enum", "value": 3}),
        (Data(DataType.OCTET_STRING, b"\x00\xff"), {"type": "octet-string", "value": "00ff"}),
        (Data(DataType.VISIBLE_STRING, "abc"), {"type": "visible-string", "value": "abc"}),
        (Data(DataType.UTF8_STRING, "Zähler"), {"type": "utf8-string", "value": "Zähler"}),
        (Data(DataType.FLOAT32, struct.unpack(">f", struct.pack(">f", 1.1))[0]), {"type": "float32", "value": "1.1"}),
        (Data(DataType.FLOAT64, 0.1), {"type": "float64", "value": "0.1"}),
        (Data(DataType.DATE, CosemDate(2026, 4, 1, 3)), {"type": "date", "value": "07ea040103"}),
    ]
    for data, document in cases:
        assert data_to_json(data) == document
        assert data_from_json(document) == data


def test_dates_and_times_are_also_read_from_iso_8601():
    moment = data_from_json({"type": "date-time", "value": "2026-04-01T06:30:00+02:00"})
    assert moment.value == CosemDateTime(2026, 4, 1, 3, 6, 30, 0, 0, -120, None)
    assert data_from_json({"type": "date", "value": "2026-04-01"}).value == CosemDate(2026, 4, 1, 3)
    assert data_from_json({"type": "time", "value": "06:30:00"}).value == CosemTime(6, 30, 0, 0)


def test_a_compact_array_and_a_nan_travel_in_the_raw_form():
    compact = Data(DataType.COMPACT_ARRAY, CompactArray(TypeDescription(DataType.UNSIGNED),
                                                        (Data(DataType.UNSIGNED, 1), Data(DataType.UNSIGNED, 2))))
    document = data_to_json(compact)
    assert document == {"type": "compact-array", "raw": compact.to_bytes().hex()}
    assert data_from_json(document) == compact
    nan = decode_data(bytes.fromhex("177fc00001"))
    assert "raw" in data_to_json(nan)
    assert data_from_json(data_to_json(nan)).to_bytes() == nan.to_bytes()


def test_any_data_may_be_given_raw():
    assert data_from_json({"raw": "120005"}) == Data(DataType.LONG_UNSIGNED, 5)


@pytest.mark.parametrize("document, path, reason", [
    ({"type": "unsigned", "value": 300}, "value", "does not fit"),
    ({"type": "structure", "value": [{"type": "long", "value": "x"}]}, "value[0].value", "an integer"),
    ({"type": "array", "value": [{"type": "nothing"}]}, "value[0].type", "unknown type"),
    ({"type": "octet-string", "value": "0g"}, "value", "octet-string"),
    ({"type": "boolean", "value": 1}, "value", "true or false"),
    ({"type": "null-data", "value": 1}, "value", "no value"),
    ({"type": "long", "value": 1, "scale": 2}, "", "unknown member 'scale'"),
    ({"raw": "1200"}, "raw", "A-XDR"),
    ({"raw": "120005", "type": "long"}, "type", "not a long"),
    ([1, 2], "", "an object"),
])
def test_values_that_cannot_be_data_are_refused_with_where_they_are(document, path, reason):
    with pytest.raises(DataJsonError, match=reason) as refused:
        data_from_json(document)
    assert refused.value.path == path


def _integers() -> st.SearchStrategy[Data]:
    def of(dtype: DataType) -> st.SearchStrategy[Data]:
        fmt = INTEGER_FORMATS[dtype]
        size = struct.calcsize(fmt)
        signed = fmt[-1].islower()
        low, high = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << 8 * size) - 1)
        return st.integers(low, high).map(lambda v: Data(dtype, v))
    return st.one_of(*(of(t) for t in INTEGER_FORMATS))


_leaves = st.one_of(
    _integers(),
    st.booleans().map(lambda b: Data(DataType.BOOLEAN, b)),
    st.binary(max_size=40).map(lambda b: Data(DataType.OCTET_STRING, b)),
    st.text(max_size=20).map(lambda t: Data(DataType.UTF8_STRING, t)),
    st.text(alphabet=st.characters(max_codepoint=255), max_size=20).map(lambda t: Data(DataType.VISIBLE_STRING, t)),
    st.text(alphabet="01", max_size=30).map(lambda b: Data(DataType.BIT_STRING, BitString.from_bits(b))),
    st.floats(allow_nan=False).map(lambda f: Data(DataType.FLOAT64, f)),
    st.floats(width=32, allow_nan=False).map(lambda f: Data(DataType.FLOAT32, f)),
    st.binary(min_size=12, max_size=12).map(lambda b: Data(DataType.DATE_TIME, CosemDateTime.from_bytes(b))),
    st.just(Data(DataType.NULL_DATA)),
)
_data = st.recursive(_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=5).map(lambda items: Data(DataType.ARRAY, tuple(items))),
    st.lists(inner, max_size=5).map(lambda items: Data(DataType.STRUCTURE, tuple(items)))), max_leaves=20)


@given(_data)
def test_every_data_survives_a_round_trip_through_json(data):
    back = data_from_json(data_to_json(data))
    assert back.to_bytes() == data.to_bytes()


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_a_float32_is_written_as_the_shortest_decimal_that_reads_back(value):
    text = data_to_json(Data(DataType.FLOAT32, value))["value"]
    assert struct.unpack(">f", struct.pack(">f", float(text)))[0] == value
    assert not math.isnan(float(text))
