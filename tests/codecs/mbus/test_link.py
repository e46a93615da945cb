"""EN 13757-2 link layer: frames found in streams, checked, and rebuilt byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.link import (
    ControlFrame,
    LinkParser,
    LongFrame,
    ShortFrame,
    SingleCharacter,
    decode_frame,
)

FRAMES = sorted((Path(__file__).parents[2] / "data" / "mbus-libmbus" / "test-frames").glob("*.hex"))


def frame_bytes(path: Path) -> bytes:
    return bytes.fromhex(path.read_text())


def test_the_corpus_is_there():
    assert len(FRAMES) == 76


@pytest.mark.parametrize("path", FRAMES, ids=lambda p: p.stem)
def test_every_captured_rsp_ud_decodes_and_reencodes_to_the_same_bytes(path):
    raw = frame_bytes(path)
    frame = decode_frame(raw)
    assert isinstance(frame, LongFrame)
    assert frame.control.function == "RSP_UD"
    assert frame.to_bytes() == raw


@pytest.mark.parametrize("path", FRAMES, ids=lambda p: p.stem)
def test_captured_frame_fed_byte_by_byte_comes_out_once_at_the_last_byte(path):
    raw = frame_bytes(path)
    parser = LinkParser()
    for byte in raw[:-1]:
        parser.receive_data(bytes([byte]))
        assert parser.next_frame() is None
    parser.receive_data(raw[-1:])
    assert parser.next_frame() == decode_frame(raw)
    assert parser.next_frame() is None and parser.buffered == 0


@pytest.mark.parametrize("path", FRAMES[:10], ids=lambda p: p.stem)
def test_junk_before_and_after_a_frame_is_skipped_and_counted(path):
    raw = frame_bytes(path)
    parser = LinkParser()
    parser.receive_data(b"\x00\xff\x42" + raw + b"\x01\x02")
    assert parser.next_frame() == decode_frame(raw)
    assert parser.next_frame() is None
    assert parser.skipped_bytes == 5


@pytest.mark.parametrize("path", FRAMES[:10], ids=lambda p: p.stem)
def test_a_whole_frame_with_trailing_junk_is_rejected_by_the_strict_decoder(path):
    raw = frame_bytes(path)
    with pytest.raises(MBusFrameError, match="trailing") as info:
        decode_frame(raw + b"\x00")
    assert info.value.offset == len(raw)


@pytest.mark.parametrize("path", FRAMES, ids=lambda p: p.stem)
def test_long_frame_with_a_flipped_data_byte_is_rejected_at_the_checksum(path):
    raw = bytearray(frame_bytes(path))
    raw[10] ^= 0x01
    with pytest.raises(MBusFrameError) as info:
        decode_frame(bytes(raw))
    assert info.value.field == "CS"
    assert info.value.offset == len(raw) - 2


def test_length_bytes_that_differ_are_rejected_with_offset():
    with pytest.raises(MBusFrameError, match="length bytes differ") as info:
        decode_frame(bytes.fromhex("68 03 04 68 08 01 72 7B 16"))
    assert info.value.offset == 2


def test_wrong_stop_byte_is_rejected():
    with pytest.raises(MBusFrameError, match="stop byte") as info:
        decode_frame(bytes.fromhex("10 5B 01 5C 17"))
    assert info.value.field == "stop"


def test_parser_resynchronises_after_a_broken_frame():
    good = ShortFrame(0x5B, 1).to_bytes()
    parser = LinkParser()
    parser.receive_data(bytes.fromhex("10 5B 01 00 16") + good)
    with pytest.raises(MBusFrameError):
        parser.next_frame()
    assert parser.next_frame() == ShortFrame(0x5B, 1)
    assert parser.errors == 1


def test_single_character_short_and_control_frames_round_trip():
    for frame in (SingleCharacter(), ShortFrame(0x40, 0xFE), ControlFrame(0x53, 0xFD, 0x50)):
        assert decode_frame(frame.to_bytes()) == frame


def test_snd_nke_bytes_are_as_in_the_standard():
    assert ShortFrame(0x40, 0x05).to_bytes() == bytes.fromhex("10 40 05 45 16")


def test_control_field_of_a_request_names_function_and_frame_count_bits():
    c = ShortFrame(0x7B, 1).control
    assert (c.function, c.from_master, c.fcb, c.fcv) == ("REQ_UD2", True, True, True)


def test_an_incomplete_frame_is_reported_with_what_is_missing():
    with pytest.raises(MBusFrameError, match="incomplete"):
        decode_frame(bytes.fromhex("68 10 10 68 08 01"))


def test_user_data_too_long_for_a_frame_cannot_be_encoded():
    with pytest.raises(ValueError):
        LongFrame(0x08, 1, 0x72, bytes(253)).to_bytes()
