"""The M-Bus master's state machine and timing, against the package's simulator on a pty."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from gateway.codecs.mbus.application import SecondaryAddressMask, decode_user_data, req_ud2, snd_nke
from gateway.codecs.mbus.link import LongFrame, decode_frame
from gateway.collectors.mbus_master import (
    Collision,
    MBusMaster,
    MeterApplicationError,
    Timing,
    narrower,
    parse_secondary,
    secondary_text,
)
from gateway.config import SERIAL_BAUD_RATES
from gateway.errors import DeviceTimeout
from gateway.simulators.mbus import FrameTelegrams, MeterModel, Pacing, SimulatedBus, SimulatedSlave, serve_tcp
from gateway.transports import LineSettings, open_transport

from tests.collectors.mbus_helpers import RecordingBus, frame_file, master_on_pty, slave

ERROR_FRAMES = frame_file("ACW_Itron-BM-plus-m").parents[1] / "error-frames"


# -- timing arithmetic ---------------------------------------------------------------------

@pytest.mark.parametrize("baud", SERIAL_BAUD_RATES)
def test_reply_timeout_is_the_request_on_the_wire_plus_330_bit_times_plus_50_ms(baud):
    timing = Timing(LineSettings(baud))
    assert timing.reply_timeout(5) == pytest.approx(55 / baud + 330 / baud + 0.050)
    assert timing.idle_gap == pytest.approx(33 / baud)
    assert timing.min_reply_delay == pytest.approx(11 / baud)


def test_reply_timeout_at_2400_baud_is_160_ms_for_a_short_frame_plus_the_extra_margin():
    assert Timing(LineSettings(2400)).reply_timeout(5) * 1000 == pytest.approx(22.917 + 137.5 + 50, abs=0.01)
    assert Timing(LineSettings(2400), extra_s=0.2).reply_timeout(5) * 1000 == pytest.approx(410.417, abs=0.01)


def test_the_rest_of_a_started_frame_may_take_its_wire_time_plus_a_turnaround_pause_and_the_margin():
    timing = Timing(LineSettings(300), extra_s=0.01)
    assert timing.completion_timeout(100) == pytest.approx(1100 / 300 + 330 / 300 + 0.060)


# -- secondary address text forms --------------------------------------------------------------

def test_secondary_addresses_read_and_print_as_libmbus_does():
    mask = parse_secondary("1149037877040E16")
    assert mask == SecondaryAddressMask("11490378", "ACW", 0x0E, 0x16)
    assert secondary_text(mask) == "1149037877040E16"
    assert parse_secondary("12345678") == SecondaryAddressMask("12345678")
    assert secondary_text(parse_secondary("12FFFFFF")) == "12FFFFFFFFFFFFFF"


@pytest.mark.parametrize("text", ["1234567", "1234567A", "1149037877040E1", "zz"])
def test_malformed_secondary_addresses_are_refused(text):
    with pytest.raises(ValueError):
        parse_secondary(text)


def test_narrowing_sets_the_leftmost_wildcard_digit():
    masks = narrower(SecondaryAddressMask("12FF4FFF", "ABC"))
    assert [m.identification for m in masks] == [f"12{d}F4FFF" for d in range(10)]
    assert all(m.manufacturer == "ABC" for m in masks)


def test_a_complete_identification_narrows_by_medium_then_by_version():
    by_medium = narrower(SecondaryAddressMask("12345678"))
    assert [m.medium for m in by_medium] == list(range(255))
    by_version = narrower(by_medium[7])
    assert [(m.medium, m.version) for m in by_version] == [(7, v) for v in range(255)]
    assert narrower(by_version[3]) == []


# -- the frame count bit ------------------------------------------------------------------------

async def test_multi_telegram_readout_toggles_the_fcb_starting_with_1_after_snd_nke():
    bus = RecordingBus([SimulatedSlave(3, MeterModel(telegrams_count=2))])
    async with master_on_pty(bus) as master:
        readout = await master.read(3)
        again = await master.read(3)
    assert [t.response.more_records_follow for t in readout.telegrams] == [True, False]
    assert bus.heard[:3] == [snd_nke(3), req_ud2(3, fcb=True), req_ud2(3, fcb=False)]
    assert bus.heard[3:] == bus.heard[:3]  # SND_NKE starts the sequence and the FCB again
    assert len(again.telegrams) == 2


async def test_a_request_without_reply_is_repeated_with_the_same_fcb():
    class DropsFirstReply(RecordingBus):
        def handle(self, request):
            reply = super().handle(request)
            return b"" if len(self.heard) == 2 else reply  # the first REQ_UD2 is lost

    bus = DropsFirstReply([slave(5, "EDC")])
    async with master_on_pty(bus) as master:
        readout = await master.read(5)
    assert bus.heard == [snd_nke(5), req_ud2(5, fcb=True), req_ud2(5, fcb=True)]
    assert master.counters["retries"] == 1 and master.counters["timeouts"] == 1
    assert readout.telegrams[0].frame.a == 5


async def test_after_each_successful_exchange_the_next_request_toggles_the_fcb():
    bus = RecordingBus([slave(7, "EDC", "ACW_Itron-BM-plus-m")])
    async with master_on_pty(bus) as master:
        await master.ping(7)
        first = await master._request_data(7, "test")  # noqa: SLF001 - one REQ_UD2, as a scan does
        second = await master._request_data(7, "test")  # noqa: SLF001
    assert bus.heard == [snd_nke(7), req_ud2(7, fcb=True), req_ud2(7, fcb=False)]
    assert first.data != second.data  # the toggle moved the slave on


# -- failures ------------------------------------------------------------------------------------

async def test_a_mute_meter_times_out_after_the_retries_with_a_message_that_says_so():
    bus = RecordingBus([slave(9, "EDC", mute=True)])
    async with master_on_pty(bus, retries=2) as master:
        with pytest.raises(DeviceTimeout, match=r"meter at address 9 did not answer \(timeout after 90 ms, 2 retries\)"):
            await master.read(9)
    assert bus.heard == [snd_nke(9)] * 3
    assert master.counters["timeouts"] == 3 and master.counters["retries"] == 2


async def test_a_bad_checksum_is_a_counted_error_and_the_request_is_retried():
    async with master_on_pty(SimulatedBus([slave(4, "EDC", bad_checksum=True)]), retries=1) as master:
        with pytest.raises(Collision, match="checksum"):
            await master.read(4)
    assert master.counters["errors"] == 2 and master.counters["collisions"] == 2
    assert master.counters["garbage_bytes"] > 0


async def test_two_meters_on_one_primary_address_collide():
    bus = SimulatedBus([slave(6, "EDC"), slave(6, "ACW_Itron-BM-plus-m")])
    async with master_on_pty(bus, retries=0) as master:
        with pytest.raises(Collision):
            await master.read(6)
        result = await master.scan_primary(first=5, last=7)
    assert master.counters["collisions"] >= 1
    assert result.meters == []  # E5 & E5 is an E5, but REQ_UD2 then gets garbage


async def test_a_late_reply_is_discarded_before_the_next_request():
    bus = SimulatedBus([slave(1, "EDC"), slave(2, "ACW_Itron-BM-plus-m")])
    async with master_on_pty(bus, retries=0) as master:
        bus.slave(1).mute = True
        with pytest.raises(DeviceTimeout):
            await master.read(1)
        late = bus.slave(1).answer(decode_frame(req_ud2(1, fcb=True)))
        master.line_noise(late)  # slave 1 answers after all, too late
        await asyncio.sleep(0.05)
        readout = await master.read(2)
    assert readout.telegrams[0].frame.a == 2
    assert master.counters["garbage_bytes"] == len(late)


async def test_a_late_reply_from_another_address_during_the_wait_is_not_taken():
    class LateOtherReply(SimulatedBus):
        def handle(self, request):
            reply = super().handle(request)
            if request.to_bytes() == req_ud2(2, fcb=True):
                return self.slave(1).answer(decode_frame(req_ud2(1, fcb=True))) + reply
            return reply

    bus = LateOtherReply([slave(1, "EDC"), slave(2, "ACW_Itron-BM-plus-m")])
    async with master_on_pty(bus, retries=0) as master:
        readout = await master.read(2)
    assert readout.telegrams[0].frame.a == 2
    assert decode_user_data(readout.telegrams[0].frame.user_data).header.identification == "11490378"


async def test_an_application_error_fails_the_read():
    source = FrameTelegrams.from_files([ERROR_FRAMES / "application_busy.hex"])
    async with master_on_pty(SimulatedBus([SimulatedSlave(8, source)])) as master:
        with pytest.raises(MeterApplicationError, match="busy"):
            await master.read(8)


async def test_an_echoing_level_converter_is_tolerated():
    class Echo(SimulatedBus):
        def handle(self, request):
            return request.to_bytes() + super().handle(request)

    async with master_on_pty(Echo([slave(2, "EDC")]), retries=0) as master:
        readout = await master.read(2)
    assert readout.telegrams[0].frame.a == 2


# -- addressing and scans -----------------------------------------------------------------------

async def test_a_meter_is_read_by_secondary_address_then_deselected():
    bus = RecordingBus([slave(1, "EDC"), slave(2, "ACW_Itron-BM-plus-m")])
    async with master_on_pty(bus) as master:
        readout = await master.read(parse_secondary("1149FFFF"))
    assert readout.telegrams[0].frame.a == 2
    assert bus.heard[0][6] == 0x52 and bus.heard[1:] == [req_ud2(253, fcb=True), snd_nke(253)]
    assert not any(s.selected for s in bus.slaves)


async def test_a_secondary_mask_matching_two_meters_is_a_collision():
    async with master_on_pty(SimulatedBus([slave(1, "EDC"), slave(2, "ACW_Itron-BM-plus-m")]), retries=0) as master:
        with pytest.raises(Collision):
            await master.read(SecondaryAddressMask())


async def test_the_primary_address_is_set_by_primary_and_by_secondary_address():
    bus = SimulatedBus([slave(1, "EDC"), slave(2, "ACW_Itron-BM-plus-m")])
    async with master_on_pty(bus) as master:
        await master.set_primary_address(1, 17)
        await master.set_primary_address(parse_secondary("11490378"), 18)
        assert (await master.read(17)).telegrams[0].frame.a == 17
        assert (await master.read(18)).telegrams[0].frame.a == 18


async def test_primary_scan_finds_each_meter_with_its_secondary_address_and_reports_progress():
    bus = SimulatedBus([slave(0, "EDC"), slave(3, "ACW_Itron-BM-plus-m"), slave(5, "EDC", mute=True)])
    steps = []
    async with master_on_pty(bus, retries=0) as master:
        result = await master.scan_primary(lambda done, total, what: steps.append((done, total)), first=0, last=6)
    assert [(m.primary, secondary_text(m.secondary)) for m in result.meters] == [
        (0, "1112089583140204"), (3, "1149037877040E16")]
    assert steps == [(n, 7) for n in range(1, 8)]


async def test_secondary_scan_narrows_through_collisions_and_finds_every_meter_once():
    ids = ["12345678", "12345679", "12340000", "00000001", "99999999"]
    # Real meters differ in their values too; identical frames but for one identification
    # bit would AND into a valid frame half of the time, on a real bus as here.
    bus = SimulatedBus([SimulatedSlave(n, MeterModel(identification=i, energy_wh=1000 * n, volume_l=77 * n))
                        for n, i in enumerate(ids, start=1)])
    steps = []
    async with master_on_pty(bus, baud=38400, retries=0) as master:
        result = await master.scan_secondary(lambda done, total, what: steps.append((done, total)))
    assert sorted(m.secondary.identification for m in result.meters) == sorted(ids)
    assert {m.primary for m in result.meters} == {1, 2, 3, 4, 5}
    assert all(m.secondary.manufacturer == "GWY" for m in result.meters)
    assert result.collisions == []
    assert master.counters["collisions"] > 0
    assert steps[-1][0] == steps[-1][1] == len(steps)


async def test_secondary_scan_separates_meters_sharing_an_identification_by_medium(monkeypatch):
    # 255 media to probe: a shorter reply margin keeps the test quick (the simulator
    # answers within a few milliseconds in this event loop).
    monkeypatch.setattr("gateway.collectors.mbus_master.REPLY_MARGIN_S", 0.015)
    bus = SimulatedBus([SimulatedSlave(1, MeterModel(identification="55555555", medium=4)),
                        SimulatedSlave(2, MeterModel(identification="55555555", medium=7))])
    async with master_on_pty(bus, baud=38400, paced=False, retries=0) as master:
        result = await master.scan_secondary(mask=SecondaryAddressMask("55555555", version=1))
    assert sorted(m.secondary.medium for m in result.meters) == [4, 7]
    assert result.collisions == []


async def test_meters_with_the_same_full_address_are_reported_as_unresolved():
    twins = [SimulatedSlave(n, MeterModel(identification="55555555", energy_wh=n)) for n in (1, 2)]
    async with master_on_pty(SimulatedBus(twins), retries=0) as master:
        result = await master.scan_secondary(mask=SecondaryAddressMask("55555555", version=1, medium=4))
    assert result.meters == []
    assert result.collisions == ["secondary address 55555555FFFF0104: several meters answer to this full address"]


async def test_values_come_through_exactly():
    async with master_on_pty(SimulatedBus([SimulatedSlave(1, MeterModel(energy_wh=42))])) as master:
        readout = await master.read(1)
    energy = next(r for r in readout.telegrams[0].response.records if r.quantity == "Energy")
    assert isinstance(energy.value, Decimal) and energy.value >= 42


async def test_a_meter_behind_a_tcp_serial_server_is_read_the_same_way():
    line = LineSettings(9600)
    async with serve_tcp(SimulatedBus([slave(2, "EDC")]), Pacing(line)) as server:
        async with open_transport(line, tcp=f"{server.host}:{server.port}") as transport:
            readout = await MBusMaster(transport, line).read(2)
    assert readout.telegrams[0].response.header.identification == "11120895"


async def test_a_scan_reply_that_passes_the_checksum_but_not_the_application_layer_is_narrowed():
    class AndedIntoValidChecksum(SimulatedBus):
        """Two meters' replies to the first probe AND into a checksum-valid nonsense frame."""

        def handle(self, request):
            reply = super().handle(request)
            if request.to_bytes() == req_ud2(253, fcb=True) and self.requests <= 3:
                return LongFrame(0x08, 0, 0x72, b"\x01\x02").to_bytes()
            return reply

    bus = AndedIntoValidChecksum([SimulatedSlave(1, MeterModel(identification="30000000")),
                                  SimulatedSlave(2, MeterModel(identification="70000000", energy_wh=5))])
    async with master_on_pty(bus, baud=38400, retries=0) as master:
        result = await master.scan_secondary()
    assert sorted(m.secondary.identification for m in result.meters) == ["30000000", "70000000"]
