"""RTU read transactions: requests as published, responses found five ways (decoded and
compared, re-encoded by pymodbus's server side to the same bytes, byte by byte, with
junk around them, with a flipped byte), echo and other units' frames skipped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.modbus.errors import ModbusExceptionResponse, ModbusFrameError
from gateway.codecs.modbus.rtu import ExceptionReply, ReadRequest, RegistersReply, ResponseReader


def crc16(data: bytes) -> bytes:
    """CRC-16/MODBUS as Modbus over Serial Line V1.02, 6.2.2 describes it bit by bit
    (independent of pymodbus's table): low byte first on the wire."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def framed(hex_text: str) -> bytes:
    body = bytes.fromhex(hex_text)
    return body + crc16(body)


# Published examples (simplymodbus.ca, "Modbus Function Code 03/04"): slave 0x11.
HOLDING_REQUEST = ReadRequest(0x11, 3, 0x006B, 3)
HOLDING_REQUEST_BYTES = bytes.fromhex("11 03 00 6B 00 03 76 87")
HOLDING_RESPONSE = bytes.fromhex("11 03 06 AE 41 56 52 43 40 49 AD")
INPUT_REQUEST = ReadRequest(0x11, 4, 0x0008, 1)
INPUT_REQUEST_BYTES = bytes.fromhex("11 04 00 08 00 01 B2 98")
INPUT_RESPONSE = bytes.fromhex("11 04 02 00 0A F8 F4")

CAPTURED = [
    (HOLDING_REQUEST, HOLDING_RESPONSE, RegistersReply(0x11, 3, (0xAE41, 0x5652, 0x4340), HOLDING_RESPONSE)),
    (INPUT_REQUEST, INPUT_RESPONSE, RegistersReply(0x11, 4, (0x000A,), INPUT_RESPONSE)),
    (INPUT_REQUEST, framed("11 84 02"), ExceptionReply(0x11, 4, 2, framed("11 84 02"))),
]
IDS = ["holding", "input", "exception"]


def read_all(request: ReadRequest, *chunks: bytes):
    reader = ResponseReader(request)
    for chunk in chunks:
        reader.receive_data(chunk)
    return reader.next_reply(), reader


@pytest.mark.parametrize(("request_, wire"), [(HOLDING_REQUEST, HOLDING_REQUEST_BYTES),
                                              (INPUT_REQUEST, INPUT_REQUEST_BYTES)], ids=["holding", "input"])
def test_a_read_request_is_the_published_frame(request_, wire):
    assert request_.to_bytes() == wire
    assert crc16(wire[:-2]) == wire[-2:]


@pytest.mark.parametrize(("request_", "wire", "expected"), CAPTURED, ids=IDS)
def test_a_published_response_decodes_to_its_registers(request_, wire, expected):
    reply, reader = read_all(request_, wire)
    assert reply == expected and reader.buffered == reader.skipped == 0


@pytest.mark.parametrize(("request_", "wire", "expected"), CAPTURED, ids=IDS)
def test_a_response_re_encoded_by_pymodbus_server_side_gives_the_same_bytes(request_, wire, expected):
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU, ExceptionResponse
    from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

    if isinstance(expected, ExceptionReply):
        pdu = ExceptionResponse(expected.function, expected.code, device_id=expected.unit)
    else:
        kind = ReadHoldingRegistersResponse if expected.function == 3 else ReadInputRegistersResponse
        pdu = kind(registers=list(expected.registers), dev_id=expected.unit)
    assert FramerRTU(DecodePDU(is_server=True)).buildFrame(pdu) == wire


@pytest.mark.parametrize(("request_", "wire", "expected"), CAPTURED, ids=IDS)
def test_a_response_fed_byte_by_byte_needs_more_data_until_its_last_byte(request_, wire, expected):
    reader = ResponseReader(request_)
    for byte in wire[:-1]:
        reader.receive_data(bytes([byte]))
        assert reader.next_reply() is None
    reader.receive_data(wire[-1:])
    assert reader.next_reply() == expected


@pytest.mark.parametrize(("request_", "wire", "expected"), CAPTURED, ids=IDS)
def test_a_response_with_junk_before_and_after_is_found_and_the_junk_counted(request_, wire, expected):
    reply, reader = read_all(request_, b"\x00\xff" + wire + b"\x55\x13")
    assert reply == expected
    assert reader.skipped == 2 and reader.buffered == 2


@pytest.mark.parametrize(("request_", "wire", "expected"), CAPTURED, ids=IDS)
@pytest.mark.parametrize("position", range(11))
def test_a_response_with_a_flipped_byte_is_no_frame_and_an_error_once_the_line_is_quiet(request_, wire, expected,
                                                                                        position):
    position %= len(wire)
    broken = bytearray(wire)
    broken[position] ^= 0x5A
    reply, reader = read_all(request_, bytes(broken))
    assert reply is None
    with pytest.raises(ModbusFrameError, match=r"no valid response frame in the \d+ bytes received") as info:
        reader.end_of_input()
    assert info.value.field == "CRC"


def test_the_request_echoed_by_an_adapter_is_dropped():
    reply, reader = read_all(INPUT_REQUEST, INPUT_REQUEST_BYTES, INPUT_RESPONSE)
    assert reply.registers == (0x000A,) and reader.skipped == len(INPUT_REQUEST_BYTES)


def test_a_late_reply_of_another_unit_is_skipped():
    other = framed("12 04 02 12 34")
    reply, reader = read_all(INPUT_REQUEST, other + INPUT_RESPONSE)
    assert reply.unit == 0x11 and reader.skipped == len(other)


def test_registers_that_look_like_a_frame_are_not_taken_for_one_while_the_response_arrives():
    wire = framed("01 03 06 FF FF 00 00 00 00")  # FF FF 00 00 00 inside: an exception frame with a good CRC
    reader = ResponseReader(ReadRequest(1, 3, 0, 3))
    reader.receive_data(wire[:8])
    assert reader.next_reply() is None and (reader.buffered, reader.skipped) == (8, 0)
    reader.receive_data(wire[8:])
    assert reader.next_reply() == RegistersReply(1, 3, (0xFFFF, 0, 0), wire)


def test_an_answer_with_another_function_is_a_frame_error():
    with pytest.raises(ModbusFrameError, match="unit 17 answered function 3 to read input registers 0x0008\\+1"):
        read_all(INPUT_REQUEST, framed("11 03 02 00 0A"))


def test_an_answer_with_the_wrong_number_of_registers_is_a_frame_error():
    with pytest.raises(ModbusFrameError, match="returned 2 registers to read input registers 0x0008\\+1") as info:
        read_all(INPUT_REQUEST, framed("11 04 04 00 0A 00 0B"))
    assert info.value.field == "byte count"


def test_silence_is_no_error_of_the_codec():
    ResponseReader(INPUT_REQUEST).end_of_input()


def test_an_exception_reply_becomes_an_error_naming_the_exception():
    reply, _ = read_all(INPUT_REQUEST, framed("11 84 02"))
    error = reply.error(INPUT_REQUEST)
    assert isinstance(error, ModbusExceptionResponse) and (error.code, error.name) == (2, "ILLEGAL DATA ADDRESS")
    assert str(error) == ("unit 17 refused read input registers 0x0008+1: exception 2 ILLEGAL DATA ADDRESS "
                          "at field exception code")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"unit": 0, "function": 3, "address": 0, "count": 1}, "a unit address is 1..247, got 0"),
    ({"unit": 248, "function": 3, "address": 0, "count": 1}, "a unit address is 1..247, got 248"),
    ({"unit": 1, "function": 6, "address": 0, "count": 1}, "function must be 3"),
    ({"unit": 1, "function": 3, "address": 0, "count": 126}, "cannot read 126 registers from 0x0000"),
    ({"unit": 1, "function": 3, "address": 0xFFFF, "count": 2}, "cannot read 2 registers from 0xFFFF"),
])
def test_a_request_the_standard_does_not_allow_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReadRequest(**kwargs)


@given(st.integers(1, 247), st.sampled_from([3, 4]), st.integers(1, 125), st.data())
def test_any_registers_a_unit_returns_are_found_whole_in_any_chunking(unit, function, count, data):
    address = data.draw(st.integers(0, 0x10000 - count))
    registers = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))
    request = ReadRequest(unit, function, address, count)
    wire = framed(f"{unit:02x}{function:02x}{2 * count:02x}" + "".join(f"{r:04x}" for r in registers))
    assert len(request.to_bytes()) == 8 and request.response_length == len(wire)
    cuts = sorted(data.draw(st.lists(st.integers(1, len(wire) - 1), max_size=5, unique=True)))
    reader = ResponseReader(request)
    replies = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)]):
        reader.receive_data(wire[start:end])
        replies.append(reader.next_reply())
    assert replies[:-1] == [None] * len(cuts)
    assert replies[-1] == RegistersReply(unit, function, tuple(registers), wire)
