"""DLMS/COSEM devices that send on their own: a TCP listener for their DataNotifications.

Battery-powered remote sensors (gas volume converters, temperature and pressure sensors)
and meters with a push setup do not wait to be asked: they connect and push a
DataNotification (Green Book 9.3.12) through the IEC 62056-47 wrapper, each one ciphered
with general-glo-ciphering (Green Book 9.5), which names the sender by its system title.
``DlmsPushReceiver.from_config(listener, sensors, sink, tz, state=store)`` listens on the
listener's port; for each notification:

* the sensor is found by the system title it carries; its tag is checked and its content
  deciphered with its keys (during a key change's overlap the previous keys are tried too:
  readings flagged ``previous_key``); a counter not above the last one accepted from it is
  a replay (the last counter is kept in the durable state, per sensor and key generation);
  a refusal is ``security.refused`` (at most once per sensor per hour, with the count);
* the body's elements are its push object list (``objects``): each value element becomes a
  Reading (quantity named as the DLMS collector names it, value exact), a register's
  scaler_unit in the list scales its value, the notification's date-time is the meter time,
  ``raw`` the APDU as received and ``protection`` its security control;
* a sensor silent for ``not_heard_after`` expected intervals is failing (``comm.failed``,
  reason ``not_heard``), and recovers with its next push (``comm.recovered``);
* a sender that is not configured is listed in ``status()["unknown_meters"]`` and told to
  ``on_discovery``; :meth:`DlmsPushReceiver.probe` waits for a given sensor's next push
  (commissioning).

The device identity of a pushing sensor is ``dlms-`` and its system title in hex.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.axdr import Data
from gateway.codecs.dlms.errors import DLMSError, DLMSSecurityError
from gateway.codecs.dlms.security import SC_AUTHENTICATION, SC_ENCRYPTION, SecurityKeys, decipher_apdu
from gateway.codecs.dlms.services import DataNotification
from gateway.codecs.dlms.units import ScalerUnit
from gateway.codecs.dlms.wrapper import WrapperParser
from gateway.codecs.dlms.xdlms import GeneralGloCiphering
from gateway.collectors.base import Discovery, Sink, StateStore, wait_for_probe
from gateway.collectors.dlms import MemoryState
from gateway.collectors.dlms_reader import apdu_protection
from gateway.collectors.dlms_values import SCALER_UNIT_ATTRIBUTE, ObjectSpec, parse_object, quantity_name, reading_value
from gateway.collectors.health import MeterHealth, MeterState, Thresholds, transition_event
from gateway.config import DlmsPushListener, DlmsPushMeter, read_key
from gateway.errors import GatewayError
from gateway.events import make_event
from gateway.model import Reading, Record, dlms_device_id, utc_now

log = logging.getLogger(__name__)

#: The push setup class: its element in a push object list names the push, it is no value.
PUSH_SETUP_CLASS = 40
#: The protection each ``security`` setting demands (Green Book 9.2.7.2.4).
REQUIRED = {"authenticated+encrypted": SC_AUTHENTICATION | SC_ENCRYPTION, "authenticated": SC_AUTHENTICATION}
#: At most one ``security.refused`` per sensor in this time (after the first).
SECURITY_EVENT_INTERVAL_S = 3600.0
TICK_S = 1.0
READ_SIZE = 4096


class NotPushedYet(GatewayError):
    """A push sensor was asked for its values before it pushed any."""


@dataclass
class PushSensor:
    """A configured push sensor and what the receiver knows of it."""

    config: DlmsPushMeter
    health: MeterHealth
    title: bytes
    keys: SecurityKeys = field(repr=False)
    previous: SecurityKeys | None = field(default=None, repr=False)
    pushes: int = 0
    last_heard: datetime | None = None
    last_heard_at: float | None = None
    missed_intervals: int = 0
    readings: list[Reading] = field(default_factory=list)
    refusals: int = 0
    refusal_event_at: float | None = None

    @property
    def device(self) -> str:
        return dlms_device_id(self.title.hex().upper())

    def as_dict(self) -> dict[str, Any]:
        return {**self.health.as_dict(), "system_title": self.title.hex().upper(), "pushes": self.pushes,
                "last_heard": self.last_heard.isoformat() if self.last_heard else None,
                "security_refusals": self.refusals}


@dataclass(frozen=True)
class Pushed:
    """What :meth:`DlmsPushReceiver.probe` received: the readings, or why none (``failure``)."""

    device: str
    readings: list[Reading]
    failure: str | None = None


@dataclass
class _Probe:
    config: DlmsPushMeter
    keys: SecurityKeys = field(repr=False)
    future: asyncio.Future[Pushed]


class DlmsPushReceiver:
    """One ``dlms-push`` listener (see the module docstring); a Collector."""

    def __init__(self, bus: DlmsPushListener, meters: Sequence[DlmsPushMeter], sink: Sink, tz: ZoneInfo, *,
                 state: StateStore | None = None, clock: Callable[[], datetime] = utc_now,
                 tick_s: float = TICK_S) -> None:
        self.name = bus.name
        self.bus = bus
        self._sink = sink
        self._tz = tz
        self._clock = clock
        self.tick_s = tick_s
        self.state: StateStore = state if state is not None else MemoryState()
        self._sensors = {meter.name: _sensor(meter) for meter in meters}
        self._by_title = {sensor.title: sensor for sensor in self._sensors.values()}
        self.health = {name: sensor.health for name, sensor in self._sensors.items()}
        self.use_thresholds(Thresholds())
        self.counters: dict[str, int] = dict.fromkeys(("connections", "notifications", "readings", "unknown",
                                                        "undecodable", "security_refusals"), 0)
        self.unknown: dict[bytes, dict[str, Any]] = {}
        self.on_discovery: Callable[[str, Discovery], None] | None = None
        self.connected = False
        self._probes: list[_Probe] = []
        self._connections: set[asyncio.Task[Any]] = set()
        self._started_at: float | None = None
        self._stopping = asyncio.Event()

    @classmethod
    def from_config(cls, bus: DlmsPushListener, meters: Sequence[DlmsPushMeter], sink: Sink, tz: ZoneInfo, *,
                    state: StateStore | None = None) -> DlmsPushReceiver:
        """What ``gateway.app`` calls for every ``protocol = "dlms-push"`` bus (``state``
        keeps the sensors' invocation counters)."""
        return cls(bus, meters, sink, tz, state=state)

    # -- the Collector protocol -------------------------------------------------------------

    def meters(self) -> list[str]:
        return list(self._sensors)

    def stop(self) -> None:
        self._stopping.set()

    async def read_now(self, meter: str) -> list[Reading]:
        """The readings of the last push of ``meter`` (it cannot be asked)."""
        if meter not in self._sensors:
            raise KeyError(meter)
        if not self._sensors[meter].readings:
            raise NotPushedYet(f"sensor {meter} pushes on its own and cannot be asked; it has not pushed since the "
                               "gateway started")
        return list(self._sensors[meter].readings)

    def use_thresholds(self, thresholds: Thresholds) -> None:
        for sensor in self._sensors.values():
            failing = sensor.config.not_heard_after
            sensor.health.thresholds = Thresholds(failing, max(failing, thresholds.unreachable_after))

    def status(self) -> dict[str, Any]:
        return {"connected": self.connected, "listen": self.bus.listen, "counters": dict(self.counters),
                "meters": {name: sensor.as_dict() for name, sensor in self._sensors.items()},
                "unknown_meters": list(self.unknown.values())}

    async def run(self) -> None:
        """Listen and watch the sensors until stopped; a port that cannot be opened raises
        (the supervisor restarts the bus)."""
        loop = asyncio.get_running_loop()
        self._started_at = self._started_at or loop.time()
        self._stopping.clear()
        server = await asyncio.start_server(self._connection, self.bus.host, self.bus.port)
        self.connected = True
        try:
            async with server:
                while not self._stopping.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.tick_s):
                            await self._stopping.wait()
                    await self._watch()
        finally:
            self.connected = False
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.wait(list(self._connections))

    async def probe(self, meter: DlmsPushMeter, wait_s: float) -> Pushed:
        """The next push of ``meter`` (not configured here yet) deciphered with its keys;
        :class:`NotPushedYet` when none comes within ``wait_s``."""
        probe = _Probe(meter, SecurityKeys(read_key(meter.ek_file), read_key(meter.ak_file)),
                       asyncio.get_running_loop().create_future())
        return await wait_for_probe(self._probes, probe, wait_s, lambda: NotPushedYet(
            f"sensor {meter.system_title} did not push to {self.name} within {wait_s:g} s"))

    # -- receiving ----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= self.bus.max_connections or task is None:
            writer.close()
            return
        self._connections.add(task)
        self.counters["connections"] += 1
        parser = WrapperParser()
        try:
            while True:
                async with asyncio.timeout(self.bus.idle_timeout_s):
                    data = await reader.read(READ_SIZE)
                if not data:
                    return
                parser.receive_data(data)
                while (message := parser.next_message()) is not None:
                    await self._handle(message.apdu)
        except (TimeoutError, ConnectionError, DLMSError) as exc:
            log.debug("bus %s: push connection ended: %s", self.name, exc)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _handle(self, apdu: bytes) -> None:
        self.counters["notifications"] += 1
        at = self._clock()
        try:
            envelope = decode_apdu(apdu)
        except DLMSError as exc:
            self.counters["undecodable"] += 1
            log.info("bus %s: a push that cannot be decoded: %s", self.name, exc)
            return
        if not isinstance(envelope, GeneralGloCiphering):
            self.counters["undecodable"] += 1
            log.info("bus %s: a push without general-glo-ciphering (%s) names no sensor; dropped", self.name,
                     type(envelope).__name__)
            return
        sensor = self._by_title.get(envelope.system_title)
        if sensor is None:
            await self._unknown(envelope, apdu, at)
            return
        await self._known(sensor, envelope, apdu, at)

    async def _known(self, sensor: PushSensor, envelope: GeneralGloCiphering, apdu: bytes, at: datetime) -> None:
        loop = asyncio.get_running_loop()
        events: list[Record] = []
        sensor.missed_intervals = 0
        sensor.last_heard, sensor.last_heard_at = at, loop.time()
        try:
            notification, flags, accepted = await self._open(sensor, envelope)
        except DLMSError as exc:
            events += self._refused(sensor, exc, at)
            await self._sink.commit(events)
            return
        sensor.pushes += 1
        readings = self._readings(sensor.config, sensor.device, notification, apdu, at, flags)
        transition = sensor.health.succeeded(at)
        sensor.health.device = sensor.device
        if transition is not None:
            events.append(transition_event(transition, source=self.name, device=sensor.device,
                                           message=f"sensor {sensor.config.name} pushes again"))
        if readings:
            sensor.readings = readings
        self.counters["readings"] += len(readings)
        # The counter is committed with the push's readings: a crash keeps both or neither, so
        # a push is never counted as seen without being stored.
        await self._sink.commit([*readings, *events], state=dict([accepted]))

    async def _open(self, sensor: PushSensor, envelope: GeneralGloCiphering
                    ) -> tuple[DataNotification, tuple[str, ...], tuple[str, str]]:
        """Check and decipher a sensor's push: its keys, then (in the overlap) its
        previous ones; the counter must be above the last accepted. Also the state entry
        ``(key, counter)`` to commit with its readings."""
        attempts = [(sensor.keys, counter_key(sensor.config), ())]
        if sensor.previous is not None and _before(sensor.config.key_overlap_until, self._clock()):
            attempts.append((sensor.previous, counter_key(sensor.config, previous=True), ("previous_key",)))
        failure: DLMSError | None = None
        for keys, key, flags in attempts:
            last = await self.state.get_state(key)
            try:
                plain = decipher_apdu(envelope, keys=keys, system_title=sensor.title,
                                      last_counter=None if last is None else int(last),
                                      required=REQUIRED[sensor.config.security])
            except DLMSSecurityError as exc:
                failure = failure or exc
                continue
            return _notification(plain.apdu), flags, (key, str(plain.invocation_counter))
        assert failure is not None
        raise failure

    def _refused(self, sensor: PushSensor, exc: DLMSError, at: datetime) -> list[Record]:
        now = asyncio.get_running_loop().time()
        self.counters["security_refusals"] += 1
        sensor.refusals += 1
        events: list[Record] = []
        transition = sensor.health.failed("security", str(exc), at)
        if transition is not None:
            events.append(transition_event(transition, source=self.name, device=sensor.device,
                                           message=f"sensor {sensor.config.name} is {transition.new.value}: {exc}"))
        if sensor.refusal_event_at is None or now - sensor.refusal_event_at >= SECURITY_EVENT_INTERVAL_S:
            sensor.refusal_event_at = now
            log.warning("bus %s: a push of %s refused: %s", self.name, sensor.config.name, exc)
            events.insert(0, make_event("security.refused", f"sensor {sensor.config.name}: push refused: {exc}",
                                        occurred_at=at, device=sensor.device, source=self.name,
                                        details={"meter": sensor.config.name, "reason": type(exc).__name__,
                                                 "field": exc.field or "", "count": sensor.refusals}))
        return events

    async def _unknown(self, envelope: GeneralGloCiphering, apdu: bytes, at: datetime) -> None:
        title = envelope.system_title.hex().upper()
        self.counters["unknown"] += 1
        seen = self.unknown.get(envelope.system_title)
        device = dlms_device_id(title)
        if seen is None:
            seen = self.unknown[envelope.system_title] = {"system_title": title, "device": device, "pushes": 0}
            if self.on_discovery is not None:
                self.on_discovery(self.name, Discovery(device, {"system_title": title, "device": device},
                                                       {"protocol": "dlms-push", "system_title": title}, at))
        seen["pushes"] += 1
        seen["last_heard"] = at.isoformat()
        for probe in self._probes:
            if probe.future.done() or probe.config.system_title != title:
                continue
            try:
                plain = decipher_apdu(envelope, keys=probe.keys, system_title=envelope.system_title,
                                      required=REQUIRED[probe.config.security])
                notification = _notification(plain.apdu)
            except DLMSError as exc:
                probe.future.set_result(Pushed(device, [], failure=f"security: {exc} (check the keys)"))
                continue
            await self.state.set_state(counter_key(probe.config), str(plain.invocation_counter))
            probe.future.set_result(Pushed(device, self._readings(probe.config, device, notification, apdu, at, ())))

    def _readings(self, config: DlmsPushMeter, device: str, notification: DataNotification, apdu: bytes,
                  at: datetime, flags: tuple[str, ...]) -> list[Reading]:
        """The body's elements by the push object list (see the module docstring)."""
        specs = [parse_object(text) for text in config.objects]
        body = notification.body
        elements = list(body.value) if isinstance(body.value, (list, tuple)) else [body]
        if len(elements) != len(specs):
            log.info("bus %s: push of %s has %d elements for a push object list of %d; read as far as they go",
                     self.name, config.name, len(elements), len(specs))
        scalers = {spec.obis: ScalerUnit.from_data(value) for spec, value in zip(specs, elements)
                   if SCALER_UNIT_ATTRIBUTE.get(spec.class_id) == spec.attribute}
        meter_time = notification.date_time.to_datetime(self._tz) if notification.date_time else None
        protection = apdu_protection([apdu])
        readings = []
        for spec, value in zip(specs, elements):
            if spec.class_id == PUSH_SETUP_CLASS or SCALER_UNIT_ATTRIBUTE.get(spec.class_id) == spec.attribute:
                continue
            scaler = scalers.get(spec.obis) if spec.attribute == 2 else None
            readings.append(_reading(device, spec, value, scaler, self._tz, at, meter_time, apdu, protection, flags))
        return readings

    async def _watch(self) -> None:
        """A failure for each expected interval a sensor did not push."""
        now = asyncio.get_running_loop().time()
        at = self._clock()
        events: list[Record] = []
        for sensor in self._sensors.values():
            since = sensor.last_heard_at if sensor.last_heard_at is not None else self._started_at or now
            silent_s = now - since
            while sensor.missed_intervals < int(silent_s // sensor.config.expected_interval_s):
                sensor.missed_intervals += 1
                transition = sensor.health.failed("not_heard", f"no push for {silent_s:.0f} s", at)
                if transition is not None and transition.new is not MeterState.OK:
                    last = sensor.last_heard.isoformat() if sensor.last_heard else "never"
                    events.append(transition_event(
                        transition, source=self.name, device=sensor.device,
                        message=f"sensor {sensor.config.name} is {transition.new.value}: no push for {silent_s:.0f} s",
                        details={"last_heard": last, "silent_s": round(silent_s)}))
        if events:
            await self._sink.commit(events)



def counter_key(config: DlmsPushMeter, *, previous: bool = False) -> str:
    """Where the last invocation counter accepted from a sensor is kept: per sensor and key
    generation (a new key starts a new counter, Green Book 9.2.2.3)."""
    generation = config.key_generation - (1 if previous else 0)
    return f"dlms-push.ic.{config.system_title}" + (f".k{generation}" if generation > 0 else "")


def _sensor(meter: DlmsPushMeter) -> PushSensor:
    previous = None
    if meter.previous_ek_file and meter.previous_ak_file:
        previous = SecurityKeys(read_key(meter.previous_ek_file), read_key(meter.previous_ak_file))
    return PushSensor(meter, MeterHealth(meter.name), bytes.fromhex(meter.system_title),
                      SecurityKeys(read_key(meter.ek_file), read_key(meter.ak_file)), previous)


def _before(until: datetime | None, now: datetime) -> bool:
    return until is not None and (until.tzinfo is None or now < until)


def _notification(plain: bytes) -> DataNotification:
    apdu = decode_apdu(plain)
    if not isinstance(apdu, DataNotification):
        raise DLMSError(f"a push carries {type(apdu).__name__}, not a DataNotification", field="tag")
    return apdu


def _reading(device: str, spec: ObjectSpec, value: Data, scaler: ScalerUnit | None, tz: ZoneInfo, at: datetime,
             meter_time: datetime | None, apdu: bytes, protection: str | None, flags: tuple[str, ...]) -> Reading:
    return Reading(device=device, quantity=quantity_name(spec.obis, spec.class_id, spec.attribute),
                   value=reading_value(value, tz, scaler), unit=scaler.symbol if scaler else None, captured_at=at,
                   meter_time=meter_time, obis=str(spec.obis), raw=apdu, protection=protection, flags=flags)


