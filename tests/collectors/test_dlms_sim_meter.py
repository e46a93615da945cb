"""The DLMS collector against a small simulated meter (the codec's server association) for
what the gurux meter cannot show: a clock that is off and gets set, the disconnect control
operated as a command, an event log read incrementally into events."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.codecs.dlms.axdr import Data, DataType
from gateway.codecs.dlms.obis import Obis
from gateway.collectors.dlms import DlmsCollector, MemoryState
from gateway.collectors.dlms_session import DataAccessError
from gateway.app import StoreSink
from gateway.config import StoreSection
from gateway.model import Event, Reading, value_text
from gateway.store import Store

from tests.collectors.dlms_helpers import line, meter
from tests.collectors.dlms_sim_meter import DISCONNECT, SimMeter, serving
from tests.collectors.polling import ListSink, running

UTC = ZoneInfo("UTC")


def sim_meter(tmp_path, **kwargs):
    return meter(tmp_path, **{"objects": ["1.0.1.8.0.255"], **kwargs})


async def test_a_clock_off_by_more_than_the_threshold_is_set_and_raises_clock_set(tmp_path):
    sim = SimMeter(clock_offset_s=-300)
    sink = ListSink()
    async with serving(sim) as address:
        collector = DlmsCollector(line(tcp=address), [sim_meter(tmp_path, clock_sync={"threshold_s": 10, "set": True})],
                                  sink, UTC)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("m1"), 10)
    by_name = {r.quantity: r for r in readings}
    assert -310 < by_name["clock_deviation_s"].value < -290
    assert by_name["active_energy_import"].value == Decimal("123456.7")
    [event] = sink.of(Event)
    assert event.code == "clock.set" and event.device == "dlms-SIM0000000000001"
    assert -310 < Decimal(event.details["before_s"]) < -290 and abs(Decimal(event.details["after_s"])) < 2
    assert [name for name, _ in sim.sets] == ["0.0.1.0.0.255:8:2"]
    assert abs(sim.clock_offset_s) < 2


async def test_a_clock_within_the_threshold_is_left_alone(tmp_path):
    sim = SimMeter(clock_offset_s=3)
    sink = ListSink()
    async with serving(sim) as address:
        collector = DlmsCollector(line(tcp=address), [sim_meter(tmp_path, clock_sync={"threshold_s": 10, "set": True})],
                                  sink, UTC)
        async with running(collector):
            await asyncio.wait_for(collector.read_now("m1"), 10)
    assert not sim.sets and not sink.of(Event)


async def test_a_drifting_clock_without_permission_to_set_it_raises_clock_drift(tmp_path):
    sim = SimMeter(clock_offset_s=120)
    sink = ListSink()
    async with serving(sim) as address:
        collector = DlmsCollector(line(tcp=address), [sim_meter(tmp_path, clock_sync={"threshold_s": 10})], sink, UTC)
        async with running(collector):
            await asyncio.wait_for(collector.read_now("m1"), 10)
    assert [e.code for e in sink.of(Event)] == ["clock.drift"] and not sim.sets


async def test_adjust_to_quarter_is_an_action_on_the_clock(tmp_path):
    sim = SimMeter(clock_offset_s=60)
    sink = ListSink()
    config = sim_meter(tmp_path, clock_sync={"threshold_s": 10, "set": True, "method": "adjust_to_quarter"})
    async with serving(sim) as address:
        collector = DlmsCollector(line(tcp=address), [config], sink, UTC)
        async with running(collector):
            await asyncio.wait_for(collector.read_now("m1"), 10)
    assert sim.actions == [(8, 1)]  # adjust_to_quarter is method 1 (Blue Book 4.5.1)
    assert sink.of(Event)[0].details["method"] == "adjust_to_quarter"


async def test_the_disconnect_control_is_operated_ahead_of_scheduled_reads_and_its_state_read_back(tmp_path):
    sim = SimMeter()
    sink = ListSink()
    config = sim_meter(tmp_path, objects=["0.0.96.3.10.255:70:2", "0.0.96.3.10.255:70:3"])
    async with serving(sim) as address:
        collector = DlmsCollector(line(tcp=address), [config], sink, UTC)
        async with running(collector):
            before = {r.quantity: r.value for r in await asyncio.wait_for(collector.read_now("m1"), 10)}
            done = await asyncio.wait_for(collector.operate("m1", DISCONNECT, 70, 1), 10)
            with pytest.raises(DataAccessError, match="object-unavailable"):
                await asyncio.wait_for(collector.operate("m1", "0.0.96.3.11.255", 70, 1), 10)
    assert before["disconnect_output_state"] is True and before["disconnect_control_state"] == Decimal(1)
    assert done.result.success and sim.output_state is False and sim.actions[0] == (70, 1)
    assert {r.quantity: r.value for r in done.readings} == {"disconnect_output_state": False,
                                                           "disconnect_control_state": Decimal(0)}
    action = [e for e in sink.of(Event) if e.code == "meter.action"]
    assert action[0].details == {"meter": "m1", "obis": "0.0.96.3.10.255", "class": 70, "method": 1,
                                 "result": "success"}
    assert collector.status()["counters"]["on_demand"] == 3


async def test_an_event_log_becomes_meter_events_once_each_across_reads(tmp_path):
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    sim = SimMeter(events=[(start, 1), (start + timedelta(minutes=10), 47)])
    state = MemoryState()
    sink = ListSink(state)
    config = sim_meter(tmp_path, event_logs=["0.0.99.98.0.255"])
    async with serving(sim) as address:
        collector = DlmsCollector(line(tcp=address), [config], sink, UTC, state=state)
        async with running(collector):
            await asyncio.wait_for(collector.read_now("m1"), 10)
            sim.events.append((start + timedelta(minutes=70), 48))
            await asyncio.wait_for(collector.read_now("m1"), 10)
            await asyncio.wait_for(collector.read_now("m1"), 10)
    events = [e for e in sink.of(Event) if e.code == "meter.event"]
    assert [(e.occurred_at, e.details["event_code"]) for e in events] == [
        (start, 1), (start + timedelta(minutes=10), 47), (start + timedelta(minutes=70), 48)]
    assert events[0].details["log"] == "0.0.99.98.0.255" and events[0].device == "dlms-SIM0000000000001"
    assert await state.get_state("dlms.log.m1.0.0.99.98.0.255") == (start + timedelta(minutes=70)).isoformat()
    assert all(isinstance(r, Reading) for r in sink.records if r not in sink.of(Event))


FIRMWARE = Obis(1, 0, 0, 2, 0, 255)


class BadTextMeter(SimMeter):
    """Sends its firmware version as a utf8-string that is not UTF-8 ("A", 0xFF, "B")."""

    def get(self, request):
        if (request.attribute.class_id, request.attribute.instance) == (1, FIRMWARE):
            return Data(DataType.UTF8_STRING, b"A\xffB")
        return super().get(request)


async def test_a_utf8_string_that_is_not_utf8_is_kept_as_bytes_and_the_other_values_are_read(tmp_path):
    config = sim_meter(tmp_path, objects=["1.0.1.8.0.255", "1.0.0.2.0.255:1:2"])
    async with serving(BadTextMeter()) as address, Store(tmp_path / "store.sqlite", StoreSection()) as store:
        collector = DlmsCollector(line(tcp=address), [config], StoreSink(store), UTC)
        async with running(collector):
            await asyncio.wait_for(collector.read_now("m1"), 10)
        by_name = {s.record.quantity: s.record for s in await store.read_after(0, 100)}
    assert by_name["firmware_version"].value == b"A\xffB"
    assert value_text(by_name["firmware_version"].value) == "41ff42"  # reported as hex
    assert by_name["active_energy_import"].value == Decimal("123456.7")
