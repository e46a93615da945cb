"""The package's M-Bus slave simulator: what each slave answers, collisions, the meter model."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.mbus.application import (
    SecondaryAddressMask,
    VariableDataResponse,
    decode_response,
    decode_user_data,
    req_ud2,
    select_secondary,
    set_primary_address,
    snd_nke,
)
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.link import LongFrame, decode_frame
from gateway.simulators.mbus import FrameTelegrams, MeterModel, SimulatedBus, SimulatedSlave, collide

FRAMES = Path(__file__).parents[1] / "data" / "mbus-libmbus" / "test-frames"
ACW = FRAMES / "ACW_Itron-BM-plus-m.hex"  # identification 11490378, ACW, version 0x0E, medium 0x16
EDC = FRAMES / "EDC.hex"  # 11120895, EDC, 0x02, 0x04


def slave(address, *paths, **faults):
    return SimulatedSlave(address, FrameTelegrams.from_files(paths or [ACW]), **faults)


def ask(bus, request: bytes) -> bytes:
    return bus.handle(decode_frame(request))


@given(st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=4))
def test_colliding_replies_are_anded_byte_by_byte(replies):
    heard = collide(replies)
    assert len(heard) == max(map(len, replies))
    for i, byte in enumerate(heard):
        expected = 0xFF
        for reply in replies:
            if i < len(reply):
                expected &= reply[i]
        assert byte == expected


def test_two_acknowledgements_at_once_still_sound_like_one():
    assert collide([b"\xE5", b"\xE5"]) == b"\xE5"


def test_snd_nke_to_the_slaves_address_is_acknowledged_and_others_stay_silent():
    bus = SimulatedBus([slave(1), slave(2, EDC)])
    assert ask(bus, snd_nke(1)) == b"\xE5"
    assert ask(bus, snd_nke(7)) == b""
    assert ask(bus, snd_nke(255)) == b""  # broadcast: everybody listens, nobody answers


def test_req_ud2_returns_the_captured_frame_with_the_slaves_primary_address():
    bus = SimulatedBus([slave(9)])
    reply = decode_frame(ask(bus, req_ud2(9, fcb=True)))
    original = decode_frame(bytes.fromhex(ACW.read_text()))
    assert isinstance(reply, LongFrame) and reply.a == 9
    assert (reply.c, reply.ci, reply.data) == (original.c, original.ci, original.data)


def test_a_toggled_fcb_moves_to_the_next_telegram_and_a_repeated_fcb_repeats():
    bus = SimulatedBus([slave(1, ACW, EDC)])
    ask(bus, snd_nke(1))
    first = ask(bus, req_ud2(1, fcb=True))
    repeat = ask(bus, req_ud2(1, fcb=True))
    second = ask(bus, req_ud2(1, fcb=False))
    wrapped = ask(bus, req_ud2(1, fcb=True))
    assert first == repeat == wrapped != second
    assert decode_frame(second).data == decode_frame(bytes.fromhex(EDC.read_text())).data


def test_snd_nke_starts_the_sequence_again():
    bus = SimulatedBus([slave(1, ACW, EDC)])
    first = ask(bus, req_ud2(1, fcb=True))
    ask(bus, req_ud2(1, fcb=False))
    ask(bus, snd_nke(1))
    assert ask(bus, req_ud2(1, fcb=False)) == first


@pytest.mark.parametrize(("mask", "selected"), [
    (SecondaryAddressMask("11490378"), True),
    (SecondaryAddressMask("1149FFFF"), True),
    (SecondaryAddressMask("FFFFFFFF", "ACW", 0x0E, 0x16), True),
    (SecondaryAddressMask("11490378", "EDC"), False),
    (SecondaryAddressMask("11490379"), False),
    (SecondaryAddressMask("FFFFFFFF", medium=0x07), False),
])
def test_selection_matches_wildcards_digit_by_digit_and_byte_by_byte(mask, selected):
    bus = SimulatedBus([slave(1)])
    assert ask(bus, select_secondary(mask)) == (b"\xE5" if selected else b"")
    assert bus.slave(1).selected is selected
    assert (ask(bus, req_ud2(253, fcb=True)) != b"") is selected


def test_a_selection_deselects_a_slave_that_does_not_match_and_snd_nke_253_deselects():
    bus = SimulatedBus([slave(1), slave(2, EDC)])
    ask(bus, select_secondary(SecondaryAddressMask("11490378")))
    ask(bus, select_secondary(SecondaryAddressMask("11120895")))
    assert not bus.slave(1).selected and bus.slave(2).selected
    assert ask(bus, snd_nke(253)) == b"\xE5"
    assert not bus.slave(2).selected
    assert ask(bus, snd_nke(253)) == b""


def test_a_wildcard_selecting_two_slaves_makes_their_replies_collide():
    bus = SimulatedBus([slave(1), slave(2, EDC)])
    assert ask(bus, select_secondary(SecondaryAddressMask())) == b"\xE5"
    heard = ask(bus, req_ud2(253, fcb=True))
    with pytest.raises(MBusFrameError):
        decode_frame(heard)


def test_set_primary_address_moves_the_slave():
    bus = SimulatedBus([slave(1)])
    assert ask(bus, set_primary_address(1, 42)) == b"\xE5"
    assert ask(bus, snd_nke(1)) == b""
    assert ask(bus, snd_nke(42)) == b"\xE5"


def test_a_mute_slave_follows_the_conversation_but_never_answers():
    bus = SimulatedBus([slave(1, ACW, EDC, mute=True)])
    assert ask(bus, snd_nke(1)) == b""
    assert ask(bus, req_ud2(1, fcb=True)) == b""
    bus.slave(1).mute = False
    assert decode_frame(ask(bus, req_ud2(1, fcb=False))).data == decode_frame(bytes.fromhex(EDC.read_text())).data


def test_a_bad_checksum_slave_sends_a_frame_the_link_layer_rejects():
    bus = SimulatedBus([slave(1, bad_checksum=True)])
    with pytest.raises(MBusFrameError, match="checksum"):
        decode_frame(ask(bus, req_ud2(1, fcb=True)))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_meter_model_counts_energy_and_volume_up_with_time():
    clock = Clock()
    model = MeterModel(monotonic=clock, wall_clock=lambda: datetime(2026, 3, 1, 12, 30, 45))
    seen = []
    for _ in range(4):
        response = decode_response(model.telegrams()[0].to_bytes()).response
        values = {(r.quantity, r.function, r.storage): r.value for r in response.records}
        seen.append(values)
        clock.now += 1800
    energies = [v[("Energy", "instantaneous value", 0)] for v in seen]
    volumes = [v[("Volume", "instantaneous value", 0)] for v in seen]
    assert energies == [Decimal(1_234_567 + 6000 * i) for i in range(4)]  # 12 kW for half an hour
    assert volumes == [Decimal(98_765 + 300 * i).scaleb(-3) for i in range(4)]
    assert seen[0][("Time point (date and time)", "instantaneous value", 0)] == datetime(2026, 3, 1, 12, 30)
    assert seen[0][("Time point (date)", "instantaneous value", 1)] == date(2026, 3, 1)
    assert seen[0][("Flow temperature", "maximum value", 0)] == Decimal("75.00")
    assert all(isinstance(v, Decimal) for v in volumes)


def test_the_model_splits_its_readout_into_two_telegrams_on_request():
    model = MeterModel(identification="00001234", telegrams_count=2)
    first, second = (decode_user_data(frame.user_data) for frame in model.telegrams())
    assert isinstance(first, VariableDataResponse) and first.more_records_follow
    assert not second.more_records_follow
    assert first.header.identification == "00001234" and first.header.manufacturer == "GWY"
    assert {r.storage for r in second.records} == {1}
    assert second.header.access_number == (first.header.access_number + 1) & 0xFF


def test_the_command_line_explains_itself():
    out = subprocess.run([sys.executable, "-m", "gateway.simulators.mbus", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for option in ("--tcp", "--baud", "--no-pace", "--mute", "--bad-checksum", "--model", "--meters", "PTY"):
        assert option in out
