"""xDLMS APDUs (Green Book 9.5): every CHOICE alternative round trips, requests and responses alike
(the codec is symmetric: a client and a server use the same classes), and malformed ones are refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from gateway.codecs.dlms.apdu import UnsupportedApdu, decode_apdu
from gateway.codecs.dlms.axdr import Data, DataType
from gateway.codecs.dlms.errors import DLMSFrameError
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.selective import CaptureObject, EntryDescriptor, RangeDescriptor
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.services import (
    ActionRequestNormal,
    ActionResponseNormal,
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    GetResponseNormal,
    GetResponseWithDatablock,
    InvokeIdAndPriority,
    MethodDescriptor,
    SetRequestNormal,
    SetResponseNormal,
)
from gateway.codecs.dlms.xdlms import ExceptionResponse, GeneralBlockTransfer, GeneralGloCiphering

from .strategies import data_values, has_nan, other_apdus, service_apdus


def _contains_nan(apdu) -> bool:
    return "nan" in repr(apdu)


@given(service_apdus)
@settings(max_examples=500, deadline=None)
def test_every_service_apdu_round_trips(apdu):
    raw = apdu.to_bytes()
    decoded = decode_apdu(raw)
    assert decoded.to_bytes() == raw
    if not _contains_nan(apdu):
        assert decoded == apdu


@given(other_apdus)
@settings(max_examples=300, deadline=None)
def test_initiate_error_ciphered_and_block_transfer_apdus_round_trip(apdu):
    raw = apdu.to_bytes()
    assert decode_apdu(raw) == apdu
    assert decode_apdu(raw).to_bytes() == raw


def test_get_response_with_a_value_and_with_an_access_error():
    assert decode_apdu(bytes.fromhex("C401C1000600BC614E")) == GetResponseNormal(
        Data(DataType.DOUBLE_LONG_UNSIGNED, 12_345_678), InvokeIdAndPriority(0xC1))
    response = decode_apdu(bytes.fromhex("C401C10104"))
    assert response.result == DataAccessResult(4) and response.result.name == "object-undefined"
    assert not response.result.success


def test_get_response_block_carries_raw_data_or_the_reason_the_transfer_stopped():
    block = decode_apdu(bytes.fromhex("C402C10000000001000401020304"))
    assert block == GetResponseWithDatablock(False, 1, b"\x01\x02\x03\x04", InvokeIdAndPriority(0xC1))
    stopped = decode_apdu(bytes.fromhex("C402C101000000020113"))
    assert stopped.result.name == "data-block-number-invalid" and stopped.last_block


def test_set_and_action_normal_with_their_responses():
    clock = AttributeDescriptor(8, Obis(0, 0, 1, 0, 0, 255), 2)
    stamp = CosemDateTime(2024, 1, 1, 1, 0, 0, 0, 0, -60, 0)
    request = SetRequestNormal(clock, Data(DataType.OCTET_STRING, stamp.to_bytes()))
    assert request.to_bytes().hex() == "c101c100080000010000ff0200090c07e801010100000000ffc400"
    assert decode_apdu(bytes.fromhex("C501C100")) == SetResponseNormal(DataAccessResult(0))
    disconnect = MethodDescriptor(70, Obis(0, 0, 96, 3, 10, 255), 1)
    assert ActionRequestNormal(disconnect, Data(DataType.INTEGER, 0)).to_bytes().hex() == \
        "c301c100460000600 30aff01010f00".replace(" ", "")
    response = decode_apdu(bytes.fromhex("C701C10001000600000001"))
    assert response == ActionResponseNormal(ActionResult(0), Data(DataType.DOUBLE_LONG_UNSIGNED, 1))
    assert decode_apdu(bytes.fromhex("C701C10B00")).result.name == "object-unavailable"


def test_exception_response_names_and_invocation_counter():
    error = decode_apdu(bytes.fromhex("D80105"))
    assert error == ExceptionResponse(1, 5) and error.description == "service-not-allowed, deciphering-error"
    counter = decode_apdu(bytes.fromhex("D8010600001000"))
    assert counter.invocation_counter == 0x1000 and "invocation-counter-error" in counter.description


def test_general_glo_ciphering_and_gbt_decode():
    glo = decode_apdu(bytes.fromhex("DB08" "4D4D4D0000BC614E" "08" "30000000010102AA"))
    assert glo == GeneralGloCiphering(bytes.fromhex("4D4D4D0000BC614E"), 0x30, 1, b"\x01\x02\xaa")
    gbt = decode_apdu(bytes.fromhex("E0C10001000003AABBCC"))
    assert gbt == GeneralBlockTransfer(1, 0, b"\xaa\xbb\xcc", last_block=True, streaming=True, window=1)


def test_standard_apdus_not_modelled_are_kept_as_bytes():
    raw = bytes.fromhex("0501020203E8")  # SN readRequest
    apdu = decode_apdu(raw)
    assert apdu == UnsupportedApdu(raw) and apdu.name == "readRequest" and apdu.to_bytes() == raw


@pytest.mark.parametrize(
    "hexed,field,offset",
    [
        ("", "tag", 0),
        ("C0", "choice", 1),
        ("C004C1", "choice", 1),  # GET-Request has no choice 4
        ("C001C1000100002B0100FF0202", "access-selection", 12),  # presence flag 2
        ("C401C102", "Get-Data-Result", 3),
        ("C402C1000000000102", "DataBlock-G result", 8),
        ("0F000001DB05AABBCCDDEE00", "date-time", 5),  # a 5-byte date-time
        ("DB0201020330000000", "ciphered-content", 4),
        ("010000000006", "conformance", 5),
        ("0100000006600000000000000000", "conformance", 5),  # not 5F1F0400
        # SET-with-list: two attribute descriptors, one value; ACTION-with-list: two methods, one parameter.
        ("C104C102" + "0001" "0000280000FF" "0200" * 1 + "0001" "0000280000FF" "0200" + "011100", "value-list", 24),
        ("C303C102" + ("0009" "00000A0000FF" "01") * 2 + "011100", "method-invocation-parameters", 22),
    ],
)
def test_malformed_apdus_are_refused_with_field_and_offset(hexed, field, offset):
    with pytest.raises(DLMSFrameError) as info:
        decode_apdu(bytes.fromhex(hexed))
    assert (info.value.field, info.value.offset) == (field, offset)


def test_range_and_entry_descriptors_convert_both_ways():
    start = CosemDateTime(2024, 1, 1, None, 0, 0, 0, 0, None, None)
    end = CosemDateTime(2024, 1, 2, None, 0, 0, 0, 0, None, None)
    column = CaptureObject(3, Obis(1, 0, 1, 8, 0, 255), 2)
    selection = RangeDescriptor.by_time(start, end, (column,))
    assert RangeDescriptor.from_access(selection.to_access()) == selection
    entries = EntryDescriptor(10, 20, 1, 3)
    assert EntryDescriptor.from_access(entries.to_access()) == entries
    assert entries.to_access().to_bytes().hex() == "020204060000000a06000000141200011200 03".replace(" ", "")


@given(data_values)
@settings(max_examples=100, deadline=None)
def test_any_value_travels_in_a_get_response(value):
    raw = GetResponseNormal(value).to_bytes()
    decoded = decode_apdu(raw)
    assert decoded.to_bytes() == raw
    if not has_nan(value):
        assert decoded.result == value
