"""The polling loop: scheduled reads, on-demand reads first, a failing meter never stops others."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.collectors.base import PolledBus
from gateway.errors import DeviceTimeout
from gateway.model import Event, Reading


@dataclass(frozen=True)
class Every:
    interval_s: int = 1
    offset_s: int = 0


@dataclass(frozen=True)
class FakeMeter:
    name: str
    schedule: Every = field(default_factory=Every)


class ListSink:
    def __init__(self):
        self.records = []

    async def commit(self, records, *, state=None):
        self.records.extend(records)


class ScriptedBus(PolledBus[FakeMeter]):
    """A bus whose meters answer from a script: a value, or an exception to raise."""

    def __init__(self, meters, sink, script, clock):
        super().__init__("bus1", meters, sink, ZoneInfo("UTC"), clock=clock)
        self.script = script
        self.order: list[str] = []

    @asynccontextmanager
    async def connect(self):
        yield

    async def read_meter(self, meter):
        self.order.append(meter.name)
        answer = self.script[meter.name].pop(0) if self.script[meter.name] else Decimal(1)
        if isinstance(answer, Exception):
            raise answer
        return [Reading(device=f"dev-{meter.name}", quantity="energy", value=answer, unit="Wh",
                        captured_at=datetime.now(timezone.utc))]


class FastClock:
    """A clock that runs a thousand times faster than real time, so slots come quickly."""

    def __init__(self):
        self.start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        self.loop_start = None

    def __call__(self):
        loop = asyncio.get_running_loop()
        if self.loop_start is None:
            self.loop_start = loop.time()
        return self.start + timedelta(seconds=(loop.time() - self.loop_start) * 1000)


async def run_until(bus, condition):
    task = asyncio.ensure_future(bus.run())
    try:
        async with asyncio.timeout(10):
            while not condition():
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_failing_meter_is_reported_once_and_does_not_stop_the_others():
    sink = ListSink()
    bus = ScriptedBus([FakeMeter("a"), FakeMeter("b")], sink,
                      {"a": [DeviceTimeout("no reply"), DeviceTimeout("no reply"), Decimal(5)], "b": []}, FastClock())
    await run_until(bus, lambda: bus.order.count("a") >= 4 and bus.order.count("b") >= 4)
    events = [r for r in sink.records if isinstance(r, Event)]
    assert [e.code for e in events][:2] == ["comm.failed", "comm.recovered"]
    assert events[1].details["failures"] == 2
    assert bus.health["b"].failures == 0 and bus.health["a"].failures == 2
    assert any(isinstance(r, Reading) and r.device == "dev-b" for r in sink.records)


async def test_an_on_demand_read_goes_ahead_and_returns_the_readings():
    sink = ListSink()
    slow = [FakeMeter(f"m{i}", Every(interval_s=3600)) for i in range(3)]
    bus = ScriptedBus(slow, sink, {m.name: [Decimal(7)] for m in slow}, FastClock())
    task = asyncio.ensure_future(bus.run())
    try:
        async with asyncio.timeout(10):
            readings = await bus.read_now("m2")
    finally:
        task.cancel()
    assert [r.value for r in readings] == [Decimal(7)]
    assert bus.order[0] == "m2"
    assert readings[0] in sink.records


async def test_an_on_demand_read_of_a_dead_meter_raises_its_error():
    bus = ScriptedBus([FakeMeter("a", Every(interval_s=3600))], ListSink(), {"a": [DeviceTimeout("silent")]}, FastClock())
    task = asyncio.ensure_future(bus.run())
    try:
        with pytest.raises(DeviceTimeout):
            async with asyncio.timeout(10):
                await bus.read_now("a")
    finally:
        task.cancel()


async def test_reading_an_unknown_meter_is_a_key_error():
    bus = ScriptedBus([FakeMeter("a")], ListSink(), {"a": []}, FastClock())
    with pytest.raises(KeyError):
        await bus.read_now("nope")


async def test_stop_lets_the_read_in_progress_finish_and_then_run_returns():
    sink = ListSink()
    started = asyncio.Event()
    release = asyncio.Event()

    class SlowBus(ScriptedBus):
        async def read_meter(self, meter):
            started.set()
            await release.wait()
            return await super().read_meter(meter)

    bus = SlowBus([FakeMeter("a")], sink, {"a": [Decimal(3)]}, FastClock())
    task = asyncio.ensure_future(bus.run())
    async with asyncio.timeout(10):
        await started.wait()
        bus.stop()
        release.set()
        await task
    assert [r.value for r in sink.records if isinstance(r, Reading)] == [Decimal(3)]


async def test_a_meter_that_keeps_failing_becomes_unreachable_once_with_the_reason_and_then_recovers():
    from gateway.collectors.health import Thresholds

    sink = ListSink()
    script = {"a": [DeviceTimeout("no reply")] * 4 + [Decimal(7)]}
    bus = ScriptedBus([FakeMeter("a")], sink, script, FastClock())
    bus.use_thresholds(Thresholds(failing_after=2, unreachable_after=3))
    await run_until(bus, lambda: bus.order.count("a") >= 6)
    events = [r for r in sink.records if isinstance(r, Event)]
    assert [(e.code, e.details.get("reason")) for e in events] == [
        ("comm.failed", "timeout"), ("comm.unreachable", "timeout"), ("comm.recovered", None)]
    assert events[2].details["previous"] == "unreachable" and events[2].details["failures"] == 4
    assert bus.status()["meters"]["a"]["state"] == "ok"
