"""The DLMS/COSEM collector: one DLMS line from the configuration, its meters polled in turn.

``DlmsCollector.from_config(line, meters, sink, tz, state=store)`` reads each meter in one
association (:mod:`gateway.collectors.dlms_session`): over RS-485 the serial port stays open
for the line's life and the meters share it by HDLC address, one association at a time;
over TCP a connection is opened for each association. Every read of a meter:

1. the logical device name (0.0.42.0.0.255, read once and cached): ``device`` is
   :func:`~gateway.model.dlms_device_id` of it;
2. the Clock (0.0.1.0.0.255): ``meter_time`` of the other readings, a ``clock`` reading and
   ``clock_deviation_s`` (meter minus gateway, seconds). With ``clock_sync.set`` a deviation
   above the threshold is corrected (SET Clock.time, or ACTION adjust_to_quarter) and raises
   ``clock.set`` with the deviation before and after; without, it raises ``clock.drift``;
3. the configured objects: registers with their scaler_unit applied exactly (scaler_unit
   read once per object and cached), Data objects, the disconnect control's state ...;
4. each profile by range from the last captured entry stored in the durable state (first
   read: ``backfill_s`` back), rows at or before it skipped, rows committed to the sink
   together with the new last entry (one transaction): a restart or an outage resumes
   where it stopped, without gaps and without storing a row twice;
5. each event log the same way, its rows as ``meter.event`` events.

Failures: a security refusal (wrong key, failed tag, replayed counter, refused credentials)
raises ``security.refused`` and fails the read; the polling loop raises ``comm.failed`` /
``comm.recovered`` for every failure. Keys are loaded once at start and never logged.

Commands: :meth:`DlmsCollector.operate` runs an ACTION (e.g. the disconnect control's
remote_disconnect / remote_reconnect) on the line ahead of scheduled reads.

Every reading keeps the answer it came in, as received (``raw``: the APDUs, ciphered as
they arrived) and how that answer was protected (``protection``, from its security control
byte). The device lifecycle adds: :meth:`DlmsCollector.probe` (the commissioning read of a
meter that is not configured yet), :meth:`DlmsCollector.transfer_keys` (new keys with the
security setup's global_key_transfer, wrapped with the KEK) and the key change's overlap: a
meter whose new keys are refused is associated with its previous keys until
``key_overlap_until`` (readings flagged ``previous_key``). Invocation counters are kept per
key generation (a new key starts a new counter, Green Book 9.2.2.3).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.codecs.dlms.association import Authentication, ClientSettings, SecuritySettings
from gateway.codecs.dlms.axdr import Data, DataType, octet_string
from gateway.codecs.dlms.dates import ClockStatus, CosemDateTime
from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.codecs.dlms.hdlc import physical_address_from_serial
from gateway.codecs.dlms.hdlc_connection import HdlcSettings
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import (
    AUTHENTICATED_ENCRYPTION,
    AUTHENTICATION_ONLY,
    ENCRYPTION_ONLY,
    SecurityKeys,
)
from gateway.codecs.dlms.selective import CLOCK_TIME
from gateway.codecs.dlms.services import ActionResult, AttributeDescriptor, MethodDescriptor
from gateway.collectors.base import PolledBus, Sink, StateStore
from gateway.collectors.dlms_reader import CosemReader, ReaderCache, apdu_protection
from gateway.collectors.health import failure_reason
from gateway.collectors.dlms_session import (
    AssociationRefused,
    DataAccessError,
    DlmsSession,
    SessionTarget,
    dlms_session,
)
from gateway.collectors.dlms_values import (
    CLOCK,
    CLOCK_CLASS,
    DISCONNECT_CONTROL_CLASS,
    ObjectSpec,
    date_time_of,
    decimal_seconds,
    parse_object,
    quantity_name,
    reading_value,
)
from gateway.config import DlmsLine, DlmsMeter, derived_system_title, read_key, read_secret
from gateway.dlms_counters import InvocationCounterStore
from gateway.errors import ConfigError, GatewayError, TransportError
from gateway.model import Event, Reading, Record, Severity, dlms_device_id, utc_now, value_text
from gateway.transports import LineSettings, Transport, open_transport

log = logging.getLogger(__name__)

#: Security settings → the security control byte's protection bits (Green Book 9.2.7.2.4).
SECURITY_CONTROL = {
    "authenticated": AUTHENTICATION_ONLY,
    "encrypted": ENCRYPTION_ONLY,
    "authenticated+encrypted": AUTHENTICATED_ENCRYPTION,
}
AUTHENTICATION = {"none": Authentication.NONE, "low": Authentication.LOW, "gmac": Authentication.HIGH_GMAC}
#: Clock methods (Blue Book 4.5.1): adjust_to_quarter is method 1 (2 is
#: adjust_to_measuring_period).
ADJUST_TO_QUARTER = 1
#: The clock status bit kept when the gateway sets the time (the meter knows its DST).
_KEPT_STATUS = ClockStatus.DAYLIGHT_SAVING_ACTIVE
#: A range read reaches this far past the gateway's now (a meter clock slightly ahead).
RANGE_LEAD = timedelta(minutes=1)
#: Event log columns that carry the event code: the first integer column after the clock.
_EVENT_CODE_TYPES = frozenset({DataType.UNSIGNED, DataType.LONG_UNSIGNED, DataType.DOUBLE_LONG_UNSIGNED,
                               DataType.ENUM, DataType.INTEGER, DataType.LONG, DataType.DOUBLE_LONG})


def line_settings(line: DlmsLine) -> LineSettings:
    """HDLC over a serial line: 8N1 at the line's rate (IEC 62056-46 annex)."""
    return LineSettings(line.baud, 8, "N", 1)


@dataclass(frozen=True)
class MeterSecrets:
    """A meter's credentials, loaded from its key files once. Never printed.
    ``previous``: the keys before the last key change, tried until ``previous_until``."""

    password: bytes | None = field(default=None, repr=False)
    keys: SecurityKeys | None = field(default=None, repr=False)
    previous: SecurityKeys | None = field(default=None, repr=False)
    previous_until: datetime | None = None

    @classmethod
    def load(cls, meter: DlmsMeter) -> MeterSecrets:
        password = read_secret(meter.password_file) if meter.password_file else None
        keys = previous = None
        if meter.ek_file and meter.ak_file:
            keys = SecurityKeys(read_key(meter.ek_file), read_key(meter.ak_file))
        if meter.previous_ek_file and meter.previous_ak_file and meter.key_overlap_until is not None:
            previous = SecurityKeys(read_key(meter.previous_ek_file), read_key(meter.previous_ak_file))
        return cls(password, keys, previous, meter.key_overlap_until)

    def previous_usable(self, now: datetime) -> bool:
        until = self.previous_until
        return self.previous is not None and until is not None and (until.tzinfo is None or now < until)


def counter_name(meter: DlmsMeter, *, previous: bool = False) -> str:
    """Whose incoming invocation counters a session keeps: the meter's, per key generation
    (generation 0 keeps the plain name, as before any key change)."""
    generation = meter.key_generation - (1 if previous else 0)
    return meter.name if generation <= 0 else f"{meter.name}.k{generation}"


#: The security setup's method 2, global_key_transfer (Blue Book 4.4.7, class 64 version 1):
#: array of key_data structure {key_id: enum, key_wrapped: octet-string}, each key wrapped
#: with the KEK (AES key wrap, RFC 3394; suite 0).
SECURITY_SETUP_CLASS = 64
GLOBAL_KEY_TRANSFER = 2
#: key_id: 0 global unicast encryption key, 1 global broadcast encryption key, 2 authentication key.
KEY_ID = {"ek": 0, "bk": 1, "ak": 2}


def key_transfer_data(keys: dict[str, bytes], kek: bytes) -> Data:
    """The global_key_transfer parameter: each key wrapped with ``kek``."""
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap

    from gateway.codecs.dlms.axdr import array, structure

    return array(*(structure(Data(DataType.ENUM, KEY_ID[name]), octet_string(aes_key_wrap(kek, key)))
                   for name, key in keys.items()))


def client_settings(meter: DlmsMeter, secrets: MeterSecrets, system_title: bytes) -> ClientSettings:
    """The association settings of a configured meter."""
    security = meter.effective_security
    sec = None
    if secrets.keys is not None:
        sec = SecuritySettings(system_title, secrets.keys,
                               security_control=SECURITY_CONTROL.get(security, AUTHENTICATED_ENCRYPTION))
    return ClientSettings(
        authentication=AUTHENTICATION[meter.authentication],
        password=secrets.password,
        security=sec,
        ciphered=security != "none",
        max_receive_pdu_size=meter.max_pdu_size,
    )


def session_target(line: DlmsLine, meter: DlmsMeter, settings: ClientSettings) -> SessionTarget:
    """How to reach ``meter`` on ``line``."""
    physical = meter.server_physical
    if meter.serial_number is not None:
        physical = physical_address_from_serial(meter.serial_number)
    size = meter.address_size or (4 if meter.serial_number is not None else None)
    hdlc = HdlcSettings(client_sap=meter.client_sap, server_logical=meter.server_logical,
                        server_physical=physical, server_address_size=size)
    return SessionTarget(
        interface=line.interface, client_settings=settings, line=line_settings(line), hdlc=hdlc,
        client_wport=meter.client_sap, server_wport=meter.server_logical, mode_e=line.mode_e,
        response_timeout_s=line.response_timeout_ms / 1000, session_timeout_s=line.session_timeout_s,
        retries=line.retries, name=meter.name)


@dataclass(frozen=True, slots=True)
class Operation:
    """The outcome of :meth:`DlmsCollector.operate`: the Action-Result and return data,
    and the readings taken after it (the disconnect control's new state)."""

    meter: str
    method: MethodDescriptor
    result: ActionResult
    return_value: Any
    readings: tuple[Reading, ...] = ()


class DlmsCollector(PolledBus[DlmsMeter]):
    """One DLMS line (see the module docstring). ``state`` keeps invocation counters and
    the last entry read of each profile and event log; without it they live in memory
    (tests), and a restart re-reads ``backfill_s``."""

    def __init__(self, line: DlmsLine, meters: Sequence[DlmsMeter], sink: Sink, tz: ZoneInfo, *,
                 state: StateStore | None = None, clock: Callable[[], datetime] = utc_now,
                 secrets: dict[str, MeterSecrets] | None = None) -> None:
        super().__init__(line.name, meters, sink, tz, clock=clock)
        self.line = line
        self.state: StateStore = state if state is not None else MemoryState()
        self.invocation_counters = InvocationCounterStore(self.state)
        self._secrets = secrets if secrets is not None else {m.name: MeterSecrets.load(m) for m in meters}
        self._targets = {m.name: self._target(m, self._secrets[m.name]) for m in meters}
        self._cache = {m.name: ReaderCache() for m in meters}
        #: Flags of the association in progress per meter (``previous_key``).
        self._flags: dict[str, tuple[str, ...]] = {}
        self._transport: Transport | None = None
        self.link_counters = {"associations": 0, "requests": 0, "continuations": 0, "security_refusals": 0}

    @classmethod
    def from_config(cls, line: DlmsLine, meters: Sequence[DlmsMeter], sink: Sink, tz: ZoneInfo, *,
                    state: StateStore | None = None) -> DlmsCollector:
        """What ``gateway.app`` calls for every ``protocol = "dlms"`` line."""
        if state is None:
            raise ConfigError([f"DLMS line {line.name}: needs the gateway's durable state (invocation counters)"])
        return cls(line, meters, sink, tz, state=state)

    # -- the line ---------------------------------------------------------------------------

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        """A serial line stays open for the collector's life; TCP connects per association."""
        if self.line.port is None:
            yield
            return
        async with open_transport(line_settings(self.line), port=self.line.port) as transport:
            self._transport = transport
            try:
                yield
            finally:
                self._transport = None

    @asynccontextmanager
    async def _line(self) -> AsyncIterator[Transport]:
        if self.line.port is not None:
            if self._transport is None:
                raise TransportError(f"line {self.name} is not connected")
            yield self._transport
            return
        async with open_transport(line_settings(self.line), tcp=self.line.tcp) as transport:
            yield transport

    def _target(self, meter: DlmsMeter, secrets: MeterSecrets, keys: SecurityKeys | None = None) -> SessionTarget:
        """How to associate with ``meter`` (with ``keys`` instead of its own, when given).
        load_config fills system_title from the gateway id; a meter built by hand without
        one gets a title derived from the line's name."""
        if keys is not None:
            secrets = MeterSecrets(secrets.password, keys)
        title = bytes.fromhex(meter.system_title) if meter.system_title else derived_system_title(self.line.name)
        return session_target(self.line, meter, client_settings(meter, secrets, title))

    @asynccontextmanager
    async def session(self, meter: DlmsMeter) -> AsyncIterator[DlmsSession]:
        """One association with ``meter`` (the line held for its duration); a security
        refusal is recorded as ``security.refused`` before the error goes on. During a key
        change's overlap a refusal of the new keys is followed by an association with the
        previous ones (its readings flagged ``previous_key``); only when both are refused is
        it a refusal."""
        secrets = self._secrets.get(meter.name) or MeterSecrets()
        attempts = [(self._targets.get(meter.name) or self._target(meter, secrets), counter_name(meter), ())]
        if secrets.previous_usable(self._clock()):
            attempts.append((self._target(meter, secrets, secrets.previous), counter_name(meter, previous=True),
                             ("previous_key",)))
        for number, (target, counters, flags) in enumerate(attempts, start=1):
            last = number == len(attempts)
            self._flags[meter.name] = flags
            yielded = False
            try:
                async with self._associated(meter, target, counters, report=last) as session:
                    yielded = True
                    yield session
                return
            except AssociationRefused as exc:
                if yielded or last:
                    raise
                log.info("line %s: meter %s refused its new keys (%s); its previous keys are tried", self.name,
                         meter.name, exc)
            finally:
                self._flags.pop(meter.name, None)

    @asynccontextmanager
    async def _associated(self, meter: DlmsMeter, target: SessionTarget, counters: str, *,
                          report: bool = True) -> AsyncIterator[DlmsSession]:
        try:
            async with self._line() as transport, \
                    dlms_session(transport, target, self.invocation_counters.for_meter(counters)) as session:
                self.link_counters["associations"] += 1
                try:
                    yield session
                finally:
                    self.link_counters["requests"] += session.requests
                    self.link_counters["continuations"] += session.continuations
        except DLMSSecurityError as exc:
            if not report and isinstance(exc, AssociationRefused):
                raise
            self.link_counters["security_refusals"] += 1
            log.warning("line %s: meter %s refused for security: %s", self.name, meter.name, exc)
            await self._sink.commit([self._meter_event(meter, "security.refused", Severity.ERROR,
                                                       f"meter {meter.name}: {exc}",
                                                       {"reason": type(exc).__name__, "field": exc.field or ""})])
            raise

    # -- reading ----------------------------------------------------------------------------

    async def read_meter(self, meter: DlmsMeter) -> list[Record]:
        read: _MeterRead | None = None
        try:
            async with self.session(meter) as session:
                read = _MeterRead(self, meter, session)
                return await read.run()
        finally:
            # Profile rows already read are kept even when a later part of the read failed;
            # committed outside the association (the line is free again), with their marks.
            if read is not None:
                await read.keep_rows()

    async def operate(self, meter: str, obis: Obis | str, class_id: int, method: int,
                      parameters: Data | None = None) -> Operation:
        """Invoke ``method`` of object ``class_id``/``obis`` on ``meter`` as soon as the line
        is free, ahead of scheduled reads. Raises the read's ``GatewayError`` on failure
        (a refused ACTION: :class:`~gateway.collectors.dlms_session.DataAccessError`).
        After an ACTION on a disconnect control (class 70) its output and control state are
        read back and stored. A ``meter.action`` event records every completed ACTION."""
        descriptor = MethodDescriptor(class_id, obis if isinstance(obis, Obis) else Obis.parse(obis), method)
        return await self.run_on_bus(meter, lambda m: self._operate(m, descriptor, parameters))

    async def _operate(self, meter: DlmsMeter, method: MethodDescriptor, parameters: Data | None) -> Operation:
        async with self.session(meter) as session:
            outcome = await session.action(method, parameters)
            readings: list[Reading] = []
            if method.class_id == DISCONNECT_CONTROL_CLASS:
                read = _MeterRead(self, meter, session)
                await read.identify()
                for attribute in (2, 3):
                    readings.append(await read.read_object(ObjectSpec(DISCONNECT_CONTROL_CLASS, method.instance, attribute)))
        value = outcome.return_data
        result = Operation(meter.name, method, outcome.result, None if value is None else
                           reading_value(value, self._tz) if isinstance(value, Data) else value.name, tuple(readings))
        cache = self._cache[meter.name]
        event = Event(code="meter.action", severity=Severity.INFO, occurred_at=self._clock(), device=cache.device,
                      source=self.name, message=f"meter {meter.name}: ACTION {method.instance.dotted}:"
                                                f"{method.class_id}:{method.method} {outcome.result.name}",
                      details={"meter": meter.name, "obis": method.instance.dotted, "class": method.class_id,
                               "method": method.method, "result": outcome.result.name})
        await self._sink.commit([*readings, event])
        return result

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["counters"].update(self.link_counters)  # one counters object per bus, as every bus has
        out["link"] = dict(self.link_counters)
        return out

    def device_of(self, meter: str) -> str | None:
        """The device id of ``meter`` once it has been read (else None)."""
        cache = self._cache.get(meter)
        return cache.device if cache is not None else None

    async def identify(self, meter: DlmsMeter, session: DlmsSession) -> str:
        """The device id of ``meter``, read in ``session`` (the logical device name) unless
        it is known already."""
        read = _MeterRead(self, meter, session)
        await read.identify()
        return read.cache.device

    def _meter_event(self, meter: DlmsMeter, code: str, severity: Severity, message: str,
                     details: dict[str, str | int], device: str | None = None) -> Event:
        cache = self._cache.get(meter.name)
        return Event(code=code, severity=severity, message=message, occurred_at=self._clock(),
                     device=device or (cache.device if cache else None), source=self.name,
                     details={"meter": meter.name, **details})

    # -- the device lifecycle -----------------------------------------------------------------

    async def probe(self, meter: DlmsMeter, objects: tuple[ObjectSpec, ...] = ()) -> Probe:
        """The commissioning read of ``meter`` (a ``[[meters]]`` table that is not
        configured on this line yet, keys loaded from its files): associate with its keys,
        read its name, its clock (set when ``clock_sync`` says so and it is off), its
        configured objects and ``objects`` (metrological identification: firmware version
        and checksum, which a meter may not have). A failure is the outcome, not an error:
        :attr:`Probe.failure` says what went wrong (a refused association: its keys)."""
        return await self.run_exclusive(lambda: self._probe(meter, objects))

    async def _probe(self, meter: DlmsMeter, objects: tuple[ObjectSpec, ...]) -> Probe:
        secrets = MeterSecrets.load(meter)
        read: _MeterRead | None = None
        try:
            async with self._associated(meter, self._target(meter, secrets), counter_name(meter)) as session:
                read = _MeterRead(self, meter, session, ReaderCache())
                records = await read.run(keep_profiles=False)
                for spec in objects:
                    try:
                        records.append(await read.read_object(spec))
                    except DataAccessError as exc:
                        log.info("line %s: %s does not have %s: %s", self.name, meter.name, spec.obis, exc)
        except GatewayError as exc:
            return Probe(meter.name, read.cache.device if read else None, [], failure=f"{failure_reason(exc)}: {exc}",
                         reason=failure_reason(exc))
        readings = [r for r in records if isinstance(r, Reading)]
        events = [r for r in records if isinstance(r, Event)]
        return Probe(meter.name, read.cache.device, readings, events, clock_before_s=read.clock_before_s,
                     clock_after_s=read.clock_after_s)

    async def transfer_keys(self, meter: str, keys: dict[str, bytes], kek: bytes) -> ActionResult:
        """Give ``meter`` new keys (``{"ek": …, "ak": …}``) with its security setup's
        global_key_transfer, each wrapped with ``kek``, in an association under its
        current keys; the meter uses them from its next association. Raises the ACTION's
        :class:`~gateway.collectors.dlms_session.DataAccessError` when the meter refuses."""
        async def transfer(config: DlmsMeter) -> ActionResult:
            method = MethodDescriptor(SECURITY_SETUP_CLASS, Obis.parse(config.security_setup), GLOBAL_KEY_TRANSFER)
            async with self.session(config) as session:
                outcome = await session.action(method, key_transfer_data(keys, kek))
            return outcome.result
        return await self.run_on_bus(meter, transfer)


@dataclass(frozen=True)
class Probe:
    """The outcome of :meth:`DlmsCollector.probe`: the device's identity, its readings
    and events (``clock.set``), the clock deviation before and after a set, or why the
    read failed (``failure``, with the short ``reason`` code of :mod:`.health`)."""

    meter: str
    device: str | None
    readings: list[Reading]
    events: list[Event] = field(default_factory=list)
    failure: str | None = None
    reason: str | None = None
    clock_before_s: float | None = None
    clock_after_s: float | None = None


class _MeterRead(CosemReader):
    """One complete read of one meter inside an association."""

    def __init__(self, collector: DlmsCollector, meter: DlmsMeter, session: DlmsSession,
                 cache: ReaderCache | None = None) -> None:
        super().__init__(session, collector._tz, cache or collector._cache[meter.name])
        self.c = collector
        self.meter = meter
        self.flags = collector._flags.get(meter.name, ())
        self.clock_before_s: float | None = None
        self.clock_after_s: float | None = None
        self.records: list[Record] = []
        self.meter_time: datetime | None = None
        #: One capture time for every reading of this read (profile rows keep their own
        #: meter_time), so the DLMS server's profile of the meter shows one capture per read.
        self.captured_at = collector._clock()
        #: Profile and event log rows, and the state marks (key, last entry) they advance.
        self.rows: list[Record] = []
        self.marks: list[tuple[str, str]] = []

    async def keep_rows(self) -> None:
        """Commit the rows read and how far each profile was read, in one transaction: a
        crash keeps both or neither, so no row is skipped and none stored twice."""
        if self.rows:
            await self.c._sink.commit(self.rows, state=dict(self.marks))

    async def run(self, *, keep_profiles: bool = True) -> list[Record]:
        await self.identify()
        await self.read_clock()
        for text in self.meter.objects:
            self.records.append(await self.read_object(parse_object(text)))
        if not keep_profiles:
            return self.records
        for profile in self.meter.profiles:
            await self.read_profile(Obis.parse(profile.obis), profile.backfill_s, profile.columns, events=False)
        for log_obis in self.meter.event_logs:
            await self.read_profile(Obis.parse(log_obis), self._default_backfill(), None, events=True)
        return self.records

    def _default_backfill(self) -> int:
        return max((p.backfill_s for p in self.meter.profiles), default=86_400)

    async def identify(self) -> None:
        if self.cache.device is None:
            self.cache.device = dlms_device_id(await self.device_name())
            if self.meter.name in self.c.health:
                self.c.health[self.meter.name].device = self.cache.device
            # Which configured meter a device is, for those who know only the device (the
            # DLMS server's logical devices, operations addressed by device id).
            await self.c.state.set_state(f"dlms.device.{self.meter.name}", self.cache.device)

    def reading(self, spec: ObjectSpec, value, unit: str | None, *, meter_time: datetime | None = None,
                status: str | None = None, quantity: str | None = None, raw: bytes | None = None,
                protection: str | None = None) -> Reading:
        return Reading(device=self.cache.device, quantity=quantity or quantity_name(spec.obis, spec.class_id,
                                                                                    spec.attribute),
                       value=value, unit=unit, captured_at=self.captured_at, meter_time=meter_time or self.meter_time,
                       obis=str(spec.obis), status=status, raw=raw or None, protection=protection, flags=self.flags)

    # -- clock --

    async def read_clock(self) -> None:
        spec = ObjectSpec(CLOCK_CLASS, CLOCK, 2)
        data = await self.session.get(AttributeDescriptor(CLOCK_CLASS, CLOCK, 2))
        raw, protection = b"".join(self.session.received), apdu_protection(self.session.received)
        before = self.clock_before_s = self._deviation(data)
        self.records.append(self.reading(spec, self.meter_time, None, raw=raw, protection=protection))
        self.records.append(self.reading(spec, decimal_seconds(before), "s", quantity="clock_deviation_s", raw=raw,
                                         protection=protection))
        sync = self.meter.clock_sync
        if sync is None or abs(before) <= sync.threshold_s:
            return
        if not sync.set:
            self.records.append(self.c._meter_event(self.meter, "clock.drift", Severity.WARNING,
                                                    f"meter {self.meter.name}: clock off by {before:.1f} s",
                                                    {"deviation_s": str(decimal_seconds(before))},
                                                    device=self.cache.device))
            return
        await self._set_clock(sync.method, data)
        after = self.clock_after_s = self._deviation(await self.session.get(AttributeDescriptor(CLOCK_CLASS, CLOCK, 2)))
        self.records.append(self.c._meter_event(
            self.meter, "clock.set", Severity.INFO,
            f"meter {self.meter.name}: clock set ({sync.method}), off by {before:.1f} s before, {after:.1f} s after",
            {"before_s": str(decimal_seconds(before)), "after_s": str(decimal_seconds(after)), "method": sync.method},
            device=self.cache.device))

    def _deviation(self, data: Data) -> float:
        """Meter clock minus gateway clock, in seconds; sets ``meter_time``."""
        self.meter_time = date_time_of(data, self.tz)
        return (self.meter_time - self.c._clock()).total_seconds()

    async def _set_clock(self, method: str, current: Data) -> None:
        if method == "adjust_to_quarter":
            await self.session.action(MethodDescriptor(CLOCK_CLASS, CLOCK, ADJUST_TO_QUARTER), Data(DataType.INTEGER, 0))
            return
        raw = current.value if isinstance(current.value, (bytes, bytearray)) else None
        status = 0
        if raw is not None:
            meter_status = CosemDateTime.from_bytes(bytes(raw)).clock_status
            status = (meter_status or 0) & _KEPT_STATUS
        # The meter's own offset (from what it reported), so its local time stays local.
        now = self.c._clock().astimezone(self.meter_time.tzinfo or self.tz)
        await self.session.set(AttributeDescriptor(CLOCK_CLASS, CLOCK, 2),
                               octet_string(CosemDateTime.from_datetime(now, status).to_bytes()))

    # -- objects --

    async def read_object(self, spec: ObjectSpec) -> Reading:
        value = await self.read(spec)
        return self.reading(spec, value.value, value.unit, meter_time=value.meter_time, status=value.status,
                            raw=value.raw, protection=value.protection)

    # -- profiles and event logs --

    async def read_profile(self, obis: Obis, backfill_s: int, columns: list[int] | None, *, events: bool) -> None:
        """Rows newer than the last stored entry (kept by :meth:`keep_rows`)."""
        kind = "log" if events else "profile"
        key = f"dlms.{kind}.{self.meter.name}.{obis.dotted}"
        stored = await self.c.state.get_state(key)
        last = datetime.fromisoformat(stored) if stored else None
        now = self.c._clock()
        start = last + timedelta(seconds=1) if last else now - timedelta(seconds=backfill_s)
        profile = await self.profile(obis, start, now + RANGE_LEAD, columns)
        rows = [(moment, row) for moment, row in profile.rows if last is None or moment > last]
        if not rows:
            return
        for moment, row in rows:
            if events:
                self.rows.append(self._event(obis, moment, row, profile.columns))
            else:
                self.rows += await self._row_readings(obis, moment, row, profile)
        self.marks.append((key, rows[-1][0].isoformat()))

    async def _row_readings(self, obis: Obis, moment: datetime, row, profile) -> list[Reading]:
        readings = []
        shown = profile.columns
        for column, (value, unit) in zip(shown, await self.column_values(shown, row)):
            if column == CLOCK_TIME:
                continue
            spec = ObjectSpec(column.class_id, column.logical_name, column.attribute_index)
            quantity = f"{quantity_name(spec.obis, spec.class_id, spec.attribute)};profile={obis.dotted}"
            readings.append(self.reading(spec, value, unit, meter_time=moment, quantity=quantity, raw=profile.raw,
                                         protection=profile.protection))
        return readings

    def _event(self, obis: Obis, moment: datetime, row, shown) -> Event:
        details: dict[str, str | int] = {"meter": self.meter.name, "log": obis.dotted}
        code = None
        for column, value in zip(shown, row):
            if column == CLOCK_TIME:
                continue
            if code is None and value.type in _EVENT_CODE_TYPES:
                code = int(value.value)
                details["event_code"] = code
            else:
                text = reading_value(value, self.tz)
                details[str(column.logical_name)] = text if isinstance(text, (str, int)) else value_text(text) or ""
        return Event(code="meter.event", severity=Severity.INFO, occurred_at=moment, device=self.cache.device,
                     source=self.c.name, message=f"meter {self.meter.name}: event {code} in log {obis.dotted}",
                     details=details)


class MemoryState:
    """A :class:`~gateway.collectors.base.StateStore` in memory (tests, one-off reads)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get_state(self, key: str) -> str | None:
        return self.values.get(key)

    async def set_state(self, key: str, value: str) -> None:
        self.values[key] = str(value)

    async def increment_state(self, key: str, by: int = 1) -> int:
        value = int(self.values.get(key, "0")) + by
        self.values[key] = str(value)
        return value

