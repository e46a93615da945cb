"""Build the gateway from its configuration and supervise it.

One TaskGroup holds everything: a supervised task per bus, one per uplink, the housekeeping
task (retention, status file, clock watch), the event writer, the control socket and the
watchdog. A failing bus or uplink restarts alone.
Shutdown order (DESIGN.md): stop polling → let in-flight reads finish (bounded) → flush the
uplinks (bounded) → close the store.

Reconfiguration happens in the running process, under the same TaskGroup
(:meth:`Gateway.apply`): the new configuration is validated, everything it needs that is
new is built first (collectors of changed buses, uplinks with changed settings, a signing
key at a new path) — a failure there changes nothing — then the
changed parts are stopped and the new ones started, and the new buses must open within
``apply_grace_s``. If one does not, the previous configuration is switched back the same
way. Parts that did not change keep running untouched (and keep their counters).
Retention and durability settings of ``[store]`` apply to the open store; ``store.path``
and ``gateway.state_dir`` cannot change while the gateway runs (every collector, uplink and
the DLMS invocation counters hold the open store): a configuration that changes them is
refused, and takes effect with a restart.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.clock import ClockWatch, time_quality
from gateway.collectors.base import Collector, StateStore
from gateway.collectors.health import Thresholds
from gateway.config import Bus, GatewayConfig
from gateway.errors import ConfigError, GatewayError, StoreFullError
from gateway.events import make_event
from gateway.model import Event, Reading, Record, utc_now
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
    "dlms-push": "gateway.collectors.dlms_push:DlmsPushReceiver",
}

STATUS_FILE = "status.json"
#: In the state directory: the high-water marks of the store's counters (DLMS invocation
#: counters), see :mod:`gateway.store`.
HIGH_WATER_FILE = "counters.high-water"
#: Events kept in memory while the store cannot take them (a broken store; a full disk
#: makes the writer wait instead).
MAX_UNWRITTEN_EVENTS = 10_000


@dataclass(frozen=True)
class Timing:
    """Bounds of the shutdown and housekeeping; tests shorten them."""

    stop_polling_s: float = 10.0
    drain_uplinks_s: float = 15.0
    housekeeping_s: float = 30.0
    status_file_s: float = 10.0
    clock_check_s: float = 10.0


class StoreSink:
    """The collectors' sink: commits to the store, and waits out a full disk.

    When the disk is full the store has already tried to make room by dropping the oldest
    records (with events); if the write still fails the caller waits here, so the bus stops
    polling instead of collecting data that could not be kept, and resumes when space returns.
    ``tag`` (the device lifecycle's tagger) sees every batch first: it tags the readings of
    registered devices and adds the events their flags and clocks raise.
    """

    def __init__(self, store: Any, listeners: Sequence[Callable[[Sequence[Record], list[int]], None]] = (),
                 *, retry_s: float = 5.0,
                 tag: Callable[[Sequence[Record]], Awaitable[list[Record]]] | None = None) -> None:
        self.store = store  # swapped when a new configuration moves the store
        self._listeners = list(listeners)
        self._retry_s = retry_s
        self.tag = tag
        self.waiting_for_space = False

    async def commit(self, records: Sequence[Record], *, state: Mapping[str, str] | None = None) -> list[int]:
        """Store ``records`` (tagged) and ``state`` in one transaction; the records' sequence numbers."""
        if not records and not state:
            return []
        count = len(records)  # the tagger keeps them in order and adds its events after them
        if self.tag is not None and records:
            records = await self.tag(records)
        while True:
            try:
                seqs = await self.store.append(records, state=state)
                break
            except StoreFullError:
                if not self.waiting_for_space:
                    log.error("store is full; polling waits until space returns")
                self.waiting_for_space = True
                await asyncio.sleep(self._retry_s)
        self.waiting_for_space = False
        for listener in self._listeners:
            listener(records, seqs)
        return seqs[:count]


def _collector_class(protocol: str) -> Any:
    module_name, _, class_name = COLLECTORS[protocol].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def bus_thresholds(config: GatewayConfig, bus: Bus) -> Thresholds:
    """The bus's own health thresholds, else the ``[gateway]`` ones."""
    failing_after = getattr(bus, "failing_after", None) or config.gateway.failing_after
    unreachable_after = getattr(bus, "unreachable_after", None) or config.gateway.unreachable_after
    return Thresholds(failing_after, unreachable_after)


def build_collector(config: GatewayConfig, bus: Bus, sink: StoreSink, state: StateStore | None = None) -> Collector:
    meters = [m for m in config.meters if m.bus == bus.name]
    collector = _collector_class(bus.protocol).from_config(bus, meters, sink, ZoneInfo(config.gateway.timezone),
                                                          state=state)
    if hasattr(collector, "use_thresholds"):
        collector.use_thresholds(bus_thresholds(config, bus))
    return collector


def build_collectors(config: GatewayConfig, sink: StoreSink, state: StateStore | None = None) -> list[Collector]:
    return [build_collector(config, bus, sink, state) for bus in config.buses]


def collector_fingerprint(config: GatewayConfig, bus: Bus) -> str:
    """What a bus's collector is built from: when it changes, the collector is rebuilt."""
    meters = [m.model_dump(mode="json") for m in config.meters if m.bus == bus.name]
    thresholds = bus_thresholds(config, bus)
    return _canonical([bus.model_dump(mode="json"), meters, config.gateway.timezone, thresholds.failing_after,
                       thresholds.unreachable_after])


def uplink_configs(config: GatewayConfig) -> list[Any]:
    """The uplinks to run: MQTT publishers and enabled DLMS/COSEM servers."""
    return [*config.uplinks.mqtt, *(server for server in config.uplinks.dlms if server.enabled)]


def uplink_fingerprint(config: GatewayConfig, uplink: Any) -> str:
    return _canonical([uplink.model_dump(mode="json"), config.gateway.id, str(config.store_path)])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class ApplyFailed(GatewayError):
    """A new configuration could not be started; ``touched``: parts of it were running."""

    def __init__(self, reason: str, *, touched: bool) -> None:
        super().__init__(reason)
        self.touched = touched


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
    #: The TOML text ``config`` came from (without registry meters) and where it came from;
    #: with a text, versions are kept in STATE_DIR/config and reconfiguration is possible.
    config_text: str | None = None
    config_source: str = "start"
    #: The operator's file, read again on SIGHUP (:meth:`request_reload`).
    operator_file: Path | None = None
    clock_watch: ClockWatch | None = None

    def __post_init__(self) -> None:
        self.collectors: list[Collector] = []
        self.uplinks: list[Any] = []
        self.children: dict[str, ChildState] = {}
        self.store: Any = None
        self.sink: StoreSink | None = None
        self.key: Any = None
        #: Why the gateway stops: "requested" unless the signal handler says which signal.
        self.stop_reason = "requested"
        self.last_status: dict[str, Any] = {}
        self._group: asyncio.TaskGroup | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._fingerprints: dict[str, str] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._apply_lock = asyncio.Lock()
        self._reload_wanted = asyncio.Event()
        self._metrics: Any = None
        self.lifecycle: Any = None
        self._status_failing = False
        #: Events taken from the queue but not yet committed (kept across a writer restart).
        self._unwritten: list[Event] = []
        self.relay: Any = None

    # -- life ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        from gateway.config_versions import ConfigVersions

        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.versions = ConfigVersions(config.state_dir, config.gateway.config_versions)
        self.store = store = await _open_store(config)
        try:
            self.key = await self._load_key(config)
            from gateway.lifecycle.service import DeviceLifecycle

            self.lifecycle = DeviceLifecycle(self)
            await self.lifecycle.start()
            self.sink = sink = StoreSink(store, self.listeners, tag=self.lifecycle.tagger.tag)
            self.collectors = [self._hooked(c) for c in build_collectors(config, sink, state=store)]
            self.relay = self._operations_relay()
            self.uplinks = [self._uplink(uplink, store, self.key) for uplink in uplink_configs(config)]
            self._fingerprints = {
                **{f"bus {bus.name}": collector_fingerprint(config, bus) for bus in config.buses},
                **{f"uplink {u.name}": uplink_fingerprint(config, u) for u in uplink_configs(config)}}
            await sink.commit(await self._start_events(store))
            # Everything built so far lives as long as the gateway: keep it out of the
            # collector's full passes, whose 10-20 ms pauses would stall serial timing.
            gc.freeze()
            try:
                await self._supervise_all(store, stop)
            except Exception as exc:
                await self._best_effort_append(make_event(
                    "gateway.stop", f"gateway stopped by a fatal error: {exc}", source="gateway",
                    details={"reason": "fatal error", "error": f"{type(exc).__name__}: {exc}"}))
                raise
        finally:
            try:
                await self._write_status()
            finally:
                await _close_store(self.store)
                self.store = None

    async def _start_events(self, store: Any) -> list[Event]:
        """gateway.start (was the last stop clean?) and config.changed when the
        configuration differs from the last one that ran."""
        from gateway.config_versions import config_hash

        unclean = await store.get_state("gateway.running") == "1"
        await store.set_state("gateway.running", "1")
        reason = "restart after an unclean stop (crash, watchdog or power loss)" if unclean else "start"
        digest = config_hash(self.config)
        events = [make_event("gateway.start", f"gateway {__version__} started ({reason})", source="gateway",
                             details={"version": __version__, "reason": reason, "buses": len(self.collectors),
                                      "meters": len(self.config.meters), "config_hash": digest})]
        if self.config_text is not None:
            previous = (self.versions.index().get("active") or {}).get("hash")
            if previous != digest or self.versions.active_text() is None:
                operator = self.config_text if self.config_source == "operator file" else None
                await asyncio.to_thread(self.versions.record, self.config_text, self.config, self.config_source,
                                        operator_text=operator)
                if previous != digest:
                    events.append(self._config_changed(previous, digest, self.config_source))
        return events

    async def _load_key(self, config: GatewayConfig) -> Any:
        from gateway.signing import SigningKey

        return await asyncio.to_thread(SigningKey.load_or_create, config.signing_key_path)

    async def _supervise_all(self, store: Any, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            for collector in self.collectors:
                self._start(f"bus {collector.name}", collector.run)
            for uplink in self.uplinks:
                self._start(f"uplink {uplink.name}", uplink.run)
            # The helpers are supervised like buses: a full disk or a bad file makes one of
            # them fail and restart alone, never the whole gateway (DESIGN.md).
            helpers = {"helper housekeeping": self._housekeeping, "helper events": self._write_events,
                       "helper watchdog": lambda: self.notifier.watchdog(self.store_answers),
                       "helper control": self._serve_control, "helper reload": self._reload_on_request}
            if self.relay is not None:  # None in a gateway built without run() (tests of supervision)
                helpers["helper operations"] = self.relay.run
            if self.lifecycle is not None:
                helpers["helper lifecycle"] = self.lifecycle.run
            for name, factory in helpers.items():
                self._start(name, factory)
            self._start_metrics(self.config)
            await asyncio.sleep(0)  # let every child begin before telling systemd we are up
            self.notifier.ready(f"running: {len(self.collectors)} buses, {len(self.config.meters)} meters, "
                                f"{len(self.uplinks)} uplinks")
            await stop.wait()
            log.info("stopping (%s): polling first", self.stop_reason)
            self.notifier.stopping("stopping: finishing reads, draining uplinks")
            async with self._apply_lock:  # no reconfiguration while stopping
                await self._stop_collectors(self.collectors)
                await self._flush_events()
                # the stop event and the clean-stop mark together: a crash cannot split them
                await self.store.append([make_event("gateway.stop", f"gateway stopped ({self.stop_reason})",
                                                    source="gateway", details={"reason": self.stop_reason})],
                                        state={"gateway.running": "0"})
                await self._drain(self.store, self.timing.drain_uplinks_s)
                self._stop_metrics()
                rest = [*(self._tasks.pop(f"uplink {u.name}") for u in self.uplinks if f"uplink {u.name}" in self._tasks),
                        *(self._tasks.pop(name) for name in helpers if name in self._tasks)]
                for task in rest:
                    task.cancel()
                await _finish_bounded(rest, 5.0)
            self._group = None

    def _start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        assert self._group is not None
        self.children[name] = ChildState(name)
        self._tasks[name] = self._group.create_task(self._supervised(name, factory))

    async def _stop_collectors(self, collectors: Sequence[Collector]) -> None:
        tasks = []
        for collector in collectors:
            name = f"bus {collector.name}"
            task = self._tasks.pop(name, None)
            collector.stop()
            child = self.children.get(name)
            if task is None:
                continue
            if child is not None and not child.running:
                task.cancel()  # waiting out a back-off: nothing is in flight
            tasks.append(task)
        await _finish_bounded(tasks, self.timing.stop_polling_s)

    async def _cancel(self, names: Sequence[str]) -> None:
        tasks = [self._tasks.pop(name) for name in names if name in self._tasks]
        for task in tasks:
            task.cancel()
        await _finish_bounded(tasks, 5.0)

    async def store_answers(self) -> bool:
        """The watchdog's health check: the store writer answers (the watchdog bounds the wait)."""
        if self.store is None:
            return False
        await self.store.stats()
        return True

    async def _supervised(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        state = self.children.setdefault(name, ChildState(name))

        async def report(child: ChildState, exc: BaseException) -> None:
            self.emit(make_event("gateway.child_restart", f"{child.name} failed: {exc}", source="gateway",
                                 details={"child": child.name, "restarts": child.restarts}))

        await supervise(state, factory, on_failure=report)

    # -- the device lifecycle's host ----------------------------------------------------------

    def _hooked(self, collector: Collector) -> Collector:
        """A collector that tells the lifecycle about the devices it hears and is not
        configured for."""
        if hasattr(collector, "on_discovery") and self.lifecycle is not None:
            collector.on_discovery = self.lifecycle.discovered
        return collector

    async def commit(self, records: Sequence[Record]) -> list[int]:
        """Store records as the collectors do (tagged); their sequence numbers."""
        assert self.sink is not None
        return await self.sink.commit(records)

    async def apply_registry(self, source: str, actor: str) -> dict[str, Any]:
        """Run the configuration again with the registry as it is now (a device went into
        or out of service), transactionally."""
        if self.config_text is None:
            raise GatewayError("this gateway was not started from a configuration text; devices cannot be put "
                               "into service")
        return await self.apply(self.config_text, source, actor=actor)

    # -- events -------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Store ``event`` soon (from code that cannot wait: callbacks, signal handlers)."""
        self._events.put_nowait(event)

    async def _write_events(self) -> None:
        while True:
            if not self._unwritten:
                self._unwritten.append(await self._events.get())
            await self._flush_events()

    async def _flush_events(self) -> None:
        """Commit what is queued; on failure the events wait in ``_unwritten`` for the
        writer's restart (at most MAX_UNWRITTEN_EVENTS, the oldest dropped first)."""
        while not self._events.empty():
            self._unwritten.append(self._events.get_nowait())
        del self._unwritten[:-MAX_UNWRITTEN_EVENTS]
        if self._unwritten and self.sink is not None:
            await self.sink.commit(list(self._unwritten))
            self._unwritten.clear()

    async def _best_effort_append(self, event: Event) -> None:
        if self.store is None:
            return
        try:
            async with asyncio.timeout(5):
                await self.store.append([event])
        except (GatewayError, TimeoutError) as exc:
            log.error("could not store %s: %s", event.code, exc)

    def _uplink_connection(self, name: str, broker: str) -> Callable[[bool, str], None]:
        def changed(connected: bool, what: str) -> None:
            details: dict[str, str | int] = {"uplink": name, "broker": broker}
            if connected:
                self.emit(make_event("uplink.connected", f"uplink {name} {what}", source=name, details=details))
            else:
                self.emit(make_event("uplink.disconnected", f"uplink {name}: {what}", source=name,
                                     details={**details, "error": what}))
        return changed

    def _config_changed(self, old: str | None, new: str, source: str) -> Event:
        return make_event("config.changed", f"configuration {old or 'none'} → {new} ({source})", source="gateway",
                          details={"old_hash": old or "", "new_hash": new, "source": source})

    # -- housekeeping -------------------------------------------------------------------------

    async def _drain(self, store: Any, bound_s: float) -> None:
        """Give the uplinks a bounded time to send what is stored."""
        senders = [u for u in self.uplinks if getattr(u, "has_cursor", True)]  # a DLMS server may only serve
        if not senders:
            return
        try:
            async with asyncio.timeout(bound_s):
                while True:
                    cursors = [await store.cursor(u.name) for u in senders]
                    if min(cursors) >= store.last_seq:
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.warning("uplinks did not send everything within %.0f s; the rest goes after the next start", bound_s)

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        last_retention = last_status = 0.0
        watch = self.clock_watch or ClockWatch(self.config.gateway.clock_step_threshold_s)
        while True:
            if loop.time() - last_retention >= self.timing.housekeeping_s:
                last_retention = loop.time()
                await self.store.enforce_retention()
            if (step := watch.check()) is not None:
                log.warning("the wall clock stepped by %+.1f s", step.step_s)
                self.emit(make_event("clock.stepped", f"the gateway's clock stepped by {step.step_s:+.1f} s",
                                     source="gateway", details={"step_s": f"{step.step_s:+.3f}",
                                                                "before": step.before.isoformat(),
                                                                "after": step.after.isoformat()}))
            if loop.time() - last_status >= self.timing.status_file_s:
                last_status = loop.time()
                await self._write_status()
            await asyncio.sleep(min(self.timing.clock_check_s, self.timing.status_file_s))

    async def status(self) -> dict[str, Any]:
        """What the HES sees on the retained status topic and ``gateway status`` prints."""
        store_stats: dict[str, Any] = {}
        if self.store is not None:
            stats = await self.store.stats()
            store_stats = stats.as_dict() if hasattr(stats, "as_dict") else dict(vars(stats))
        versions = getattr(self, "versions", None)
        active = (versions.index().get("active") or {}) if versions is not None and self.config_text else {}
        return {
            "gateway": self.config.gateway.id,
            "version": __version__,
            "state": "online",
            "time": utc_now().isoformat(),
            "uptime_s": round(time.monotonic() - self.started_monotonic),
            "config": {"hash": active.get("hash"), "number": active.get("number"),
                       "applied_at": active.get("applied_at"), "source": active.get("source")},
            "signing_kid": getattr(self.key, "kid", None),
            "clock": await asyncio.to_thread(time_quality),
            "store": store_stats,
            "buses": {c.name: c.status() for c in self.collectors},
            "uplinks": {u.name: u.status() for u in self.uplinks if hasattr(u, "status")},
            "operations": self.relay.status() if self.relay is not None else None,
            "children": {name: {"restarts": s.restarts, "last_error": s.last_error, "running": s.running}
                         for name, s in self.children.items()},
        }

    async def read_now(self, meter: str) -> list[Reading]:
        for collector in self.collectors:
            if meter in collector.meters():
                return await collector.read_now(meter)
        raise KeyError(f"no meter is named {meter!r}")

    async def _write_status(self) -> None:
        """Best effort: the status file is for `gateway status`; a full disk or a broken
        store must not make it stop the gateway (the store reports those as events)."""
        try:
            status = await self.status()
            self.last_status = json.loads(json.dumps(status, default=str))
            path = self.config.state_dir / STATUS_FILE
            await asyncio.to_thread(_write_atomically, path, json.dumps(status, default=str, indent=1).encode())
        except (OSError, GatewayError) as exc:
            if not self._status_failing:
                log.warning("cannot write the status file: %s", exc)
            self._status_failing = True
        else:
            self._status_failing = False

    def _start_metrics(self, config: GatewayConfig) -> None:
        if config.metrics.listen is None:
            return
        from gateway.metrics import MetricsServer

        self._metrics = MetricsServer(config.metrics, lambda: self.last_status)
        try:
            self._metrics.start()
        except OSError as exc:
            log.error("metrics: cannot listen on %s: %s", config.metrics.listen, exc)
            self._metrics = None

    def _stop_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None

    # -- uplinks ------------------------------------------------------------------------------

    def _uplink(self, uplink_config: Any, store: Any, key: Any) -> Any:
        from gateway.config import MqttUplink

        if isinstance(uplink_config, MqttUplink):
            return self._mqtt_uplink(uplink_config, store, key)
        return self._dlms_server(uplink_config, store)

    def _mqtt_uplink(self, uplink_config: Any, store: Any, key: Any) -> Any:
        from gateway.operations.commands import mqtt_commands
        from gateway.uplinks.mqtt import MqttPublisher

        return MqttPublisher(
            uplink_config,
            gateway_id=self.config.gateway.id,
            store=store,
            signer=key,
            status=self.status,
            on_demand_read=self.read_now,
            on_connection=self._uplink_connection(uplink_config.name, f"{uplink_config.host}:{uplink_config.port}"),
            commands={"config": self._remote_config_command(uplink_config),
                      **self._remote_device_commands(uplink_config),
                      **mqtt_commands(self.relay, uplink_config.name)},
        )

    def _dlms_server(self, server_config: Any, store: Any) -> Any:
        from gateway.uplinks.dlms_server import DlmsServer

        return DlmsServer(server_config, gateway_id=self.config.gateway.id, store=store, relay=self.relay)

    def _operations_relay(self) -> Any:
        """HES operations on meters (gateway/operations): settings, store and lines as they
        are now, after any reconfiguration."""
        from gateway.operations import OperationRelay

        return OperationRelay(lambda: self.config.operations, lambda: self.store, lambda: self.collectors,
                              state_dir=self.config.state_dir, tz=ZoneInfo(self.config.gateway.timezone))

    def _remote_config_command(self, uplink_config: Any) -> Callable[[dict[str, Any]], Awaitable[Any]]:
        from gateway.uplinks.commands import CommandError

        async def config_command(args: dict[str, Any]) -> Any:
            if not uplink_config.allow_remote_config:
                raise CommandError(f"remote configuration is not allowed on uplink {uplink_config.name} "
                                   "(set allow_remote_config = true in its [[uplinks.mqtt]])")
            text = args.get("toml")
            if not isinstance(text, str) or not text.strip():
                raise CommandError("missing argument 'toml' (the configuration as TOML text)")
            # The apply runs in the gateway's group: if the new configuration replaces this
            # very uplink, the apply still finishes (only the answer is lost).
            assert self._group is not None
            outcome = self._group.create_task(_outcome(self.apply(text, f"mqtt:{uplink_config.name}",
                                                                  actor=f"hes via {uplink_config.name}")))
            result, error = await asyncio.shield(outcome)
            if error is not None:
                await self._audit_remote("config", uplink_config.name, ok=False)
                raise CommandError(str(error)) from None
            await self._audit_remote("config", uplink_config.name, ok=True)
            return result

        return config_command

    def _remote_device_commands(self, uplink_config: Any) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        """The ``devices.*`` commands for the HES; those that change a device only with
        ``allow_remote_devices`` on the uplink (each one audited, as the device's life is)."""
        from gateway.lifecycle.commands import READ_ONLY, device_commands
        from gateway.uplinks.commands import CommandError

        if self.lifecycle is None:
            return {}
        actor = f"hes via {uplink_config.name}"
        handlers = device_commands(self.lifecycle, lambda _args: actor)

        def guarded(name: str, handler: Callable[[dict[str, Any]], Awaitable[Any]]) -> Callable[[dict[str, Any]], Awaitable[Any]]:
            async def command(args: dict[str, Any]) -> Any:
                if name not in READ_ONLY and not uplink_config.allow_remote_devices:
                    raise CommandError(f"{name} is not allowed on uplink {uplink_config.name} (set "
                                       "allow_remote_devices = true in its [[uplinks.mqtt]])")
                return await handler(args)
            return command

        return {name: guarded(name, handler) for name, handler in handlers.items()}

    async def _audit_remote(self, command: str, uplink: str, *, ok: bool) -> None:
        from gateway.audit import record

        await record(self.store, "remote_command", f"hes via {uplink}",
                     {"command": command, "uplink": uplink, "ok": "yes" if ok else "no"})

    # -- reconfiguration ----------------------------------------------------------------------

    def request_reload(self) -> None:
        """Read the operator's file again (SIGHUP) and apply it, or the registry's changes."""
        self._reload_wanted.set()

    async def _reload_on_request(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            try:
                await self.reload()
            except GatewayError as exc:
                log.error("reload: %s", exc)
            except Exception:  # noqa: BLE001 - a bad reload must never stop the gateway
                log.exception("reload failed")

    async def reload(self, actor: str = "signal") -> dict[str, Any]:
        """Apply the operator's file if it changed since it was adopted, else the active
        text again (so registry changes are picked up)."""
        from gateway.config_versions import text_hash

        if self.operator_file is None or self.config_text is None:
            raise GatewayError("this gateway was not started from a configuration file; nothing to reload")
        try:
            operator_text = await asyncio.to_thread(self.operator_file.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{self.operator_file}: cannot read configuration: {exc}"]) from None
        if self.versions.index().get("operator_hash") != text_hash(operator_text):
            return await self.apply(operator_text, f"reload: {self.operator_file}", operator_text=operator_text,
                                    actor=actor)
        return await self.apply(self.config_text, "reload: registry", actor=actor)

    async def apply(self, text: str, source: str, *, operator_text: str | None = None,
                    actor: str = "gateway") -> dict[str, Any]:
        """Switch the running gateway to the configuration ``text`` (registry meters
        added), transactionally: on failure the previous configuration runs again.
        Raises ConfigError (invalid: nothing was tried) or ApplyFailed (rolled back)."""
        from gateway.audit import record
        from gateway.config_versions import config_hash, effective_config

        if self.config_text is None:
            raise GatewayError("this gateway was not started from a configuration text; it cannot be reconfigured")
        async with self._apply_lock:
            if self._group is None:
                raise GatewayError("the gateway is stopping")
            old, old_hash = self.config, config_hash(self.config)
            try:
                meters = await asyncio.to_thread(self.versions.registry_meters)
                new = effective_config(text, meters, source)
                for name, before, after in (("gateway.state_dir", old.state_dir, new.state_dir),
                                            ("store.path", old.store_path, new.store_path)):
                    if after != before:
                        raise ConfigError([f"{source}: {name}: cannot change while the gateway runs ({before}); "
                                           "change it with a restart"])
            except ConfigError as exc:
                self.emit(make_event("config.rejected", f"configuration from {source} refused: {exc.problems[0]}",
                                     source="gateway", details={"source": source, "problems": "; ".join(exc.problems)}))
                raise
            new_hash = config_hash(new)
            if new_hash == old_hash:
                if operator_text is not None:
                    await asyncio.to_thread(self.versions.record, text, new, source, operator_text=operator_text)
                return {"changed": False, "hash": new_hash}
            log.info("applying configuration %s (%s)", new_hash, source)
            try:
                await self._switch(new)
            except ApplyFailed as exc:
                log.error("configuration %s failed to start: %s; going back to %s", new_hash, exc, old_hash)
                if exc.touched:
                    await self._switch(old, check=False)
                self.emit(make_event("config.rolled_back", f"configuration {new_hash} failed to start ({exc}); "
                                     f"{old_hash} runs again", source="gateway",
                                     details={"old_hash": old_hash, "new_hash": new_hash, "reason": str(exc),
                                              "source": source}))
                raise
            self.config, self.config_text = new, text
            version = await asyncio.to_thread(self.versions.record, text, new, source, operator_text=operator_text)
            self.emit(self._config_changed(old_hash, new_hash, source))
            await self._flush_events()
            await record(self.store, "config_applied", actor,
                         {"old_hash": old_hash, "new_hash": new_hash, "source": source})
            return {"changed": True, "hash": new_hash, "previous": old_hash, "version": version.number}

    async def _switch(self, new: GatewayConfig, *, check: bool = True) -> None:
        """Make the running parts those of ``new``: build what changed, stop what changed
        or went, start what is new, and (``check``) wait for the new buses to open."""
        old = self.config
        assert self.sink is not None
        # 1. build everything new; nothing running is touched yet (the store stays: its path
        # cannot change while running, see apply)
        try:
            key = self.key if new.signing_key_path == old.signing_key_path else await self._load_key(new)
            wanted = {**{f"bus {b.name}": collector_fingerprint(new, b) for b in new.buses},
                      **{f"uplink {u.name}": uplink_fingerprint(new, u) for u in uplink_configs(new)}}
            changed = {name for name, print_ in wanted.items() if self._fingerprints.get(name) != print_}
            built_buses = {f"bus {b.name}": b for b in new.buses if f"bus {b.name}" in changed}
            self.config = new  # the uplinks' status and topics follow the new configuration
            new_collectors = [self._hooked(build_collector(new, bus, self.sink, self.store))
                              for bus in built_buses.values()]
            new_uplinks = []
            for uplink in uplink_configs(new):
                if f"uplink {uplink.name}" in changed:
                    await asyncio.to_thread(_check_uplink, uplink)
                    new_uplinks.append(self._uplink(uplink, self.store, key))
        except (GatewayError, OSError, ValueError) as exc:
            self.config = old
            raise ApplyFailed(f"cannot build it: {exc}", touched=False) from None
        # 2. stop what changed or went
        gone = [name for name in self._fingerprints if name not in wanted or name in changed]
        await self._stop_collectors([c for c in self.collectors if f"bus {c.name}" in gone])
        await self._cancel([name for name in gone if name.startswith("uplink ")])
        if new.store != old.store:
            await self.store.reconfigure(new.store)  # retention and durability, on the open store
        # 3. start what is new
        self.key = key
        self.collectors = [c for c in self.collectors if f"bus {c.name}" not in gone] + new_collectors
        self.uplinks = [u for u in self.uplinks if f"uplink {u.name}" not in gone] + new_uplinks
        for uplink in self.uplinks:
            uplink.signer = key
        for name in gone:
            self.children.pop(name, None)
        for collector in new_collectors:
            self._start(f"bus {collector.name}", collector.run)
        for uplink in new_uplinks:
            self._start(f"uplink {uplink.name}", uplink.run)
        self._fingerprints = wanted
        if new.metrics != old.metrics:
            self._stop_metrics()
            self._start_metrics(new)
        if check:
            await self._grace(new_collectors, new.gateway.apply_grace_s)

    async def _grace(self, collectors: Sequence[Collector], grace_s: float) -> None:
        """Every new bus must open within ``grace_s``; ApplyFailed (touched) if one fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while True:
            for collector in collectors:
                child = self.children.get(f"bus {collector.name}")
                if child is not None and child.restarts:
                    raise ApplyFailed(f"bus {collector.name} failed: {child.last_error}", touched=True)
            waiting = [c.name for c in collectors if not getattr(c, "connected", True)]
            if not waiting:
                return
            if loop.time() >= deadline:
                raise ApplyFailed(f"bus {', '.join(waiting)} did not open within {grace_s:g} s", touched=True)
            await asyncio.sleep(0.05)

    # -- keys and the control socket ----------------------------------------------------------

    async def rotate_key(self, actor: str) -> dict[str, Any]:
        """A new signing key: the uplinks sign with it from their next message."""
        from gateway.audit import record
        from gateway.keyring import rotate

        async with self._apply_lock:
            old, new = await asyncio.to_thread(rotate, self.config.signing_key_path, self.config.state_dir)
            self.key = new
            for uplink in self.uplinks:
                if hasattr(uplink, "signer"):
                    uplink.signer = new
            old_kid = old.kid if old is not None else ""
            self.emit(make_event("key.rotated", f"signing key {old_kid} replaced by {new.kid}", source="gateway",
                                 details={"old_kid": old_kid, "new_kid": new.kid}))
            await self._flush_events()
            await record(self.store, "key_rotated", actor, {"old_kid": old_kid, "new_kid": new.kid})
        return {"old_kid": old_kid, "new_kid": new.kid}

    async def _serve_control(self) -> None:
        from gateway.control import serve
        from gateway.operations.commands import control_commands
        from gateway.uplinks.commands import CommandRouter

        async def config(args: dict[str, Any]) -> Any:
            return await self.apply(str(args.get("toml", "")), str(args.get("source", "control")),
                                    actor=str(args.get("actor", "local")))

        async def reload(args: dict[str, Any]) -> Any:
            return await self.reload(actor=str(args.get("actor", "local")))

        async def rotate(args: dict[str, Any]) -> Any:
            return await self.rotate_key(str(args.get("actor", "local")))

        async def audit(args: dict[str, Any]) -> Any:
            from gateway.audit import record

            entry = await record(self.store, str(args["action"]), str(args.get("actor", "local")),
                                 dict(args.get("details") or {}))
            return {"id": entry["id"]}

        async def status(_args: dict[str, Any]) -> Any:
            return await self.status()

        from gateway.lifecycle.commands import device_commands

        devices = {} if self.lifecycle is None else device_commands(self.lifecycle,
                                                                    lambda args: str(args.get("actor", "local")))
        router = CommandRouter({"config": config, "reload": reload, "keys.rotate": rotate, "audit": audit,
                                "status": status, **devices, **control_commands(self.relay)}, timeout_s=600)
        try:
            async with serve(self.config.state_dir, router):
                await asyncio.Event().wait()
        except OSError as exc:
            log.error("control socket: %s; `gateway config apply` and `gateway meters` cannot reach the daemon", exc)


async def _open_store(config: GatewayConfig) -> Any:
    from gateway.store import Store

    # The counters' high-water marks live in the state directory, beside no particular
    # store file: a store at a new path (after a restart) still goes on above them.
    store = Store(config.store_path, config.store, high_water_file=config.state_dir / HIGH_WATER_FILE)
    await store.__aenter__()
    return store


async def _close_store(store: Any) -> None:
    if store is not None and hasattr(store, "__aexit__"):
        await store.__aexit__(None, None, None)


def _check_uplink(uplink: Any) -> None:
    """Read what an uplink needs from files now (CA, client certificate, password), so a
    configuration naming a missing one is refused before anything is switched."""
    from gateway.config import MqttUplink
    from gateway.uplinks.mqtt_tls import credentials, tls_context

    if isinstance(uplink, MqttUplink):
        tls_context(uplink)
        credentials(uplink)


async def _outcome(work: Awaitable[Any]) -> tuple[Any, GatewayError | None]:
    """``(result, None)`` or ``(None, error)``: a task in the gateway's TaskGroup that must
    not fail the group when the work is refused (a bad configuration from the HES)."""
    try:
        return await work, None
    except GatewayError as exc:
        return None, exc


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
