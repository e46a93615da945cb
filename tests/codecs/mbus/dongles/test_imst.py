"""IMST iM871A (WM-Bus HCI) and iU891A (SLIP HCI) framings."""

from __future__ import annotations

import random

import pytest

from gateway.codecs.mbus.dongles import ReceivedTelegram
from gateway.codecs.mbus.dongles.imst import (
    HciMessage,
    ImstDeviceInfo,
    ImstHci,
    ImstSlipHci,
    rssi_to_dbm,
)
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import decode_frame

from .dongle_bytes import fed_byte_by_byte, recovers_after, corpus_frames, drain, garbage, imst_indication, iu891a_indication, telegrams_of

FRAMES = corpus_frames()


def test_every_corpus_telegram_comes_out_of_an_hci_indication_with_its_rssi():
    adapter = ImstHci()
    adapter.receive_data(b"".join(imst_indication(f, rssi=45 + i % 160) for i, f in enumerate(FRAMES)))
    events, errors = drain(adapter)
    assert errors == 0 and adapter.skipped_bytes == 0
    assert [e.frame for e in events] == FRAMES
    assert [e.rssi_raw for e in events] == [45 + i % 160 for i in range(len(FRAMES))]
    assert all(decode_frame(e.frame) for e in events)


@pytest.mark.parametrize("crc, rssi, timestamp", [(False, None, None), (True, None, None), (False, 200, 7), (True, 90, 123456)])
def test_every_combination_of_trailer_fields_is_read(crc, rssi, timestamp):
    adapter = ImstHci()
    adapter.receive_data(imst_indication(FRAMES[0], crc=crc, rssi=rssi, timestamp=timestamp))
    (event,) = telegrams_of(drain(adapter)[0])
    assert event.frame == FRAMES[0] and event.rssi_raw == rssi


def test_an_indication_fed_byte_by_byte_comes_out_once_at_its_last_byte():
    adapter = ImstHci()
    assert fed_byte_by_byte(adapter, imst_indication(FRAMES[3])).frame == FRAMES[3]
    assert adapter.buffered == 0


def test_garbage_between_indications_is_skipped_and_counted():
    rng = random.Random(871)
    adapter = ImstHci()
    stream = b"".join(garbage(rng, 40) + imst_indication(f) for f in FRAMES[:100])
    adapter.receive_data(stream + garbage(rng, 40, avoid=b"\xa5"))
    events, errors = drain(adapter)
    assert [e.frame for e in telegrams_of(events)] == FRAMES[:100]
    assert adapter.skipped_bytes >= 100 * 40


def test_a_flipped_byte_fails_the_hci_crc_and_the_next_indication_still_comes_out():
    bad = bytearray(imst_indication(FRAMES[1]))
    bad[10] ^= 0x01
    adapter = ImstHci()
    error, telegrams = recovers_after(adapter, bad, imst_indication(FRAMES[2]))
    assert "HCI CRC" in error.reason and error.field == "CRC"
    assert telegrams[-1].frame == FRAMES[2] and adapter.errors == 1


def test_device_info_and_other_responses_become_events():
    adapter = ImstHci()
    adapter.receive_data(
        ImstHci.message(0x01, 0x10, bytes([0x33, 0x00, 0x15, 0x02]) + (0x12345678).to_bytes(4, "little"))
        + ImstHci.message(0x01, 0x04, b"\x00", with_crc=True)
    )
    info, response = drain(adapter)[0]
    assert info == ImstDeviceInfo(0x33, 0, 0x15, 2, 0x12345678) and info.module == "iM871A"
    assert response == HciMessage(0x01, 0x04, b"\x00")


def test_an_a5_that_cannot_start_a_message_is_skipped():
    adapter = ImstHci()
    adapter.receive_data(b"\xa5\x07\x01\x00" + b"\xa5\x01\x99\x00" + imst_indication(FRAMES[0]))
    (event,) = drain(adapter)[0]
    assert event.frame == FRAMES[0] and adapter.skipped_bytes == 8


def test_commands_are_the_hci_messages_of_the_spec():
    assert ImstHci.command_ping() == bytes.fromhex("A5010100")
    assert ImstHci.command_get_device_info() == bytes.fromhex("A5010F00")
    assert ImstHci.command_get_config() == bytes.fromhex("A5010500")
    # SET_CONFIG, RAM only: IIFlag1 link mode; IIFlag2 auto RSSI on, auto timestamp off.
    assert ImstHci.command_set_link_mode("T1") == bytes.fromhex("A501030600 02 03 30 01 00".replace(" ", ""))
    assert ImstHci.command_set_link_mode("S1")[6] == 0x00
    assert ImstHci.command_set_link_mode("C1")[6] == 0x07
    assert ImstHci.command_set_link_mode("C1", "T1")[6] == 0x0A
    with pytest.raises(ValueError):
        ImstHci.command_set_link_mode("S1", "T1")


def test_rssi_conversion_is_monotonic_and_capped():
    assert rssi_to_dbm(45) == -100 and rssi_to_dbm(205) == -20 and rssi_to_dbm(255) == 0
    assert all(rssi_to_dbm(a) <= rssi_to_dbm(a + 1) for a in range(255))


def test_a_too_short_indication_is_an_error():
    adapter = ImstHci()
    adapter.receive_data(ImstHci.message(0x02, 0x03, b"\x44\x01"))
    with pytest.raises(MBusFrameError, match="too short"):
        adapter.next_event()


# --- iU891A ---------------------------------------------------------------------------------


def test_every_corpus_telegram_comes_out_of_a_slip_rx_indication():
    adapter = ImstSlipHci()
    adapter.receive_data(b"".join(iu891a_indication(f, -30 - i % 70) for i, f in enumerate(FRAMES)))
    events, errors = drain(adapter)
    assert errors == 0
    assert [e.frame for e in events] == FRAMES
    assert [e.rssi_dbm for e in events] == [-30 - i % 70 for i in range(len(FRAMES))]


def test_slip_escapes_in_the_telegram_are_undone():
    frame = next(f for f in FRAMES if b"\xc0" in f or b"\xdb" in f)
    adapter = ImstSlipHci()
    raw = iu891a_indication(frame)
    assert raw.count(b"\xc0") == 2
    for byte in raw:
        adapter.receive_data(bytes([byte]))
    (event,) = drain(adapter)[0]
    assert event == ReceivedTelegram(frame, rssi_dbm=-60, rssi_raw=196)


def test_a_slip_frame_with_a_bad_crc_is_an_error_and_the_next_one_still_comes_out():
    bad = bytearray(iu891a_indication(FRAMES[0]))
    bad[20] ^= 0x01
    adapter = ImstSlipHci()
    adapter.receive_data(bytes(bad) + iu891a_indication(FRAMES[1]))
    events, errors = drain(adapter)
    assert errors == 1 and [e.frame for e in events] == [FRAMES[1]]


def test_slip_garbage_between_frames_is_skipped():
    rng = random.Random(891)
    adapter = ImstSlipHci()
    adapter.receive_data(b"".join(garbage(rng, 30) + iu891a_indication(f) for f in FRAMES[:60]))
    events, errors = drain(adapter)
    assert [e.frame for e in telegrams_of(events)] == FRAMES[:60]
    assert errors >= 1


def test_slip_commands_carry_their_crc():
    assert ImstSlipHci.command_get_device_info() == bytes.fromhex("C001030424C0")
    raw = ImstSlipHci.command_set_link_mode("C1")
    assert raw[:4] == bytes.fromhex("C0090305")
