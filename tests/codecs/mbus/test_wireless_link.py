"""EN 13757-4 link layer: every corpus telegram, frame formats A and B, CRC errors by block."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.mbus.crc import crc_en13757
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import (
    FrameFormat,
    LinkMode,
    WirelessFrame,
    add_crc_blocks,
    c_field_function,
    c_mode_frame_format,
    decode_frame,
    detect_frame_format,
    frame_from_radio,
    strip_crc_blocks,
    wire_length,
)

from .wmbus_corpus import is_hex, telegrams, wireless

ALL = wireless()
#: Telegrams of the corpus that are not one whole frame, and why (by corpus record id).
BROKEN = {
    "simulation:simulations/simulation_broken.txt:3": "format A frame with its last CRC byte missing",
}
WITH_TRAILING_BYTES = {
    "driver-cc:src/driver_qwater.cc:150": 4,
    "simulation:simulations/simulation_log_test.txt:17": 3,
}


def decoded(telegram) -> WirelessFrame:
    return decode_frame(telegram.data, frame_format="auto", keep_trailing=True)


def test_the_corpus_has_its_telegrams():
    assert len(telegrams()) == 559
    assert len(ALL) == 559 - 41 - 1  # 41 wired frames, 1 record with a broken hex string
    assert [t.id for t in telegrams() if not is_hex(t.hex)] == ["driver-xmq:drivers/src/qwaterv2.xmq:276#0"]


@pytest.mark.parametrize("telegram", ALL, ids=lambda t: t.id)
def test_every_corpus_telegram_parses_at_the_link_layer_as_the_corpus_analysis_says(telegram):
    if telegram.record["id"] in BROKEN:
        with pytest.raises(MBusFrameError, match="CRC|truncated"):
            decode_frame(telegram.data, frame_format=FrameFormat.A)
        return
    frame = decoded(telegram)
    facts = telegram.analysis
    assert frame.manufacturer_code == facts["manufacturer"]
    assert frame.identification == facts["dll_id"].lower()
    assert frame.version == facts["dll_version"]
    assert frame.device_type == int(facts["dll_type"], 16)
    assert frame.c == int(facts["c_field"], 16)
    assert len(frame.trailing) == WITH_TRAILING_BYTES.get(telegram.record["id"], 0)


@pytest.mark.parametrize("telegram", ALL, ids=lambda t: t.id)
def test_every_corpus_frame_reencodes_and_decodes_the_same_with_format_a_and_b_crcs(telegram):
    if telegram.record["id"] in BROKEN:
        return
    frame = decoded(telegram)
    stripped = frame.to_bytes()
    assert stripped[0] == len(stripped) - 1
    for fmt in (FrameFormat.A, FrameFormat.B):
        if fmt is FrameFormat.B and len(stripped) + 4 > 256:
            continue
        on_air = frame.to_bytes(fmt)
        again = decode_frame(on_air, frame_format=fmt)
        assert again.to_bytes() == stripped
        assert decode_frame(on_air, frame_format="auto").frame_format is fmt
        assert strip_crc_blocks(on_air, fmt) == stripped


def test_stripped_corpus_frames_reencode_to_the_same_bytes():
    for telegram in ALL:
        frame = decoded(telegram)
        if frame.frame_format is FrameFormat.STRIPPED and not frame.trailing:
            assert frame.to_bytes() == telegram.data, telegram.id


def test_the_corpus_holds_real_format_a_and_format_b_captures():
    formats = {t.record["id"]: decoded(t).frame_format for t in ALL if t.record["id"] not in BROKEN}
    assert formats["driver-xmq:drivers/src/hcae2.xmq:265"] is FrameFormat.B  # C1, one CRC
    assert formats["driver-xmq:drivers/src/hcae2.xmq:272"] is FrameFormat.B  # C1, two CRCs
    assert formats["simulation:simulations/simulation_dll_crcs.txt:2"] is FrameFormat.A
    assert sum(f is FrameFormat.STRIPPED for f in formats.values()) == len(formats) - 4


@pytest.mark.parametrize("telegram", ALL[::7], ids=lambda t: t.id)
def test_a_flipped_byte_in_a_format_a_frame_is_a_crc_error_naming_its_block(telegram):
    on_air = decoded(telegram).to_bytes(FrameFormat.A)
    for position in range(len(on_air)):
        if position == 0:
            continue  # the L-field: changes the length, not a CRC
        broken = bytearray(on_air)
        broken[position] ^= 0x10
        with pytest.raises(MBusFrameError) as info:
            decode_frame(bytes(broken), frame_format=FrameFormat.A)
        assert info.value.field == "CRC"
        block = 1 if position < 12 else 2 + (position - 12) // 18
        assert f"block {block} " in info.value.reason
        crc_offset = 10 if block == 1 else 12 + (block - 2) * 18 + min(16, len(on_air) - 2 - (12 + (block - 2) * 18))
        assert info.value.offset == crc_offset


def test_a_flipped_byte_in_each_block_of_a_long_format_b_frame_names_that_block():
    long_b = next(t for t in ALL if t.record["id"] == "driver-xmq:drivers/src/hcae2.xmq:272").data
    for position, block, crc_at in ((5, 1, 126), (125, 1, 126), (130, len(long_b) and 2, len(long_b) - 2)):
        broken = bytearray(long_b)
        broken[position] ^= 0x01
        with pytest.raises(MBusFrameError) as info:
            decode_frame(bytes(broken), frame_format=FrameFormat.B)
        assert (info.value.field, info.value.offset) == ("CRC", crc_at)
        assert f"block {block} " in info.value.reason


def test_the_oms_frame_format_b_example_checks_and_its_l_field_shrinks_when_stripped():
    on_air = bytes.fromhex("1444AE0C7856341201078C2027780B134365877AC5")
    frame = decode_frame(on_air, frame_format="b")
    assert frame.to_bytes() == bytes.fromhex("1244AE0C7856341201078C2027780B13436587")
    assert frame.to_bytes("b") == on_air
    assert detect_frame_format(on_air) is FrameFormat.B


@pytest.mark.parametrize("telegram", ALL[:30], ids=lambda t: t.id)
def test_trailing_junk_is_rejected_unless_the_caller_keeps_it(telegram):
    stripped = decoded(telegram).to_bytes()
    with pytest.raises(MBusFrameError, match="after the frame's end") as info:
        decode_frame(stripped + b"\x00\x01")
    assert info.value.offset == len(stripped)
    assert decode_frame(stripped + b"\x00\x01", keep_trailing=True).trailing == b"\x00\x01"


@pytest.mark.parametrize("telegram", ALL[:30], ids=lambda t: t.id)
def test_a_truncated_frame_is_rejected_with_the_length_it_needs(telegram):
    on_air = decoded(telegram).to_bytes(FrameFormat.A)
    with pytest.raises(MBusFrameError, match="truncated") as info:
        decode_frame(on_air[:-1], frame_format=FrameFormat.A)
    assert info.value.field == "L" and info.value.offset == len(on_air) - 1


def test_an_l_field_below_the_first_block_is_rejected():
    with pytest.raises(MBusFrameError, match="below the minimum") as info:
        decode_frame(bytes([5, 0x44, 1, 2, 3, 4]))
    assert info.value.offset == 0


def test_a_frame_without_ci_has_none():
    frame = decode_frame(bytes.fromhex("0944AE0C7856341201 07"))
    assert frame.ci is None and frame.data == b"" and frame.to_bytes() == bytes.fromhex("0944AE0C785634120107")


def test_format_b_needs_room_for_its_crc():
    with pytest.raises(MBusFrameError, match="too short for a format B"):
        decode_frame(bytes([10]) + bytes(10), frame_format="b")


def test_a_stripped_frame_whose_last_bytes_happen_to_be_no_crc_is_not_taken_for_format_b():
    stripped = bytes.fromhex("1244AE0C7856341201078C2027780B13436587")
    assert detect_frame_format(stripped) is FrameFormat.STRIPPED


def test_wire_length_follows_the_block_structure():
    assert wire_length(9, FrameFormat.A) == 12  # block 1 only
    assert wire_length(10, FrameFormat.A) == 15  # block 1 + a 1-byte block 2
    assert wire_length(25, FrameFormat.A) == 30  # 10 + 16
    assert wire_length(26, FrameFormat.A) == 33  # 10 + 16 + 1
    assert wire_length(26, FrameFormat.B) == 27
    assert wire_length(26, FrameFormat.STRIPPED) == 27


@given(st.binary(min_size=0, max_size=240))
def test_any_frame_survives_adding_and_stripping_crc_blocks(body):
    stripped = bytes([9 + len(body)]) + bytes.fromhex("442D2C9999999930") + b"\x07" + body
    if len(stripped) > 256:
        return
    for fmt in (FrameFormat.A, FrameFormat.B):
        if fmt is FrameFormat.B and len(stripped) + 3 > 256:
            continue
        on_air = add_crc_blocks(stripped, fmt)
        assert len(on_air) == wire_length(on_air[0], fmt)
        assert strip_crc_blocks(on_air, fmt) == stripped


def test_format_b_frame_of_more_than_126_bytes_has_two_crcs():
    stripped = bytes([140]) + bytes(range(140))
    on_air = add_crc_blocks(stripped, FrameFormat.B)
    assert on_air[0] == 144 and len(on_air) == 145
    assert int.from_bytes(on_air[126:128], "big") == crc_en13757(on_air[:126])
    assert int.from_bytes(on_air[-2:], "big") == crc_en13757(on_air[128:-2])


def test_the_manufacturer_field_is_little_endian_letters():
    frame = decode_frame(bytes.fromhex("0944 2D2C 78563412 1B 16"))
    assert frame.manufacturer == 0x2C2D and frame.manufacturer_code == "KAM"
    assert frame.manufacturer_bytes == b"\x2d\x2c"


@pytest.mark.parametrize(
    "c, name",
    [(0x44, "SND_NR"), (0x46, "SND_IR"), (0x47, "ACC_NR"), (0x48, "ACC_DMD"), (0x08, "RSP_UD"), (0x28, "RSP_UD"),
     (0x73, "SND_UD"), (0x53, "SND_UD"), (0x7B, "REQ_UD2"), (0x00, "ACK"), (0x06, "CNF_IR"), (0x4F, "0x4F")],
)  # fmt: skip
def test_c_field_functions(c, name):
    assert c_field_function(c) == name


def test_c_mode_synchronisation_words_name_the_frame_format():
    assert c_mode_frame_format(bytes.fromhex("54CD")) is FrameFormat.A
    assert c_mode_frame_format(bytes.fromhex("543D")) is FrameFormat.B
    assert c_mode_frame_format(bytes.fromhex("543D54CD")) is FrameFormat.A
    assert c_mode_frame_format(bytes.fromhex("543D543D")) is FrameFormat.B
    with pytest.raises(MBusFrameError, match="not a C mode synchronisation word"):
        c_mode_frame_format(bytes.fromhex("5555"))


@pytest.mark.parametrize("telegram", ALL[:20], ids=lambda t: t.id)
def test_c1_radio_frames_in_both_formats_decode_to_the_same_frame(telegram):
    frame = decoded(telegram)
    for sync, fmt in ((b"\x54\xcd", FrameFormat.A), (b"\x54\x3d", FrameFormat.B)):
        got = frame_from_radio(LinkMode.C1, sync + frame.to_bytes(fmt) + b"\xaa\xaa")
        assert got.to_bytes() == frame.to_bytes() and got.frame_format is fmt
    assert frame_from_radio("S1", frame.to_bytes(FrameFormat.A)).to_bytes() == frame.to_bytes()


def test_link_json_names_the_fields():
    frame = decode_frame(bytes.fromhex("1244AE0C7856341201078C2027780B13436587"))
    assert frame.as_dict() == {
        "c": "0x44",
        "function": "SND_NR",
        "manufacturer": "CEN",
        "id": "12345678",
        "version": 1,
        "device_type": "0x07",
        "ci": "0x8C",
        "frame_format": "stripped",
    }
