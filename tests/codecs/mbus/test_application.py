"""EN 13757-3 responses in whole frames: the five checks on captured frames, CI fields,
headers, the master's requests and RSP_UD encoding."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal, localcontext

import pytest

from gateway.codecs.mbus import link
from gateway.codecs.mbus.application import (
    ApplicationErrorResponse,
    FixedDataResponse,
    Header,
    SecondaryAddressMask,
    VariableDataResponse,
    application_reset,
    data_send,
    decode_response,
    decode_user_data,
    encode,
    req_ud2,
    response_to_json,
    select_secondary,
    set_primary_address,
    snd_nke,
)
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.records import encode_record, make_record

from .libmbus_corpus import APPLICATION_ERROR_FRAMES, TEST_FRAMES, UNSUPPORTED_FRAMES, frame_bytes

HEADER = Header("12345678", "KAM", 1, 0x04, access_number=7, status=0, signature=0)


def with_checksum(frame: bytearray) -> bytes:
    """A long frame whose L fields and checksum are made right again after a change."""
    length = len(frame) - 6
    frame[1] = frame[2] = length
    frame[-2] = sum(frame[4:-2]) & 0xFF
    return bytes(frame)


@pytest.mark.parametrize("path", TEST_FRAMES + APPLICATION_ERROR_FRAMES, ids=lambda p: p.stem)
def test_captured_frame_decodes_whole_and_with_trailing_junk_is_rejected(path):
    raw = frame_bytes(path)
    decode_response(raw)
    with pytest.raises(MBusFrameError, match="trailing") as info:
        decode_response(raw + b"\x16")
    assert info.value.offset == len(raw)


@pytest.mark.parametrize("path", TEST_FRAMES, ids=lambda p: p.stem)
def test_a_flipped_byte_is_caught_by_the_checksum(path):
    raw = bytearray(frame_bytes(path))
    raw[len(raw) // 2] ^= 0x10
    with pytest.raises(MBusFrameError) as info:
        decode_response(bytes(raw))
    assert info.value.field == "CS"


@pytest.mark.parametrize("path", TEST_FRAMES, ids=lambda p: p.stem)
def test_every_flipped_application_byte_with_a_good_checksum_gives_a_specific_error_or_data(path):
    raw = frame_bytes(path)
    for position in range(6, len(raw) - 2):
        for flip in (0x01, 0xFF):
            frame = bytearray(raw)
            frame[position] ^= flip
            try:
                decoded = decode_response(with_checksum(frame))
            except MBusFrameError as exc:
                assert exc.reason and exc.offset is not None and 0 <= exc.offset <= len(raw)
            else:
                json.dumps(response_to_json(decoded.response, decoded.frame))


VARIABLE_FRAMES = [p for p in TEST_FRAMES if frame_bytes(p)[6] == 0x72]


@pytest.mark.parametrize("path", VARIABLE_FRAMES, ids=lambda p: p.stem)
def test_a_flipped_first_dif_changes_the_data_or_is_rejected_with_its_offset(path):
    raw = frame_bytes(path)
    frame = bytearray(raw)
    frame[19] ^= 0x0F  # the first DIF: another data field coding
    try:
        decoded = decode_response(with_checksum(frame)).response
    except MBusFrameError as exc:
        assert exc.offset >= 19
    else:
        original = decode_response(raw).response
        assert decoded.records != original.records


@pytest.mark.parametrize("path", TEST_FRAMES, ids=lambda p: p.stem)
def test_captured_frames_reencode_to_the_same_user_data(path):
    raw = frame_bytes(path)
    decoded = decode_response(raw)
    response = decoded.response
    if isinstance(response, FixedDataResponse):
        assert response.to_user_data() == decoded.frame.user_data
        return
    # Idle fillers (DIF 0x2F) carry nothing and are not reproduced.
    expected = decoded.frame.user_data[:13] + b"".join(r.raw for r in response.records)
    if response.manufacturer_data is not None:
        expected += bytes([0x1F if response.more_records_follow else 0x0F]) + response.manufacturer_data
    assert response.to_user_data() == expected
    for record in response.records:
        assert encode_record(record) == record.raw


def test_captured_frames_decode_to_the_same_values_whatever_the_callers_decimal_context():
    frames = [frame_bytes(path) for path in TEST_FRAMES]
    expected = [response_to_json(decode_response(raw).response) for raw in frames]
    with localcontext(prec=3):
        assert [response_to_json(decode_response(raw).response) for raw in frames] == expected


@pytest.mark.parametrize("path", VARIABLE_FRAMES, ids=lambda p: p.stem)
def test_encode_builds_the_rsp_ud_frame_back(path):
    decoded = decode_response(frame_bytes(path))
    response = decoded.response
    frame = encode(
        response.header, response.records, address=decoded.frame.a, more_records_follow=response.more_records_follow,
        manufacturer_data=response.manufacturer_data, access_demand=bool(decoded.frame.c & link.C_ACD),
    )
    again = decode_response(frame)
    assert (again.frame.a, again.frame.control.acd) == (decoded.frame.a, decoded.frame.control.acd)
    assert again.response.header == response.header
    assert (again.response.more_records_follow, again.response.manufacturer_data) == (
        response.more_records_follow, response.manufacturer_data
    )
    assert [(r.value, r.quantity, r.storage) for r in again.response.records] == [
        (r.value, r.quantity, r.storage) for r in response.records
    ]


@pytest.mark.parametrize("path", APPLICATION_ERROR_FRAMES, ids=lambda p: p.stem)
def test_application_errors_reencode(path):
    decoded = decode_response(frame_bytes(path))
    frame = decoded.frame
    data = frame.data if isinstance(frame, link.LongFrame) else b""
    assert decoded.response.to_user_data() == bytes([frame.ci]) + data


def test_application_error_without_code_is_unspecified():
    response = decode_user_data(b"\x70")
    assert isinstance(response, ApplicationErrorResponse)
    assert (response.code, response.text) == (None, "Unspecified error")
    assert decode_user_data(b"\x70\x0a").text == "Unknown error (0x0A)"


def test_header_fields_of_a_long_header():
    response = decode_response(frame_bytes(TEST_FRAMES[0])).response
    header = response.header
    assert (header.identification, header.manufacturer, header.version, header.medium) == ("11490378", "ACW", 14, 0x16)
    assert (header.medium_name, header.access_number, header.status, header.signature) == ("Cold water", 10, 0, 0)


def test_short_header_and_no_header_structures():
    record = make_record(0x13, Decimal("1.234"))
    short = decode_user_data(bytes([0x7A, 5, 0x10, 0x00, 0x05]) + record.raw, offset=10)
    assert isinstance(short, VariableDataResponse)
    assert (short.header.access_number, short.header.status, short.header.signature) == (5, 0x10, 0x0500)
    assert short.header.identification is None and short.records[0].offset == 15
    bare = decode_user_data(bytes([0x78]) + record.raw)
    assert bare.records[0].value == Decimal("1.234") and bare.to_user_data() == bytes([0x78]) + record.raw


def test_mode_2_reads_numbers_most_significant_byte_first():
    header = bytes.fromhex("12345678") + bytes.fromhex("2C2D") + bytes([1, 4, 0, 0]) + b"\x00\x00"
    response = decode_user_data(bytes([0x76]) + header + bytes.fromhex("04 13 00 00 04 D2") + bytes.fromhex("04 6D 17 E9 95 21"))
    assert response.header.identification == "12345678" and response.header.manufacturer == "KAM"
    assert response.records[0].value == Decimal("1.234")
    assert response.records[1].value == datetime(2015, 7, 9, 21, 33) and response.records[1].summer_time


@pytest.mark.parametrize(
    ("user_data", "reason", "field"),
    [
        ("", "no CI field", "CI"),
        ("51 01 7A 08", r"CI 0x51 \(data send\) is sent by a master", "CI"),
        ("A0 00", "unsupported CI field 0xA0", "CI"),
        ("72 78 56", r"variable data header \(long\) too short", "header"),
        ("7A 01", r"variable data header \(short\) too short", "header"),
    ],
)
def test_user_data_that_is_no_response_is_rejected(user_data, reason, field):
    with pytest.raises(MBusFrameError, match=reason) as info:
        decode_user_data(bytes.fromhex(user_data))
    assert info.value.field == field


def test_a_short_frame_or_ack_is_no_response():
    with pytest.raises(MBusFrameError, match="ShortFrame carries no application data"):
        decode_response(snd_nke(1))
    with pytest.raises(MBusFrameError, match="SingleCharacter carries no application data"):
        decode_response(b"\xe5")


def test_encode_and_decode_a_response_built_from_values():
    records = [
        make_record(0x04, Decimal(123450)),
        make_record(0x13, Decimal("17.5"), data_field=0xC, storage=1),
        make_record(0x6D, datetime(2024, 5, 1, 12, 0), summer_time=True),
        make_record(0xFD, "SN-42", vife=(0x0C,)),
    ]
    frame = encode(HEADER, records, address=5, manufacturer_data=b"\x01\x02")
    decoded = decode_response(frame)
    assert decoded.frame.a == 5 and decoded.frame.control.function == "RSP_UD"
    response = decoded.response
    assert response.header == HEADER
    assert [r.value for r in response.records] == [Decimal(123450), Decimal("17.5"), datetime(2024, 5, 1, 12, 0), "SN-42"]
    assert response.records[1].storage == 1 and response.records[2].summer_time is True
    assert response.manufacturer_data == b"\x01\x02"


# --- the master's requests -------------------------------------------------------------------


def test_snd_nke_and_req_ud2_with_the_frame_count_bit():
    assert snd_nke(5) == bytes.fromhex("10 40 05 45 16")
    assert req_ud2(1, fcb=False) == bytes.fromhex("10 5B 01 5C 16")
    assert req_ud2(1, fcb=True) == bytes.fromhex("10 7B 01 7C 16")


def test_set_primary_address_is_ci_51_with_bus_address_record():
    manual_frame4 = next(p for p in UNSUPPORTED_FRAMES if p.stem == "manual_frame4")
    assert set_primary_address(0xFE, 8) == frame_bytes(manual_frame4)
    with pytest.raises(ValueError):
        set_primary_address(1, 251)


def test_application_reset_with_and_without_subcode():
    # manual_frame1 of the corpus is this frame with its first digit lost.
    assert application_reset(0xFE, 0x10) == bytes.fromhex("68 04 04 68 53 FE 50 10 B1 16")
    assert application_reset(1) == link.ControlFrame(0x53, 1, 0x50).to_bytes()


@pytest.mark.parametrize("name", ["manual_frame5", "manual_frame6"])
def test_data_send_carries_records_as_the_captured_master_frames(name):
    raw = frame_bytes(next(p for p in UNSUPPORTED_FRAMES if p.stem == name))
    frame = link.decode_frame(raw)
    records = decode_user_data(b"\x78" + frame.data).records
    assert data_send(0xFE, records) == raw


def test_secondary_selection_with_wildcards():
    mask = SecondaryAddressMask("1234FFFF", "KAM")
    frame = select_secondary(mask)
    assert frame == bytes.fromhex("68 0B 0B 68 53 FD 52 FF FF 34 12 2D 2C FF FF") + bytes([(0x53 + 0xFD + 0x52 + 0xFF * 4 + 0x34 + 0x12 + 0x2D + 0x2C) & 0xFF, 0x16])
    parsed = SecondaryAddressMask.from_bytes(link.decode_frame(frame).data)
    assert parsed == mask
    assert mask.matches(HEADER)
    assert not SecondaryAddressMask("1234FFFF", "ELS").matches(HEADER)
    assert not SecondaryAddressMask("9FFFFFFF").matches(HEADER)
    assert SecondaryAddressMask(medium=4, version=1).matches(HEADER)
