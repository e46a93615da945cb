"""What the operations tests share: the simulated meter (gateway/simulators/dlms.py) on a
DLMS line read by the real collector, a real store, and the relay running on them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.app import StoreSink
from gateway.collectors.dlms import DlmsCollector
from gateway.config import DlmsLine, DlmsMeter, OperationsSection, StoreSection
from gateway.model import Event
from gateway.operations import Operation, OperationRelay, State
from gateway.simulators.dlms import MeterServer, SimulatedDlmsMeter
from gateway.store import Store
from tests.collectors.polling import running

UTC = ZoneInfo("UTC")
SIM_DEVICE = "dlms-SIM0000000000001"
TIMEOUT_S = 20


def sim_line(address: str, **kwargs: Any) -> DlmsLine:
    options = {"response_timeout_ms": 500, "session_timeout_s": 10, "retries": 0, **kwargs}
    return DlmsLine(name="dlms1", protocol="dlms", tcp=address, interface="wrapper", **options)


def sim_meter_config(name: str = "m1", **kwargs: Any) -> DlmsMeter:
    return DlmsMeter(name=name, protocol="dlms", bus="dlms1", system_title="4D4D4D0000000001",
                     objects=["1.0.1.8.0.255"], schedule={"interval_s": 86400}, **kwargs)


def settings(**kwargs: Any) -> OperationsSection:
    return OperationsSection(**{"retry_s": 0.3, "poll_s": 0.05, **kwargs})


@dataclass
class Rig:
    """The relay, its store and line, and the simulated meter behind a server that can go
    down and come back."""

    relay: OperationRelay
    store: Store
    collector: DlmsCollector
    server: MeterServer
    config: dict[str, Any]

    @property
    def meter(self) -> SimulatedDlmsMeter:
        return self.server.meter

    async def submit(self, name: str, args: dict[str, Any] | None = None, *, identity: str = "local",
                     meter: str = "m1", **options: Any) -> Operation:
        return await self.relay.submit(meter, name, args or {}, identity=identity, source="test", **options)

    async def outcome(self, operation: Operation, timeout: float = TIMEOUT_S) -> Operation:
        done = await self.relay.wait(operation.id, timeout)
        assert done is not None, f"operation {operation.id} did not end within {timeout} s"
        return done

    async def until(self, predicate, timeout: float = TIMEOUT_S) -> Operation:
        """Poll the store until ``predicate(all operations)`` holds; returns nothing useful."""
        async with asyncio.timeout(timeout):
            while not predicate(await self.relay.queue.list()):
                await asyncio.sleep(0.02)

    async def state_of(self, operation: Operation) -> State:
        return (await self.relay.queue.get(operation.id)).state

    async def events(self, code: str) -> list[Event]:
        return await events_of(self.store, code)


async def events_of(store: Store, code: str) -> list[Event]:
    stored = await store.read_after(0, 100_000)
    return [s.record for s in stored if isinstance(s.record, Event) and s.record.code == code]


def results_of(event: Event) -> list[dict[str, Any]]:
    return json.loads(event.details["results"])


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, meter: SimulatedDlmsMeter | None = None, *, address: str | None = None,
              line_options: dict | None = None, **relay_settings: Any) -> AsyncIterator[Rig]:
    """The relay on a line to the simulated meter (or to the meter at ``address``)."""
    config = {"settings": settings(**relay_settings)}
    server = MeterServer(meter or SimulatedDlmsMeter())
    if address is None:
        await server.start()
    async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
        collector = DlmsCollector(sim_line(address or server.address, **(line_options or {})), [sim_meter_config()],
                                  StoreSink(store), UTC, state=store)
        relay = OperationRelay(lambda: config["settings"], lambda: store, lambda: [collector], state_dir=tmp_path,
                               tz=UTC)
        try:
            async with running(collector), asyncio.TaskGroup() as group:
                task = group.create_task(relay.run())
                async with asyncio.timeout(TIMEOUT_S):
                    await relay.ready.wait()
                try:
                    yield Rig(relay, store, collector, server, config)
                finally:
                    task.cancel()
        finally:
            await server.stop()
