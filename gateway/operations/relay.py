"""The operations relay: the daemon's side of the queue. It takes operations (MQTT, the
DLMS/COSEM server, the command line), checks who may run them, and carries them out on the
meters' DLMS lines, in order per meter, ahead of scheduled reads.

For each meter with queued operations a worker takes the oldest one and hands it to the
meter's line (:meth:`~gateway.collectors.base.PolledBus.run_on_bus`). On the line, in one
association: the deadline is checked, the operation is marked ``started`` durably, then its
requests go out. What happens next:

================================  ========================================================
the association cannot be made    nothing was sent: the operation stays queued and the
(meter unreachable, line down)    meter is tried again after ``retry_s``, until the deadline
every request answered            ``success`` or ``data-access-result``
no answer after sending           ``timeout``; a GET-only operation is queued again instead
the link broke after sending      ``unknown`` (GET-only: queued again)
image transfer interrupted        queued again with its progress, resumes (activation excepted)
the deadline passes while queued  ``expired``
the gateway crashes while started ``unknown`` at the next start, never sent again (GETs and
                                  resumable image transfers are queued again)
================================  ========================================================

The bound on a job waiting for its line is the operation's deadline; once the line runs it,
the line's own timeouts bound it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.codecs.dlms.obis import Obis
from gateway.config import OperationsSection
from gateway.errors import DeviceTimeout, GatewayError, StoreFullError
from gateway.events import make_event
from gateway.model import Event, Severity, utc_now
from gateway.operations import named
from gateway.operations.images import ImageStore
from gateway.operations.model import RESUMABLE, Operation, OperationError, Outcome, Request, State, Step, compact_json
from gateway.operations.permissions import LOCAL, may_cancel, permits
from gateway.operations.queue import OperationQueue
from gateway.store import Store

log = logging.getLogger(__name__)

SOURCE = "operations"
DEVICE_STATE = "dlms.device."
#: An event's ``results`` beyond this many characters leave their data out (a GET of a long
#: profile buffer): ``op-status`` has it all.
MAX_EVENT_RESULTS = 16384
#: A full disk while recording an outcome: retried this often (the outcome is not lost).
STORE_RETRY_S = 5.0


class _Attempt:
    """One attempt at an operation on its line: how far it got. ``bound`` is the worker's
    wait for the line (the deadline), lifted once the line runs the job."""

    def __init__(self, operation: Operation, bound: asyncio.Timeout) -> None:
        self.operation = operation
        self.bound = bound
        self.started = False
        self.finished = False
        self.outcome = Outcome.UNKNOWN
        self.results: list[dict[str, Any]] = []
        self.progress: dict[str, Any] | None = operation.progress

    def begin(self) -> bool:
        """The line runs the job: lift the bound. False when the worker gave up waiting
        (the deadline passed first): then nothing may be sent."""
        try:
            self.bound.reschedule(None)
        except RuntimeError:  # the timeout already fired
            return False
        return True


class OperationRelay:
    """See the module docstring. ``settings``, ``store`` and ``collectors`` are callables:
    a reconfiguration changes what they return."""

    def __init__(self, settings: Callable[[], OperationsSection], store: Callable[[], Store],
                 collectors: Callable[[], Sequence[Any]], *, state_dir: Path, tz: ZoneInfo,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.store = store
        self.collectors = collectors
        self.tz = tz
        self.clock = clock
        self.queue = OperationQueue(store, self._result_event, clock)
        self.state_dir = Path(state_dir)
        self.ready = asyncio.Event()
        self.counters = {"submitted": 0, "refused": 0, "started": 0, "ended": 0, "retries": 0}
        self._wake = asyncio.Event()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._waiters: dict[int, list[asyncio.Future[Operation]]] = {}
        self._devices: dict[str, str] = {}

    @property
    def images(self) -> ImageStore:
        return ImageStore(self.state_dir / "images", self.settings().max_image_bytes)

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Recover what a crash interrupted, then keep every meter's queue moving."""
        await self.queue.prepare()
        for ended in await self.queue.recover(_resumable):
            log.warning("operation %d (%s on %s) was interrupted by a restart: unknown", ended.id, ended.name,
                        ended.meter)
        self.ready.set()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.TaskGroup() as group:
                while True:
                    self._wake.clear()
                    await self._expire()
                    now = loop.time()
                    self._retry_at = {meter: at for meter, at in self._retry_at.items() if at > now}
                    for meter in await self.queue.meters_with_work():
                        if meter not in self._workers and self._retry_at.get(meter, 0.0) <= now:
                            self._workers[meter] = group.create_task(self._work(meter))
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._next_wake(now)):
                            await self._wake.wait()
        finally:
            self.ready.clear()
            self._workers.clear()

    def _next_wake(self, now: float) -> float:
        later = [at - now for at in self._retry_at.values() if at > now]
        return max(0.05, min([*later, self.settings().retry_s]))

    async def _expire(self) -> None:
        for operation in await self.queue.overdue(self.clock()):
            if operation.meter not in self._workers:
                await self._end(operation, Outcome.EXPIRED, error="not carried out before its deadline",
                                only_if=State.QUEUED)

    async def _work(self, meter: str) -> None:
        """Run the meter's operations in order until none is left or the meter cannot be
        reached (then it is tried again after ``retry_s``)."""
        try:
            while (operation := await self.queue.head(meter)) is not None:
                if operation.state is not State.QUEUED:  # an attempt that outlived its worker
                    self._later(meter)
                    return
                if operation.request.deadline <= self.clock():
                    await self._end(operation, Outcome.EXPIRED, error="not carried out before its deadline",
                                    only_if=State.QUEUED)
                    continue
                if not await self._attempt(operation):
                    self._later(meter)
                    self.counters["retries"] += 1
                    return
        except GatewayError as exc:  # the store failed: try again later
            log.error("operations of meter %s: %s", meter, exc)
            self._later(meter)
        finally:
            self._workers.pop(meter, None)
            self._wake.set()

    def _later(self, meter: str) -> None:
        self._retry_at[meter] = asyncio.get_running_loop().time() + self.settings().retry_s

    async def _attempt(self, operation: Operation) -> bool:
        """One attempt on the meter's line; False when it must be tried again later."""
        collector = self._collector_of(operation.meter)
        if collector is None:
            await self._end(operation, Outcome.REFUSED, error=f"no DLMS meter is named {operation.meter!r} "
                            "(any more)", only_if=State.QUEUED)
            return True
        remaining = (operation.request.deadline - self.clock()).total_seconds()
        try:
            async with asyncio.timeout(remaining) as bound:
                attempt = _Attempt(operation, bound)
                return await collector.run_on_bus(operation.meter, lambda meter: self._execute(collector, meter,
                                                                                             attempt))
        except TimeoutError:  # the line never got to it: the job sees the deadline if it ever runs
            await self._end(operation, Outcome.EXPIRED, error="the meter's line was busy or down until the deadline",
                            only_if=State.QUEUED)
            return True
        except KeyError:
            await self._end(operation, Outcome.REFUSED, error=f"meter {operation.meter!r} is not on its line any more",
                            only_if=State.QUEUED)
            return True

    async def _execute(self, collector: Any, meter: Any, attempt: _Attempt) -> bool:
        """On the line (the bus job): associate, mark started, send, record the outcome."""
        operation = attempt.operation
        if not attempt.begin() or operation.request.deadline <= self.clock():
            await self._end(operation, Outcome.EXPIRED, error="not carried out before its deadline",
                            only_if=State.QUEUED)
            return True
        image = None
        if operation.request.image_transfer:
            try:
                image = await asyncio.to_thread(self.images.read, operation.request.params["image"])
            except GatewayError as exc:
                await self._end(operation, Outcome.REFUSED, error=str(exc), only_if=State.QUEUED)
                return True
        try:
            async with collector.session(meter) as session:
                self._devices[operation.meter] = await collector.identify(meter, session)
                if not await self.queue.mark_started(operation):
                    return True  # cancelled (or expired) while it waited for the line
                attempt.started = True
                self.counters["started"] += 1
                await self._carry_out(session, attempt, image)
                attempt.finished = True
        except GatewayError as exc:
            return await self._interrupted(attempt, exc)
        await self._end(operation, attempt.outcome, attempt.results, progress=attempt.progress)
        return True

    async def _carry_out(self, session: Any, attempt: _Attempt, image: bytes | None) -> None:
        request = attempt.operation.request
        if image is not None:
            await self._transfer_image(session, attempt, image)
            return
        # The DLMS session stack is loaded with the first operation, not by every gateway.
        from gateway.operations.executor import outcome_of, run_steps

        steps = named.late_steps(request.name, request.steps, request.params, self.clock(), self.tz)
        results = await run_steps(session, steps)
        attempt.results = [r.to_json() for r in results]
        attempt.outcome = outcome_of(results)

    async def _transfer_image(self, session: Any, attempt: _Attempt, image: bytes) -> None:
        from gateway.operations.image_transfer import ImageTransfer

        operation = attempt.operation
        params = operation.request.params

        async def save(progress: dict[str, Any]) -> None:
            attempt.progress = dict(progress)
            await self.queue.save_progress(operation, attempt.progress)

        transfer = ImageTransfer(session, Obis.parse(params["obis"]), image, params["identifier"].encode(),
                                 params["activate"], attempt.progress, save, poll_s=self.settings().poll_s)
        try:
            attempt.outcome = await transfer.run()
        finally:
            attempt.results = [r.to_json() for r in transfer.results]
            attempt.progress = transfer.progress

    async def _interrupted(self, attempt: _Attempt, exc: GatewayError) -> bool:
        """The association failed (before or after the requests went out)."""
        operation = attempt.operation
        if attempt.finished:  # only the release failed: the answers are in
            await self._end(operation, attempt.outcome, attempt.results, progress=attempt.progress)
            return True
        if not attempt.started:
            log.info("operation %d: meter %s cannot be reached now: %s", operation.id, operation.meter, exc)
            return False
        if operation.request.idempotent or (operation.request.image_transfer and _phase(attempt.progress) in RESUMABLE):
            log.info("operation %d on %s interrupted (%s): queued again", operation.id, operation.meter, exc)
            await self.queue.requeue(operation, progress=attempt.progress, error=str(exc))
            return False
        outcome = Outcome.TIMEOUT if isinstance(exc, DeviceTimeout) else Outcome.UNKNOWN
        await self._end(operation, outcome, attempt.results, f"{type(exc).__name__}: {exc}", progress=attempt.progress)
        return True

    async def _end(self, operation: Operation, outcome: Outcome, results: Sequence[dict[str, Any]] = (),
                   error: str | None = None, *, progress: dict[str, Any] | None = None,
                   only_if: State | None = None) -> Operation | None:
        """Record the outcome and its event (retrying a full disk: an outcome is never lost)."""
        while True:
            try:
                ended = await self.queue.finish(operation, outcome, results, error, progress=progress, only_if=only_if)
                break
            except StoreFullError:
                await asyncio.sleep(STORE_RETRY_S)
        if ended is not None:
            self.counters["ended"] += 1
            log.info("operation %d (%s on %s): %s", ended.id, ended.name, ended.meter, outcome.value)
            for waiter in self._waiters.pop(ended.id, []):
                if not waiter.done():
                    waiter.set_result(ended)
        return ended

    # --- taking operations -----------------------------------------------------------------

    async def submit(self, meter: str, name: str, args: dict[str, Any], *, identity: str, source: str,
                     deadline: datetime | None = None) -> Operation:
        """Queue a named (or generic) operation; refused ones are stored as such, with a
        ``security.refused`` event. :class:`OperationError` for one that cannot be taken."""
        request = make_request(await self.resolve(meter), name, args, identity=identity, source=source,
                               deadline=deadline, settings=self.settings(), now=self.clock(), images=self.images)
        return await self.submit_request(request)

    async def submit_request(self, request: Request) -> Operation:
        device = self._devices.get(request.meter)
        if not permits(self.settings().permissions, request.identity, request, device):
            self.counters["refused"] += 1
            reason = f"{request.identity} may not run {request.name} on meter {request.meter}"
            log.warning("operation refused: %s", reason)
            details: dict[str, str | int] = {"identity": request.identity, "operation": request.name,
                                             "meter": request.meter, "reason": "not permitted"}
            refusal = make_event("security.refused", f"operation refused: {reason}", device=device,
                                 source=request.source, details=details)
            return await self.queue.submit(request, refused=f"not permitted: {reason}", extra_events=[refusal])
        operation = await self.queue.submit(request)
        self.counters["submitted"] += 1
        self._retry_at.pop(request.meter, None)  # try now, even if the meter failed a moment ago
        self._wake.set()
        return operation

    async def cancel(self, id_: int, identity: str) -> Operation:
        operation = await self.queue.get(id_)
        if operation is None:
            raise OperationError(f"no operation {id_}")
        if not may_cancel(self.settings().permissions, identity, operation.request,
                          self._devices.get(operation.meter)):
            raise OperationError(f"{identity} may not cancel operation {id_} of {operation.request.identity}")
        ended = await self._end(operation, Outcome.CANCELLED, error=f"cancelled by {identity}", only_if=State.QUEUED)
        if ended is None:
            current = await self.queue.get(id_)
            state = current.state.value if current else "gone"
            raise OperationError(f"operation {id_} is {state}, not queued: it cannot be cancelled")
        return ended

    def may_upload(self, identity: str) -> bool:
        """Whether ``identity`` may give the gateway firmware images."""
        return identity == LOCAL or any(p.identity == identity and ({"firmware", "*"} & set(p.operations))
                                        for p in self.settings().permissions)

    async def wait(self, id_: int, timeout_s: float) -> Operation | None:
        """The operation once it ended, or None after ``timeout_s``."""
        future: asyncio.Future[Operation] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(id_, []).append(future)
        current = await self.queue.get(id_)
        if current is not None and current.state is State.DONE:
            return current
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(id_, [])
            if future in waiters:
                waiters.remove(future)

    # --- the DLMS/COSEM server's pass-through ----------------------------------------------

    async def pass_through(self, device: str, step: Step, identity: str, source: str) -> Operation | None:
        """An HES's SET or ACTION on a meter's logical device, carried out on the meter with
        a bounded wait: the operation as it ended (or as it stands when the wait is over);
        None when ``device`` is no meter the relay reaches (the server answers itself)."""
        meter = await self.meter_of_device(device)
        if meter is None:
            return None
        settings = self.settings()
        keep = settings.default_deadline_s if settings.dlms_queue else settings.dlms_wait_s
        request = Request(meter, named.classify(step), (step,), self.clock() + timedelta(seconds=keep), identity,
                          source)
        operation = await self.submit_request(request)
        if operation.state is State.DONE:
            return operation
        return await self.wait(operation.id, settings.dlms_wait_s) or await self.queue.get(operation.id)

    # --- meters ----------------------------------------------------------------------------

    async def resolve(self, meter: str) -> str:
        """A configured DLMS meter's name from its name or its device id."""
        if self._collector_of(meter) is not None:
            return meter
        found = await self.meter_of_device(meter)
        if found is None:
            known = sorted({m for c in self._dlms_collectors() for m in c.meters()})
            raise OperationError(f"no DLMS meter is named {meter!r} (operations reach DLMS meters: "
                                 f"{', '.join(known) or 'none are configured'})")
        return found

    async def meter_of_device(self, device: str) -> str | None:
        if device not in self._devices.values():
            await self._learn_devices()
        for meter, known in self._devices.items():
            if known == device and self._collector_of(meter) is not None:
                return meter
        return None

    async def _learn_devices(self) -> None:
        for key, device in (await self.store().state_items(DEVICE_STATE)).items():
            self._devices[key.removeprefix(DEVICE_STATE)] = device
        for collector in self._dlms_collectors():
            for meter in collector.meters():
                device = collector.device_of(meter)
                if device is not None:
                    self._devices[meter] = device

    def _dlms_collectors(self) -> list[Any]:
        return [c for c in self.collectors() if hasattr(c, "session") and hasattr(c, "device_of")]

    def _collector_of(self, meter: str) -> Any:
        return next((c for c in self._dlms_collectors() if meter in c.meters()), None)

    # --- events and status -----------------------------------------------------------------

    def _result_event(self, operation: Operation) -> Event:
        return result_event(operation, self._devices.get(operation.meter))

    def status(self) -> dict[str, Any]:
        return {**self.counters, "busy_meters": sorted(self._workers), "waiting_meters": sorted(self._retry_at)}


def make_request(meter: str, name: str, args: dict[str, Any], *, identity: str, source: str,
                 deadline: datetime | None, settings: OperationsSection, now: datetime, images: ImageStore) -> Request:
    """The request of a named operation (:class:`OperationError` when it cannot be one)."""
    steps, params = named.build(name, args)
    if "image" in params and not images.path(params["image"]).exists():
        raise OperationError(f"no image {params['image']} on the gateway: upload it first (cmd/op-image) or give "
                             "--image-file")
    if deadline is None:
        deadline = now + timedelta(seconds=settings.default_deadline_s)
    elif deadline.tzinfo is None:
        raise OperationError("the deadline needs its UTC offset (2026-05-01T12:00:00+02:00)")
    elif deadline > now + timedelta(seconds=settings.max_deadline_s):
        raise OperationError(f"the deadline is more than max_deadline_s ({settings.max_deadline_s:g} s) away")
    return Request(meter, name, steps, deadline, identity, source, params)


def result_event(operation: Operation, device: str | None = None) -> Event:
    """The ``operation.result`` event of an operation that ended."""
    outcome = operation.outcome or Outcome.UNKNOWN
    results = compact_json(list(operation.results))
    if len(results) > MAX_EVENT_RESULTS:
        results = compact_json([{**r, "data": None, "data_omitted": "too long for the event: see op-status"}
                                for r in operation.results])
    details: dict[str, str | int] = {
        "id": operation.id, "meter": operation.meter, "operation": operation.name, "outcome": outcome.value,
        "identity": operation.request.identity, "source": operation.request.source, "results": results,
        "error": operation.error or ""}
    if operation.progress is not None:
        details["progress"] = compact_json(operation.progress)
    severity = Severity.INFO if outcome is Outcome.SUCCESS else Severity.WARNING
    return make_event("operation.result", f"operation {operation.id} ({operation.name}) on meter "
                      f"{operation.meter}: {outcome.value}", device=device, source=SOURCE, details=details,
                      severity=severity)


def _phase(progress: dict[str, Any] | None) -> str:
    return (progress or {}).get("phase", "initiate")


def _resumable(operation: Operation) -> bool:
    """After a crash: reads run again, an image transfer resumes unless it was activating."""
    if operation.request.image_transfer:
        return _phase(operation.progress) in RESUMABLE
    return operation.request.idempotent
