"""Build the gateway from its configuration and supervise it.

One TaskGroup holds everything: a supervised task per bus, one per uplink, and the
housekeeping task (retention, status file). A failing bus or uplink restarts alone.
Shutdown order (DESIGN.md): stop polling → let in-flight reads finish (bounded) → flush the
uplinks (bounded) → close the store.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.collectors.base import Collector, StateStore
from gateway.config import GatewayConfig
from gateway.errors import StoreFullError
from gateway.model import Event, Reading, Record, Severity, utc_now
from gateway.supervise import ChildState, supervise
from gateway.systemd import Notifier

log = logging.getLogger(__name__)

#: Which class collects each bus protocol: ``module:Class`` with
#: ``from_config(bus, meters, sink, tz, *, state)``; ``state`` is the durable small state
#: (:class:`~gateway.collectors.base.StateStore`, the store) for collectors that keep any.
COLLECTORS = {
    "mbus": "gateway.collectors.mbus:MBusCollector",
    "dlms": "gateway.collectors.dlms:DlmsCollector",
    "wmbus": "gateway.collectors.wmbus:WMBusReceiver",
    "modbus": "gateway.collectors.modbus:ModbusCollector",
}

STATUS_FILE = "status.json"


@dataclass(frozen=True)
class Timing:
    """Bounds of the shutdown and housekeeping; tests shorten them."""

    stop_polling_s: float = 10.0
    drain_uplinks_s: float = 15.0
    housekeeping_s: float = 30.0
    status_file_s: float = 10.0


class StoreSink:
    """The collectors' sink: commits to the store, and waits out a full disk.

    When the disk is full the store has already tried to make room by dropping the oldest
    records (with events); if the write still fails the caller waits here, so the bus stops
    polling instead of collecting data that could not be kept, and resumes when space returns.
    """

    def __init__(self, store: Any, listeners: Sequence[Callable[[Sequence[Record], list[int]], None]] = (),
                 *, retry_s: float = 5.0) -> None:
        self._store = store
        self._listeners = list(listeners)
        self._retry_s = retry_s
        self.waiting_for_space = False

    async def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        while True:
            try:
                seqs = await self._store.append(records)
                break
            except StoreFullError:
                if not self.waiting_for_space:
                    log.error("store is full; polling waits until space returns")
                self.waiting_for_space = True
                await asyncio.sleep(self._retry_s)
        self.waiting_for_space = False
        for listener in self._listeners:
            listener(records, seqs)


def _collector_class(protocol: str) -> Any:
    module_name, _, class_name = COLLECTORS[protocol].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_collectors(config: GatewayConfig, sink: StoreSink, state: StateStore | None = None) -> list[Collector]:
    tz = ZoneInfo(config.gateway.timezone)
    collectors = []
    for bus in config.buses:
        meters = [m for m in config.meters if m.bus == bus.name]
        collectors.append(_collector_class(bus.protocol).from_config(bus, meters, sink, tz, state=state))
    return collectors


@dataclass
class Gateway:
    """The running gateway. ``run(stop)`` works until ``stop`` is set, then shuts down in order."""

    config: GatewayConfig
    timing: Timing = field(default_factory=Timing)
    #: Called with each committed batch and its sequence numbers (the demo prints them).
    listeners: Sequence[Callable[[Sequence[Record], list[int]], None]] = ()
    started_monotonic: float = field(default_factory=time.monotonic)
    #: READY/STATUS/STOPPING and the watchdog for systemd; a no-op outside it.
    notifier: Notifier = field(default_factory=Notifier.from_environment)

    def __post_init__(self) -> None:
        self.collectors: list[Collector] = []
        self.uplinks: list[Any] = []
        self.children: dict[str, ChildState] = {}
        self.store: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        from gateway.signing import SigningKey
        from gateway.store import Store

        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        async with Store(config.store_path, config.store) as store:
            self.store = store
            key = SigningKey.load_or_create(config.signing_key_path)
            sink = StoreSink(store, self.listeners)
            self.collectors = build_collectors(config, sink, state=store)
            self.uplinks = [self._mqtt_uplink(uplink, store, key) for uplink in config.uplinks.mqtt]
            await sink.commit([self._event("gateway.start", f"gateway {__version__} started",
                                           {"version": __version__, "buses": len(self.collectors),
                                            "meters": len(config.meters)})])
            try:
                await self._supervise_all(store, stop)
            finally:
                await self._write_status()
                self.store = None

    async def _supervise_all(self, store: Any, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            polling = [group.create_task(self._supervised(f"bus {c.name}", c.run)) for c in self.collectors]
            uplinks = [group.create_task(self._supervised(f"uplink {u.name}", u.run)) for u in self.uplinks]
            housekeeping = group.create_task(self._housekeeping(store))
            watchdog = group.create_task(self.notifier.watchdog(self.store_answers))
            await asyncio.sleep(0)  # let every child begin before telling systemd we are up
            self.notifier.ready(f"running: {len(self.collectors)} buses, {len(self.config.meters)} meters, "
                                f"{len(self.uplinks)} uplinks")
            await stop.wait()
            log.info("stopping: polling first")
            self.notifier.stopping("stopping: finishing reads, draining uplinks")
            for collector, task in zip(self.collectors, polling):
                collector.stop()
                child = self.children.get(f"bus {collector.name}")
                if child is not None and not child.running:
                    task.cancel()  # waiting out a back-off: nothing is in flight
            await _finish_bounded(polling, self.timing.stop_polling_s)
            await store.append([self._event("gateway.stop", "gateway stopped", {"reason": "requested"})])
            await self._drain(store, self.timing.drain_uplinks_s)
            for task in (*uplinks, housekeeping, watchdog):
                task.cancel()
            await _finish_bounded([*uplinks, housekeeping, watchdog], 5.0)

    async def store_answers(self) -> bool:
        """The watchdog's health check: the store writer answers (the watchdog bounds the wait)."""
        if self.store is None:
            return False
        await self.store.stats()
        return True

    async def _supervised(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        state = self.children.setdefault(name, ChildState(name))

        async def report(child: ChildState, exc: BaseException) -> None:
            if self.store is not None:
                await self.store.append([self._event("gateway.child_restart", f"{child.name} failed: {exc}",
                                                     {"child": child.name, "restarts": child.restarts})])

        await supervise(state, factory, on_failure=report)

    async def _drain(self, store: Any, bound_s: float) -> None:
        """Give the uplinks a bounded time to send what is stored."""
        if not self.uplinks:
            return
        try:
            async with asyncio.timeout(bound_s):
                while True:
                    cursors = [await store.cursor(u.name) for u in self.uplinks]
                    if min(cursors) >= store.last_seq:
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.warning("uplinks did not send everything within %.0f s; the rest goes after the next start", bound_s)

    async def _housekeeping(self, store: Any) -> None:
        last_retention = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - last_retention >= self.timing.housekeeping_s:
                last_retention = loop.time()
                await store.enforce_retention()
            await self._write_status()
            await asyncio.sleep(self.timing.status_file_s)

    async def status(self) -> dict[str, Any]:
        """What the HES sees on the retained status topic and ``gateway status`` prints."""
        store_stats: dict[str, Any] = {}
        if self.store is not None:
            stats = await self.store.stats()
            store_stats = stats.as_dict() if hasattr(stats, "as_dict") else dict(vars(stats))
        return {
            "gateway": self.config.gateway.id,
            "version": __version__,
            "state": "online",
            "time": utc_now().isoformat(),
            "uptime_s": round(time.monotonic() - self.started_monotonic),
            "store": store_stats,
            "buses": {c.name: c.status() for c in self.collectors},
            "uplinks": {u.name: u.status() for u in self.uplinks if hasattr(u, "status")},
            "children": {name: {"restarts": s.restarts, "last_error": s.last_error, "running": s.running}
                         for name, s in self.children.items()},
        }

    async def read_now(self, meter: str) -> list[Reading]:
        for collector in self.collectors:
            if meter in collector.meters():
                return await collector.read_now(meter)
        raise KeyError(f"no meter is named {meter!r}")

    async def _write_status(self) -> None:
        status = await self.status()
        path = self.config.state_dir / STATUS_FILE
        await asyncio.to_thread(_write_atomically, path, json.dumps(status, default=str, indent=1).encode())

    def _mqtt_uplink(self, uplink_config: Any, store: Any, key: Any) -> Any:
        from gateway.uplinks.mqtt import MqttPublisher

        return MqttPublisher(
            uplink_config,
            gateway_id=self.config.gateway.id,
            store=store,
            signer=key,
            status=self.status,
            on_demand_read=self.read_now,
        )

    def _event(self, code: str, message: str, details: dict[str, str | int]) -> Event:
        return Event(code=code, severity=Severity.INFO, message=message, occurred_at=utc_now(),
                     source="gateway", details=details)


async def _finish_bounded(tasks: Sequence[asyncio.Task[Any]], bound_s: float) -> None:
    """Wait at most ``bound_s`` for tasks to finish, then cancel what is left."""
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=bound_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
