"""Amber / Würth Metis AMB8465 family: command frames with XOR checksum, transparent mode."""

from __future__ import annotations

import random


from gateway.codecs.mbus.dongles.amber import AmberAdapter, AmberConfirm, rssi_to_dbm

from .dongle_bytes import fed_byte_by_byte, recovers_after, amber_indication, corpus_frames, drain, garbage

FRAMES = corpus_frames()


def test_every_corpus_telegram_comes_out_of_a_data_indication_with_its_rssi():
    adapter = AmberAdapter(rssi=True)
    adapter.receive_data(b"".join(amber_indication(f, rssi=i % 256) for i, f in enumerate(FRAMES)))
    events, errors = drain(adapter)
    assert errors == 0 and adapter.skipped_bytes == 0
    assert [e.frame for e in events] == FRAMES
    assert [e.rssi_dbm for e in events] == [rssi_to_dbm(i % 256) for i in range(len(FRAMES))]


def test_without_rssi_the_whole_payload_is_the_telegram():
    adapter = AmberAdapter(rssi=False)
    adapter.receive_data(amber_indication(FRAMES[5], rssi=None))
    (event,) = drain(adapter)[0]
    assert event.frame == FRAMES[5] and event.rssi_dbm is None


def test_an_indication_fed_byte_by_byte_comes_out_once_at_its_last_byte():
    assert fed_byte_by_byte(AmberAdapter(), amber_indication(FRAMES[7])).frame == FRAMES[7]


def test_a_flipped_byte_fails_the_checksum_and_the_next_indication_still_comes_out():
    bad = bytearray(amber_indication(FRAMES[1]))
    bad[8] ^= 0x40
    error, telegrams = recovers_after(AmberAdapter(), bad, amber_indication(FRAMES[2]))
    assert "checksum" in error.reason and error.field == "CS" and error.offset == len(bad) - 1
    assert telegrams[-1].frame == FRAMES[2]


def test_garbage_between_indications_is_skipped_and_counted():
    rng = random.Random(8465)
    adapter = AmberAdapter()
    adapter.receive_data(b"".join(garbage(rng, 50, avoid=b"\xff") + amber_indication(f) for f in FRAMES[:100]))
    events, errors = drain(adapter)
    assert [e.frame for e in events] == FRAMES[:100] and errors == 0
    assert adapter.skipped_bytes == 100 * 50


def test_confirmations_come_out_with_their_payload():
    adapter = AmberAdapter()
    adapter.receive_data(bytes.fromhex("FF8C03020006 74") + bytes.fromhex("FF840100 7A"))
    firmware, mode = drain(adapter)[0]  # the manual's example of version 2.0.6
    assert firmware == AmberConfirm(0x8C, b"\x02\x00\x06") and firmware.name == "CMD_FWV_CNF"
    assert mode == AmberConfirm(0x84, b"\x00") and mode.name == "CMD_SET_MODE_CNF"


def test_transparent_mode_telegrams_with_rssi_are_read_by_their_l_field():
    adapter = AmberAdapter(rssi=True, transparent=True)
    adapter.receive_data(b"".join(f + bytes([0x40]) for f in FRAMES[:50]))
    events, errors = drain(adapter)
    assert [e.frame for e in events] == FRAMES[:50] and errors == 0
    assert {e.rssi_dbm for e in events} == {-42}


def test_commands_carry_the_xor_checksum_of_the_manual():
    assert AmberAdapter.command_get_firmware_version() == bytes.fromhex("FF0C00F3")  # manual 7.8
    assert AmberAdapter.command_get_serial_number() == bytes.fromhex("FF0B00F4")
    assert AmberAdapter.command_set_link_mode("T1") == bytes.fromhex("FF040108F2")  # T2 other
    assert AmberAdapter.command_set_link_mode("C1") == bytes.fromhex("FF04010EF4")  # C2 other
    assert AmberAdapter.command_set_link_mode("S1") == bytes.fromhex("FF040103F9")  # S2
    assert AmberAdapter.command_set_link_mode("C1", "T1") == bytes.fromhex("FF040109F3")
    assert AmberAdapter.command_get_parameter(0x45) == bytes.fromhex("FF0A024501B3")
    assert AmberAdapter.command_set_parameter(0x05, b"\x01") == bytes.fromhex("FF0903050101F0")
    assert AmberAdapter.command_reset() == bytes.fromhex("FF0500FA")


def test_rssi_is_twos_complement_halved_minus_74():
    assert rssi_to_dbm(0) == -74 and rssi_to_dbm(0x20) == -58 and rssi_to_dbm(0xFF) == -75 and rssi_to_dbm(0x80) == -138
