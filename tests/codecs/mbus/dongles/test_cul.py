"""CUL / culfw: text lines with format A or B frames (CRCs included) and LQI/RSSI."""

from __future__ import annotations

import random

import pytest

from gateway.codecs.mbus.dongles.cul import CulAdapter, CulText, rssi_to_dbm
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import FrameFormat, LinkMode, decode_frame

from .dongle_bytes import fed_byte_by_byte, corpus_frames, cul_line, drain, garbage, telegrams_of

FRAMES = corpus_frames()


@pytest.mark.parametrize("fmt", [FrameFormat.A, FrameFormat.B])
def test_every_corpus_telegram_comes_out_of_a_cul_line_and_its_crcs_check(fmt):
    frames = [f for f in FRAMES if fmt is FrameFormat.A or len(f) + 4 <= 256]
    adapter = CulAdapter()
    adapter.receive_data(b"".join(cul_line(f, fmt, rssi=i % 256) for i, f in enumerate(frames)))
    events, errors = drain(adapter)
    assert errors == 0
    assert all(e.frame_format is fmt for e in events)
    assert [decode_frame(e.frame, frame_format=e.frame_format).to_bytes() for e in events] == frames
    assert [e.rssi_raw for e in events] == [i % 256 for i in range(len(frames))]
    assert {e.lqi for e in events} == {0x1A}


def test_without_lqi_and_rssi_the_line_is_the_frame():
    adapter = CulAdapter()
    adapter.receive_data(cul_line(FRAMES[0], rssi=None))
    (event,) = drain(adapter)[0]
    assert event.rssi_dbm is None and decode_frame(event.frame, frame_format="a").to_bytes() == FRAMES[0]


def test_a_line_fed_byte_by_byte_comes_out_at_its_newline():
    assert fed_byte_by_byte(CulAdapter(), cul_line(FRAMES[9])).rssi_raw == 0x30


def test_answers_and_version_are_text_events():
    adapter = CulAdapter()
    adapter.receive_data(b"V 1.67 nanoCUL868\r\nTMODE\r\n\r\nCMODE\n")
    version, tmode, cmode = drain(adapter)[0]
    assert version == CulText("V 1.67 nanoCUL868") and version.mode is None
    assert tmode.mode is LinkMode.T1 and cmode.mode is LinkMode.C1


def test_broken_hex_and_wrong_lengths_are_errors_and_the_next_line_still_comes_out():
    adapter = CulAdapter()
    adapter.receive_data(b"b2E44ZZ\r\n" + b"b2E4493\r\n" + cul_line(FRAMES[0])[:-3] + b"\r\n" + cul_line(FRAMES[1]))
    events, errors = drain(adapter)
    assert errors == 3 and [decode_frame(e.frame, frame_format="a").to_bytes() for e in events] == [FRAMES[1]]


def test_a_flipped_hex_digit_passes_the_line_but_fails_the_frame_crc():
    line = bytearray(cul_line(FRAMES[2]))
    line[30] = ord("0") if line[30] != ord("0") else ord("1")
    adapter = CulAdapter()
    adapter.receive_data(bytes(line))
    (event,) = drain(adapter)[0]
    with pytest.raises(MBusFrameError, match="CRC of block"):
        decode_frame(event.frame, frame_format=event.frame_format)


def test_line_noise_is_skipped_and_counted():
    rng = random.Random(1101)
    adapter = CulAdapter()
    noise = [garbage(rng, 60, avoid=b"\n") + b"\r\n" for _ in FRAMES[:80]]
    adapter.receive_data(b"".join(n + cul_line(f) for n, f in zip(noise, FRAMES[:80])))
    events, _ = drain(adapter)
    assert len(telegrams_of(events)) == 80
    assert adapter.skipped_bytes > 0


def test_an_endless_line_is_dropped():
    adapter = CulAdapter()
    adapter.receive_data(b"b" + b"00" * 2000)
    with pytest.raises(MBusFrameError, match="without an end"):
        adapter.next_event()
    assert adapter.buffered == 0


def test_commands_are_culfw_text():
    assert CulAdapter.command_set_link_mode("T1") == b"brt\r\n"
    assert CulAdapter.command_set_link_mode("C1") == b"brc\r\n"
    assert CulAdapter.command_set_link_mode("S1") == b"brs\r\n"
    assert CulAdapter.command_report_rssi() == b"X21\r\n" and CulAdapter.command_report_rssi(False) == b"X01\r\n"
    assert CulAdapter.command_version() == b"V\r\n"


def test_cc1101_rssi_conversion():
    assert rssi_to_dbm(0x00) == -74 and rssi_to_dbm(0x30) == -50 and rssi_to_dbm(0xD0) == -98
