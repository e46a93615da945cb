"""What every collector shares: the sink it commits to, per-meter health, and the polling loop.

A collector owns one bus (a serial line, a TCP serial server, a radio dongle): one asyncio
task, so the bus is never asked two things at once. Polled buses (wired M-Bus, DLMS/COSEM,
Modbus) subclass :class:`PolledBus` and implement ``connect`` and ``read_meter``; listening
buses (wireless M-Bus) implement :class:`Collector` directly.

A collector never talks SQL or MQTT: it hands records to a :class:`Sink`, which returns only
once they are durably stored.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from gateway.collectors.health import MeterHealth, Thresholds, failure_reason, transition_event
from gateway.collectors.schedule import next_due
from gateway.errors import GatewayError
from gateway.model import Reading, Record, utc_now

log = logging.getLogger(__name__)


class Sink(Protocol):
    async def commit(self, records: Sequence[Record], *, state: Mapping[str, str] | None = None) -> None:
        """Store records durably; returns only when they are committed. ``state``: durable
        state values (see :class:`StateStore`) committed in the same transaction as the
        records (how far a profile was read, a meter's last message counter)."""


class StateStore(Protocol):
    """Small durable state a collector keeps between reads and restarts (invocation
    counters, the last profile entry read). :class:`gateway.store.Store` implements it;
    each call returns once the value is on disk."""

    async def get_state(self, key: str) -> str | None: ...

    async def set_state(self, key: str, value: str) -> None: ...

    async def increment_state(self, key: str, by: int = 1) -> int: ...


@dataclass(frozen=True, slots=True)
class Discovery:
    """A device a collector heard or found and is not configured for (the lifecycle
    registers it as discovered): the identity its readings would carry, the fields that
    identify it (manufacturer, id, version, device type; a DLMS device's system title), its
    ``[[meters]]`` table as far as known, when it was first seen and how (heard, scan)."""

    device: str
    identity: dict[str, Any]
    table: dict[str, Any]
    seen_at: datetime
    how: str = "heard"


async def wait_for_probe(probes: list[Any], probe: Any, wait_s: float, not_yet: Callable[[], Exception]) -> Any:
    """What ``probe.future`` gets from the next transfer of a device being commissioned
    (a telegram, a push: they cannot be asked for), listed in ``probes`` meanwhile; the
    ``not_yet()`` error when none comes within ``wait_s``."""
    probes.append(probe)
    try:
        async with asyncio.timeout(wait_s):
            return await probe.future
    except TimeoutError:
        raise not_yet() from None
    finally:
        probes.remove(probe)


class Collector(Protocol):
    """One bus. ``run`` works until cancelled (a failure raises, and the supervisor restarts
    it); ``read_now`` reads one meter ahead of the schedule; ``status`` is for the HES."""

    name: str

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    async def read_now(self, meter: str) -> list[Reading]: ...

    def status(self) -> dict[str, Any]: ...

    def meters(self) -> list[str]: ...


class PolledMeter(Protocol):
    """What the polling loop needs of a meter's configuration."""

    name: str

    @property
    def schedule(self) -> Any: ...  # has interval_s and offset_s


M = TypeVar("M", bound=PolledMeter)
T = TypeVar("T")


@dataclass(order=True)
class _Due:
    at: datetime
    order: int
    meter: Any = field(compare=False)


class PolledBus(ABC, Generic[M]):
    """The polling loop of one bus: scheduled reads aligned to the clock, on-demand reads first.

    Subclasses implement :meth:`connect` (open the transport for the life of ``run``) and
    :meth:`read_meter` (one complete read of one meter, raising a ``GatewayError`` on
    failure). A meter that fails is recorded and retried at its next slot; it never stops
    the others. A failure of the transport itself propagates out of ``run`` so the
    supervisor restarts the bus.
    """

    def __init__(
        self,
        name: str,
        meters: Sequence[M],
        sink: Sink,
        tz: ZoneInfo,
        *,
        clock: Callable[[], datetime] = utc_now,
        thresholds: Thresholds = Thresholds(),
    ) -> None:
        self.name = name
        self._meters = {meter.name: meter for meter in meters}
        self._sink = sink
        self._tz = tz
        self._clock = clock
        self._on_demand: deque[tuple[M, Callable[[M], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self.health = {meter.name: MeterHealth(meter.name, thresholds=thresholds) for meter in meters}
        self.counters: dict[str, int] = {"reads": 0, "failures": 0, "on_demand": 0}
        #: True while the bus is open (``connect`` succeeded): a new configuration's bus is
        #: up when this turns true within the grace period.
        self.connected = False

    # -- what subclasses provide ----------------------------------------------------------

    @abstractmethod
    def connect(self) -> AbstractAsyncContextManager[Any]:
        """Open the bus for the duration of ``run``."""

    @abstractmethod
    async def read_meter(self, meter: M) -> list[Record]:
        """Read one meter now; return its readings (and any events it raised)."""

    # -- the loop ---------------------------------------------------------------------------

    def meters(self) -> list[str]:
        return list(self._meters)

    async def run(self) -> None:
        queue: list[_Due] = []
        now = self._clock()
        for order, meter in enumerate(self._meters.values()):
            heapq.heappush(queue, _Due(self._next_slot(meter, now), order, meter))
        async with self.connect():
            self.connected = True
            try:
                await self._serve(queue)
            finally:
                self.connected = False

    async def _serve(self, queue: list[_Due]) -> None:
        while not self._stopping:
            self._wake.clear()
            if self._on_demand:
                await self._run_on_demand(*self._on_demand.popleft())
                continue
            wait_s = (queue[0].at - self._clock()).total_seconds() if queue else None
            if wait_s is not None and wait_s <= 0:
                due = heapq.heappop(queue)
                await self._poll(due.meter)
                heapq.heappush(queue, _Due(self._next_slot(due.meter, self._clock()), due.order, due.meter))
                continue
            try:
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Finish the read in progress, then return from ``run``."""
        self._stopping = True
        self._wake.set()

    async def read_now(self, meter: str) -> list[Reading]:
        """Read ``meter`` as soon as the bus is free, ahead of scheduled reads."""
        return await self.run_on_bus(meter, lambda m: self._poll(m, raise_errors=True))

    async def run_on_bus(self, meter: str, job: Callable[[M], Awaitable[T]]) -> T:
        """Run ``job(meter config)`` on the bus as soon as it is free, ahead of scheduled
        reads (an on-demand read, a command to a meter); its result or its
        ``GatewayError`` comes back here."""
        if meter not in self._meters:
            raise KeyError(meter)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._on_demand.append((self._meters[meter], job, future))
        self._wake.set()
        return await future

    async def run_exclusive(self, job: Callable[[], Awaitable[T]]) -> T:
        """Run ``job()`` on the bus as soon as it is free, ahead of scheduled reads, for
        work that concerns no configured meter (commissioning a new device, a bus scan)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._on_demand.append((None, lambda _meter: job(), future))  # type: ignore[arg-type]
        self._wake.set()
        return await future

    def use_thresholds(self, thresholds: Thresholds) -> None:
        """When this bus's meters are failing and unreachable (from the configuration)."""
        for health in self.health.values():
            health.thresholds = thresholds

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "counters": dict(self.counters),
            "meters": {name: health.as_dict() for name, health in self.health.items()},
        }

    # -- internals ------------------------------------------------------------------------

    def _next_slot(self, meter: M, after: datetime) -> datetime:
        return next_due(after, meter.schedule.interval_s, meter.schedule.offset_s, self._tz)

    async def _run_on_demand(self, meter: M, job: Callable[[M], Awaitable[Any]], future: asyncio.Future[Any]) -> None:
        self.counters["on_demand"] += 1
        try:
            result = await job(meter)
        except GatewayError as exc:
            if not future.done():
                future.set_exception(exc)
        except Exception as exc:
            # A bug: the caller hears of it, and the bus fails (the supervisor restarts it).
            if not future.done():
                future.set_exception(exc)
            raise
        else:
            if not future.done():
                future.set_result(result)

    async def _poll(self, meter: M, *, raise_errors: bool = False) -> list[Reading]:
        health = self.health[meter.name]
        self.counters["reads"] += 1
        try:
            records = await self.read_meter(meter)
        except GatewayError as exc:
            self.counters["failures"] += 1
            await self._record_failure(meter, health, exc)
            if raise_errors:
                raise
            return []
        transition = health.succeeded(self._clock())
        events: list[Record] = []
        if transition is not None:
            events.append(transition_event(transition, source=self.name, device=health.device,
                                           message=f"meter {meter.name} answers again"))
        readings = [r for r in records if isinstance(r, Reading)]
        if readings:
            health.device = readings[0].device
        await self._sink.commit([*records, *events])
        return readings

    async def _record_failure(self, meter: M, health: MeterHealth, exc: GatewayError) -> None:
        reason = failure_reason(exc)
        transition = health.failed(reason, str(exc), self._clock())
        log.info("bus %s: meter %s failed (%s): %s", self.name, meter.name, reason, exc)
        if transition is not None:
            await self._sink.commit([transition_event(
                transition, source=self.name, device=health.device,
                message=f"meter {meter.name} is {transition.new.value} ({reason}): {exc}")])
