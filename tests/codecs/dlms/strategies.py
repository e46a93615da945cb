"""Hypothesis strategies for DLMS values and APDUs, shared by the DLMS codec tests."""

from __future__ import annotations

import math
import struct

from hypothesis import strategies as st

from gateway.codecs.dlms import services as sv
from gateway.codecs.dlms import xdlms
from gateway.codecs.dlms.axdr import (
    INTEGER_FORMATS,
    BitString,
    CompactArray,
    Data,
    DataType,
    TypeDescription,
)
from gateway.codecs.dlms.dates import CosemDate, CosemDateTime, CosemTime
from gateway.codecs.dlms.obis import Obis

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i8 = st.integers(-128, 127)


def _opt(strategy):
    return st.none() | strategy


def _not_utf8(raw: bytes) -> bool:
    """Bytes a utf8-string decodes to raw bytes (kept as such, not as text)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _int_range(fmt: str) -> tuple[int, int]:
    bits = struct.calcsize(fmt) * 8
    if fmt[-1].islower():
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


# 0xFF (and 0xFFFF, 0x8000) stand for "not specified": the classes use None for them.
byte_field = _opt(st.integers(0, 0xFE))
dates = st.builds(CosemDate, _opt(st.integers(0, 0xFFFE)), byte_field, byte_field, byte_field)
times = st.builds(CosemTime, byte_field, byte_field, byte_field, byte_field)
date_times = st.builds(
    CosemDateTime,
    _opt(st.integers(0, 0xFFFE)), byte_field, byte_field, byte_field,
    byte_field, byte_field, byte_field, byte_field,
    _opt(st.integers(-0x7FFF, 0x7FFF)), byte_field,
)
bit_strings = st.integers(0, 70).flatmap(
    lambda n: st.binary(min_size=(n + 7) // 8, max_size=(n + 7) // 8).map(lambda b: BitString(n, b))
)

_VALUES = {
    DataType.NULL_DATA: st.none(),
    DataType.DONT_CARE: st.none(),
    DataType.BOOLEAN: st.booleans(),
    DataType.BIT_STRING: bit_strings,
    DataType.OCTET_STRING: st.binary(max_size=300),
    DataType.VISIBLE_STRING: st.text(st.characters(max_codepoint=255), max_size=40),
    DataType.UTF8_STRING: st.text(max_size=40) | st.binary(max_size=40).filter(_not_utf8),
    DataType.FLOAT32: st.floats(width=32),
    DataType.FLOAT64: st.floats(),
    DataType.DATE_TIME: date_times,
    DataType.DATE: dates,
    DataType.TIME: times,
    **{t: st.integers(*_int_range(f)) for t, f in INTEGER_FORMATS.items()},
}
SIMPLE_TYPES = sorted(_VALUES)


def simple_data(types=SIMPLE_TYPES):
    return st.sampled_from(types).flatmap(lambda t: _VALUES[t].map(lambda v: Data(t, v)))


def _descriptions():
    leaf = st.sampled_from([t for t in SIMPLE_TYPES if t not in (DataType.NULL_DATA, DataType.DONT_CARE)]).map(
        TypeDescription
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda n, m: TypeDescription(DataType.ARRAY, n, (m,)), st.integers(1, 3), inner),
            st.lists(inner, min_size=1, max_size=3).map(lambda ms: TypeDescription(DataType.STRUCTURE, 0, tuple(ms))),
        ),
        max_leaves=5,
    )


def _element(description: TypeDescription):
    if description.type is DataType.ARRAY:
        return st.lists(_element(description.members[0]), min_size=description.count,
                        max_size=description.count).map(lambda items: Data(DataType.ARRAY, tuple(items)))
    if description.type is DataType.STRUCTURE:
        return st.tuples(*(_element(m) for m in description.members)).map(lambda items: Data(DataType.STRUCTURE, items))
    return _VALUES[description.type].map(lambda v: Data(description.type, v))


compact_arrays = _descriptions().flatmap(
    lambda d: st.lists(_element(d), max_size=5).map(
        lambda items: Data(DataType.COMPACT_ARRAY, CompactArray(d, tuple(items)))
    )
)

data_values = st.recursive(
    simple_data() | compact_arrays,
    lambda children: st.one_of(
        st.lists(children, max_size=6).map(lambda items: Data(DataType.ARRAY, tuple(items))),
        st.lists(children, max_size=6).map(lambda items: Data(DataType.STRUCTURE, tuple(items))),
    ),
    max_leaves=25,
)


def has_nan(data: Data) -> bool:
    value = data.value
    if data.type in (DataType.ARRAY, DataType.STRUCTURE):
        return any(has_nan(item) for item in value)
    if data.type is DataType.COMPACT_ARRAY:
        return any(has_nan(item) for item in value.elements)
    return isinstance(value, float) and math.isnan(value)


# --- APDUs -------------------------------------------------------------------------------

obis_codes = st.builds(Obis, u8, u8, u8, u8, u8, u8)
invokes = u8.map(sv.InvokeIdAndPriority)
attributes = st.builds(sv.AttributeDescriptor, u16, obis_codes, i8)
methods = st.builds(sv.MethodDescriptor, u16, obis_codes, i8)
accesses = _opt(st.builds(sv.SelectiveAccess, u8, data_values))
with_selection = st.builds(sv.AttributeWithSelection, attributes, accesses)
access_results = u8.map(sv.DataAccessResult)
action_results = u8.map(sv.ActionResult)
get_data_results = data_values | access_results
blocks = st.builds(sv.DataBlock, st.booleans(), u32, st.binary(max_size=200))
small_lists = dict(max_size=4)

def _paired(build, descriptors):
    """A with-list request: one value per descriptor."""
    pairs = st.lists(st.tuples(descriptors, data_values), **small_lists)
    return st.builds(lambda p, invoke: build(tuple(d for d, _ in p), tuple(v for _, v in p), invoke), pairs, invokes)


service_apdus = st.one_of(
    st.builds(sv.GetRequestNormal, attributes, accesses, invokes),
    st.builds(sv.GetRequestNext, u32, invokes),
    st.builds(sv.GetRequestWithList, st.lists(with_selection, **small_lists).map(tuple), invokes),
    st.builds(sv.GetResponseNormal, get_data_results, invokes),
    st.builds(sv.GetResponseWithDatablock, st.booleans(), u32, st.binary(max_size=200) | access_results, invokes),
    st.builds(sv.GetResponseWithList, st.lists(get_data_results, **small_lists).map(tuple), invokes),
    st.builds(sv.SetRequestNormal, attributes, data_values, accesses, invokes),
    st.builds(sv.SetRequestWithFirstDatablock, attributes, blocks, accesses, invokes),
    st.builds(sv.SetRequestWithDatablock, blocks, invokes),
    _paired(sv.SetRequestWithList, with_selection),
    st.builds(sv.SetRequestWithListAndFirstDatablock, st.lists(with_selection, **small_lists).map(tuple), blocks,
              invokes),
    st.builds(sv.SetResponseNormal, access_results, invokes),
    st.builds(sv.SetResponseDatablock, u32, invokes),
    st.builds(sv.SetResponseLastDatablock, access_results, u32, invokes),
    st.builds(sv.SetResponseLastDatablockWithList, st.lists(access_results, **small_lists).map(tuple), u32, invokes),
    st.builds(sv.SetResponseWithList, st.lists(access_results, **small_lists).map(tuple), invokes),
    st.builds(sv.ActionRequestNormal, methods, _opt(data_values), invokes),
    st.builds(sv.ActionRequestNextPblock, u32, invokes),
    _paired(sv.ActionRequestWithList, methods),
    st.builds(sv.ActionRequestWithFirstPblock, methods, blocks, invokes),
    st.builds(sv.ActionRequestWithListAndFirstPblock, st.lists(methods, **small_lists).map(tuple), blocks, invokes),
    st.builds(sv.ActionRequestWithPblock, blocks, invokes),
    st.builds(sv.ActionResponseNormal, action_results, _opt(get_data_results), invokes),
    st.builds(sv.ActionResponseWithPblock, blocks, invokes),
    st.builds(sv.ActionResponseWithList,
              st.lists(st.builds(sv.ActionResponseItem, action_results, _opt(get_data_results)),
                       **small_lists).map(tuple), invokes),
    st.builds(sv.ActionResponseNextPblock, u32, invokes),
    st.builds(sv.EventNotificationRequest, attributes, data_values, _opt(date_times)),
    st.builds(sv.DataNotification, u32, data_values, _opt(date_times)),
)

security_controls = st.sampled_from([0x10, 0x20, 0x30, 0x50, 0x60, 0x70])
other_apdus = st.one_of(
    st.builds(xdlms.InitiateRequest, st.integers(0, 0xFFFFFF), u16, u8, _opt(st.binary(min_size=16, max_size=16)),
              _opt(st.booleans()), _opt(i8)),
    st.builds(xdlms.InitiateResponse, st.integers(0, 0xFFFFFF), u16, u8, u16, _opt(i8)),
    st.builds(xdlms.ConfirmedServiceError, u8, u8, u8),
    st.builds(xdlms.ExceptionResponse, u8, st.integers(0, 5) | st.integers(7, 255)),
    st.builds(xdlms.ExceptionResponse, u8, st.just(6), u32),
    st.builds(xdlms.CipheredApdu, st.sampled_from(sorted(xdlms.CIPHERED_TAGS)), security_controls, u32,
              st.binary(max_size=100)),
    st.builds(xdlms.GeneralGloCiphering, st.binary(min_size=8, max_size=8), security_controls, u32,
              st.binary(max_size=100)),
    st.builds(xdlms.GeneralDedCiphering, st.binary(min_size=8, max_size=8), security_controls, u32,
              st.binary(max_size=100)),
    st.builds(xdlms.GeneralBlockTransfer, u16, u16, st.binary(max_size=100), st.booleans(), st.booleans(),
              st.integers(0, 63)),
)
