"""The M-Bus collector: readings from a simulated bus on a pty, the naming rule, failures."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.codecs.mbus.application import decode_response
from gateway.codecs.mbus.records import make_record
from gateway.collectors.mbus import MBusCollector, meter_time_of, quantity_name
from gateway.collectors.mbus_master import MeterApplicationError, Readout, Telegram
from gateway.config import MBusBus, MBusMeter
from gateway.errors import DeviceTimeout
from gateway.model import Event, Reading
from gateway.simulators.mbus import FrameTelegrams, MeterModel, Pacing, SimulatedBus, SimulatedSlave, serve_pty
from gateway.transports import LineSettings

from tests.collectors.mbus_helpers import FRAMES, frame_file
from tests.collectors.polling import ListSink, running

BERLIN = ZoneInfo("Europe/Berlin")
FIXED_NOW = datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc)  # next daily slot: a day away


@pytest.mark.parametrize(("kwargs", "name"), [
    ({}, "energy"),
    ({"storage": 1}, "energy;storage=1"),
    ({"tariff": 2}, "energy;tariff=2"),
    ({"subunit": 1, "storage": 3}, "energy;storage=3;subunit=1"),
    ({"function": "maximum value"}, "energy;function=maximum"),
    ({"function": "minimum value", "tariff": 1}, "energy;function=minimum;tariff=1"),
    ({"function": "value during error state"}, "energy;function=error"),
])
def test_quantity_names_carry_the_qualifiers_that_make_them_unique(kwargs, name):
    assert quantity_name(make_record(0x03, Decimal(1), **kwargs)) == name


def test_quantity_names_are_readable_words_with_modifiers():
    assert quantity_name(make_record(0x59, Decimal("1.00"), function="maximum value")) == "flow_temperature;function=maximum"
    assert quantity_name(make_record(0x13, Decimal("0.001"), tariff=2)) == "volume;tariff=2"
    assert quantity_name(make_record(0x6D, datetime(2026, 1, 2, 3, 4))) == "time_point_date_and_time"
    assert quantity_name(make_record(0xFD, Decimal(230), vife=(0x48,))).startswith("voltage")


@pytest.mark.parametrize("path", sorted(FRAMES.glob("*.hex")), ids=lambda p: p.stem)
def test_every_record_of_every_captured_meter_gets_a_name_unique_within_the_device(path):
    from gateway.collectors.mbus import named_records

    response = decode_response(bytes.fromhex(path.read_text()))
    readout = Readout(1, (Telegram(response.frame, response.response),))
    names = [name for _, _, name in named_records(readout)]
    assert len(names) == len(set(names)) == len(response.response.records)


def test_meter_time_is_the_current_date_and_time_record_made_aware_in_the_gateways_zone():
    model = MeterModel(wall_clock=lambda: datetime(2026, 7, 1, 12, 30))
    frame = model.telegrams()[0]
    readout = Readout(1, (Telegram(frame, decode_response(frame.to_bytes()).response),))
    assert meter_time_of(readout.telegrams, BERLIN) == datetime(2026, 7, 1, 12, 30, tzinfo=BERLIN)
    assert meter_time_of(readout.telegrams, BERLIN).utcoffset().total_seconds() == 7200


def config(path, *meters, retries=1):
    bus = MBusBus(name="mbus1", protocol="mbus", port=path, baud=9600, retries=retries)
    return bus, [MBusMeter(name=name, protocol="mbus", bus="mbus1", schedule={"interval_s": 86400}, **where)
                 for name, where in meters]


async def test_the_collector_turns_a_model_meters_records_into_exact_readings():
    model = MeterModel(identification="00004711", telegrams_count=2, wall_clock=lambda: datetime(2026, 1, 1, 9, 15))
    bus = SimulatedBus([SimulatedSlave(4, model)])
    sink = ListSink()
    async with serve_pty(bus, Pacing(LineSettings(9600))) as server:
        bus_config, meters = config(server.path, ("heat", {"address": 4}))
        collector = MBusCollector.from_config(bus_config, meters, sink, BERLIN)
        collector._clock = lambda: FIXED_NOW  # noqa: SLF001 - no scheduled read during the test
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("heat"), 10)
    by_name = {r.quantity: r for r in readings}
    assert set(by_name) == {
        "energy", "volume", "power", "volume_flow", "flow_temperature", "return_temperature",
        "flow_temperature;function=maximum", "time_point_date_and_time", "energy;storage=1",
        "time_point_date;storage=1"}
    energy = by_name["energy"]
    assert energy.device == "GWY-00004711-01-04"
    assert isinstance(energy.value, Decimal) and energy.value >= 1_234_567 and energy.unit == "Wh"
    assert by_name["volume"].value >= Decimal("98.765") and by_name["volume"].unit == "m^3"
    assert by_name["flow_temperature;function=maximum"].value == Decimal("75.00")
    assert by_name["energy;storage=1"].value == Decimal(1_234_567)
    assert by_name["time_point_date;storage=1"].value == date(2026, 1, 1)
    assert by_name["time_point_date_and_time"].value == datetime(2026, 1, 1, 9, 15, tzinfo=BERLIN)
    assert all(r.meter_time == datetime(2026, 1, 1, 9, 15, tzinfo=BERLIN) for r in readings)
    assert all(r.status == "00" and r.captured_at == FIXED_NOW for r in readings)
    first, second = model.telegrams()  # the raw frame is the telegram the value came from
    assert energy.raw[:4] == first.to_bytes()[:4] and by_name["energy;storage=1"].raw[:4] == second.to_bytes()[:4]
    assert [r for r in sink.records if isinstance(r, Reading)] == readings
    assert collector.status()["link"]["frames"] == 3


async def test_a_captured_meter_read_by_secondary_address_gives_the_decoded_values():
    bus = SimulatedBus([SimulatedSlave(1, FrameTelegrams.from_files([frame_file("EDC")]))])
    async with serve_pty(bus, Pacing(LineSettings(9600))) as server:
        bus_config, meters = config(server.path, ("edc", {"secondary": "11120895"}))
        collector = MBusCollector(bus_config, meters, ListSink(), ZoneInfo("UTC"), clock=lambda: FIXED_NOW)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("edc"), 10)
    expected = decode_response(bytes.fromhex(frame_file("EDC").read_text())).response
    utc = ZoneInfo("UTC")
    assert [r.value for r in readings] == [  # dates and times become aware in the gateway's zone
        rec.value.replace(tzinfo=utc) if isinstance(rec.value, datetime) else rec.value for rec in expected.records]
    assert [r.unit for r in readings] == [rec.unit for rec in expected.records]
    assert {r.device for r in readings} == {"EDC-11120895-02-04"}


async def test_a_status_byte_with_error_flags_still_gives_readings_with_the_status_untouched():
    bus = SimulatedBus([SimulatedSlave(2, MeterModel(status=0x14))])
    async with serve_pty(bus, Pacing(LineSettings(9600))) as server:
        collector = MBusCollector(*config(server.path, ("m", {"address": 2})), ListSink(), BERLIN, clock=lambda: FIXED_NOW)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("m"), 10)
    assert readings and {r.status for r in readings} == {"14"}


async def test_an_application_error_fails_the_read_without_readings():
    errors = FRAMES.parent / "error-frames"
    bus = SimulatedBus([SimulatedSlave(3, FrameTelegrams.from_files([errors / "application_busy.hex"]))])
    sink = ListSink()
    async with serve_pty(bus, Pacing(LineSettings(9600))) as server:
        collector = MBusCollector(*config(server.path, ("busy", {"address": 3})), sink, BERLIN, clock=lambda: FIXED_NOW)
        async with running(collector):
            with pytest.raises(MeterApplicationError):
                await asyncio.wait_for(collector.read_now("busy"), 10)
    assert not [r for r in sink.records if isinstance(r, Reading)]
    assert [r.code for r in sink.records] == ["comm.failed"]


async def test_a_meter_that_goes_mute_raises_comm_failed_then_comm_recovered_and_others_go_on():
    bus = SimulatedBus([SimulatedSlave(1, MeterModel(identification="00000001")),
                        SimulatedSlave(2, MeterModel(identification="00000002"))])
    sink = ListSink()
    async with serve_pty(bus, Pacing(LineSettings(9600))) as server:
        bus_config, meters = config(server.path, ("one", {"address": 1}), ("two", {"address": 2}))
        collector = MBusCollector(bus_config, meters, sink, BERLIN, clock=lambda: FIXED_NOW)
        async with running(collector):
            assert await asyncio.wait_for(collector.read_now("one"), 10)
            bus.slave(1).mute = True
            with pytest.raises(DeviceTimeout, match="address 1 did not answer"):
                await asyncio.wait_for(collector.read_now("one"), 10)
            assert await asyncio.wait_for(collector.read_now("two"), 10)
            bus.slave(1).mute = False
            assert await asyncio.wait_for(collector.read_now("one"), 10)
    events = [r for r in sink.records if isinstance(r, Event)]
    assert [(e.code, e.details["meter"]) for e in events] == [("comm.failed", "one"), ("comm.recovered", "one")]
    assert events[0].device == "GWY-00000001-01-04"
    assert collector.status()["meters"]["one"]["failures"] == 1
    assert collector.status()["link"]["timeouts"] == 2  # one try and one retry
