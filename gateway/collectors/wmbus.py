"""The wireless M-Bus receiver: one radio dongle from the configuration, listened to all the time.

``WMBusReceiver(bus, meters, sink, tz)`` opens the dongle's serial port (or TCP serial
server), sets it to receive in the configured mode (:mod:`gateway.collectors.wmbus_dongle`)
and then listens. Each telegram heard:

* is checked at the link layer (a failed CRC or checksum is counted, nothing more);
* is a *duplicate* when the same meter, access number and payload was heard within
  ``duplicate_window_s`` (meters repeat, repeaters relay): counted, not stored again — and
  a telegram another dongle of this gateway already stored is not stored twice either;
* is decrypted and decoded with the key of the configured meter it comes from (keys are
  read once, at the first start, and never logged) and its records become Readings by the
  rule of wired M-Bus (:mod:`gateway.collectors.mbus_readings`): device from the meter's
  address, status = the TPL status byte in hex, raw = the telegram as the dongle gave it,
  meter_time from the storage-0 date and time record;
* is *refused* for security — wrong key or failed MAC, plaintext from a meter with a key,
  an encrypted telegram from a configured meter without one, an unsupported security
  mode, a *replay*: counted per meter and raised as ``security.refused``, at the first
  refusal and then at most once per meter per hour with the count since the last event;
* a mode 7 telegram is a replay when its AFL message counter (MCR) is not above the last
  one accepted from its meter (OMS Vol. 2: the counter grows with every message). The last
  MCR is kept per device in the durable state (``wmbus.mcr.<device>``), committed in the
  same transaction as the telegram's readings, and shared by every dongle of the gateway.
  Mode 5 telegrams carry no counter: their access number wraps at 256 and meter clocks are
  set back legitimately, so neither is a reason to refuse one; a mode 5 telegram recorded
  and sent again after ``duplicate_window_s`` is stored again, with its own (old)
  meter_time for the HES to see — only mode 7 protects against replays;
* comes from a meter that is not configured: listed in ``status()["unknown_meters"]`` for
  registration (and told to ``on_discovery`` the first time it is heard), stored only with
  ``store_unknown = true`` (and only when plaintext).

Key changes: a meter re-keyed on site keeps its previous key (``previous_key_file``) until
``key_overlap_until``: a telegram the new key does not decrypt is tried with the previous
one, and its readings are flagged ``previous_key``. Commissioning: :meth:`WMBusReceiver.probe`
waits for the next telegram of a device that is not configured and decodes it with the key
the operator installs.

Watchdogs: a dongle silent for ``silence_timeout_s`` is closed, reopened and initialised
again (``dongle.reset``). Each meter's health is the state machine of
:mod:`gateway.collectors.health`, where a failure is an ``expected_interval_s`` in which the
meter was not heard (reason ``not_heard``), a telegram refused for security (``security``)
or one that cannot be decoded (``frame``): the meter is failing after ``not_heard_after``
failures (``comm.failed``, with when it was last heard), unreachable after the bus's
``unreachable_after`` (``comm.unreachable``), and ``comm.recovered`` when a telegram of it
is decoded again. A wireless meter cannot be asked: ``read_now`` returns the readings of the
last telegram heard from it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.codecs.mbus.dongles import ReceivedTelegram
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless import WMBusDecoder
from gateway.codecs.mbus.wmbus_security import AesKey
from gateway.collectors.base import Discovery, Sink, StateStore, wait_for_probe
from gateway.collectors.health import MeterHealth, MeterState, Thresholds, Transition, transition_event
from gateway.collectors.wmbus_dongle import DongleSession, count_frame_error, dongle_line
from gateway.collectors.wmbus_telegrams import (
    DuplicateFilter,
    Heard,
    Sightings,
    discovery_of,
    duplicate_key,
    interpret,
    link_frame,
    message_counter,
    meter_address,
    readings_of,
    replayed,
)
from gateway.config import WMBusDongle, WMBusMeter, read_secret, resolve_secret_path
from gateway.errors import ConfigError, GatewayError
from gateway.events import make_event
from gateway.model import Event, Reading, Record, utc_now
from gateway.transports import open_transport

log = logging.getLogger(__name__)

#: At most one ``security.refused`` event per meter in this time (after the first).
SECURITY_EVENT_INTERVAL_S = 3600.0
#: How often the watchdogs look at the clock while the dongle is quiet.
TICK_S = 1.0
#: Short reason codes of the security refusals, for event details.
REFUSAL_REASONS = {
    "MBusAuthenticationError": "authentication_failed",
    "MBusPlaintextError": "plaintext",
    "MBusNoKeyError": "no_key",
    "MBusUnsupportedSecurityError": "unsupported_security",
    "ReplayedTelegram": "replay",
}
#: Durable state: the last AFL message counter accepted from a device.
MCR_PREFIX = "wmbus.mcr."
COUNTERS = ("frames", "decoded", "readings", "duplicates", "unknown", "undecodable", "security_refusals",
            "dongle_resets")

# Telegrams stored by any receiver in this event loop: two dongles hearing one telegram
# store it once.
_STORED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DuplicateFilter] = weakref.WeakKeyDictionary()
# The last message counter accepted per device, for every receiver in this event loop: a
# telegram replayed to a second dongle is refused as well.
_ACCEPTED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, int]] = weakref.WeakKeyDictionary()


class NotHeardYet(GatewayError):
    """A wireless meter was asked for its values before any telegram of it was heard."""


@dataclass
class WirelessMeter:
    """A configured wireless meter and what the receiver knows of it."""

    config: WMBusMeter
    health: MeterHealth
    key: AesKey | None = field(default=None, repr=False)
    telegrams: int = 0
    last_heard: datetime | None = None
    last_heard_at: float | None = None  # event-loop time
    readings: list[Reading] = field(default_factory=list)
    missed_intervals: int = 0
    refusals: int = 0
    unreported_refusals: int = 0
    refusal_event_at: float | None = None
    last_refusal: Heard | None = None
    previous_key: AesKey | None = field(default=None, repr=False)
    previous_until: datetime | None = None

    @property
    def not_heard(self) -> bool:
        return self.missed_intervals >= self.config.not_heard_after

    def as_dict(self) -> dict[str, Any]:
        return {**self.health.as_dict(), "id": self.config.id, "encrypted": self.key is not None,
                "telegrams": self.telegrams, "last_heard": self.last_heard.isoformat() if self.last_heard else None,
                "not_heard": self.not_heard, "security_refusals": self.refusals}


@dataclass(frozen=True, slots=True)
class Probed:
    """What :meth:`WMBusReceiver.probe` heard: the telegram and its readings (none when
    it could not be decoded), captured at ``at``."""

    heard: Heard
    readings: list[Reading]
    at: datetime


@dataclass
class _Probe:
    device: WMBusMeter
    key: AesKey | None = field(repr=False)
    future: asyncio.Future[Probed]


class WMBusReceiver:
    """One wireless M-Bus dongle, built from its configuration (see the module docstring).

    ``status()`` holds the counters (frames, decoded, readings, duplicates, unknown,
    undecodable, security_refusals, dongle_resets, bytes, garbage_bytes, crc_errors,
    frame_errors), the dongle (type, mode, open, what it said about itself), each
    configured meter's health and the meters heard that are not configured.
    """

    def __init__(self, bus: WMBusDongle, meters: Sequence[WMBusMeter], sink: Sink, tz: ZoneInfo, *,
                 clock: Callable[[], datetime] = utc_now, security_event_interval_s: float = SECURITY_EVENT_INTERVAL_S,
                 tick_s: float = TICK_S, state: StateStore | None = None) -> None:
        self.name = bus.name
        self.bus = bus
        self.line = dongle_line(bus.line_baud)
        self._sink = sink
        self._state = state  # the last message counters (None: kept in memory only)
        self._tz = tz
        self._clock = clock
        self.security_event_interval_s = security_event_interval_s
        self.tick_s = tick_s
        self._meters = {meter.name: WirelessMeter(meter, MeterHealth(meter.name)) for meter in meters}
        self.health = {name: meter.health for name, meter in self._meters.items()}
        self.use_thresholds(Thresholds())
        self._by_id: dict[str, list[WirelessMeter]] = {}
        for meter in self._meters.values():
            self._by_id.setdefault(meter.config.id, []).append(meter)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.unknown = Sightings()
        self.dongle_info: dict[str, str] = {}
        self._decoder = WMBusDecoder()
        self._recent = DuplicateFilter()
        self._keys_loaded = False
        self._started_at: float | None = None
        self._open = False
        self._stopping = False
        self._probes: list[_Probe] = []
        #: Told ``(bus, discovery)`` when a meter that is not configured is first heard.
        self.on_discovery: Callable[[str, Discovery], None] | None = None

    @classmethod
    def from_config(cls, bus: WMBusDongle, meters: Sequence[WMBusMeter], sink: Sink, tz: ZoneInfo, *,
                    state: StateStore | None = None) -> WMBusReceiver:
        """What ``gateway.app`` calls for every ``protocol = "wmbus"`` bus (``state`` keeps
        the meters' last message counters)."""
        return cls(bus, meters, sink, tz, state=state)

    # -- the Collector protocol -------------------------------------------------------------

    def meters(self) -> list[str]:
        return list(self._meters)

    def stop(self) -> None:
        """Return from ``run`` after the telegram in hand (within one tick)."""
        self._stopping = True

    async def read_now(self, meter: str) -> list[Reading]:
        """The readings of the last telegram heard from ``meter`` (it cannot be asked)."""
        if meter not in self._meters:
            raise KeyError(meter)
        readings = self._meters[meter].readings
        if not readings:
            raise NotHeardYet(f"meter {meter} is wireless and cannot be asked; no telegram of it has been decoded "
                              "since the gateway started")
        return list(readings)

    async def probe(self, device: WMBusMeter, key: AesKey | None, wait_s: float) -> Probed:
        """The next telegram of ``device`` (a meter that is not configured: its identity in
        a ``[[meters]]`` table) decoded with ``key``; :class:`NotHeardYet` when none comes
        within ``wait_s``."""
        probe = _Probe(device, key, asyncio.get_running_loop().create_future())
        return await wait_for_probe(self._probes, probe, wait_s, lambda: NotHeardYet(
            f"device {device.id} was not heard on bus {self.name} within {wait_s:g} s"))

    def use_thresholds(self, thresholds: Thresholds) -> None:
        """A wireless meter is failing after its own ``not_heard_after`` failures (the radio
        loses telegrams), unreachable after the bus's ``unreachable_after`` (at least that)."""
        for meter in self._meters.values():
            failing = meter.config.not_heard_after
            meter.health.thresholds = Thresholds(failing, max(failing, thresholds.unreachable_after))

    def status(self) -> dict[str, Any]:
        where = {"port": self.bus.port} if self.bus.port else {"tcp": self.bus.tcp}
        return {
            "connected": self._open,
            "dongle": {"type": self.bus.dongle, "mode": self.bus.mode, **where, "open": self._open,
                       **self.dongle_info},
            "counters": dict(self.counters),
            "meters": {name: meter.as_dict() for name, meter in self._meters.items()},
            "unknown_meters": self.unknown.as_list(),
        }

    async def run(self) -> None:
        """Open, initialise and listen to the dongle until stopped; a silent dongle is
        reopened here, a port that cannot be opened or a dongle that does not answer its
        initialisation raises :class:`~gateway.errors.TransportError` (the supervisor
        restarts the bus)."""
        self._load_keys()
        loop = asyncio.get_running_loop()
        if self._started_at is None:
            self._started_at = loop.time()
        while not self._stopping:
            async with open_transport(self.line, port=self.bus.port, tcp=self.bus.tcp) as transport:
                session = DongleSession(transport, self.bus.dongle, self.bus.link_modes, self.counters)
                await session.initialise()
                self.dongle_info = dict(session.info)
                self._open = True
                try:
                    silent_s = await self._listen(session)
                finally:
                    self._open = False
            if silent_s is not None:
                self.counters["dongle_resets"] += 1
                log.warning("bus %s: dongle silent for %.0f s; reopening it", self.name, silent_s)
                await self._sink.commit([self._event(
                    "dongle.reset", f"dongle on {transport.description} was silent for "
                    f"{silent_s:.0f} s; it is reopened and initialised again", None,
                    {"silent_s": round(silent_s), "resets": self.counters["dongle_resets"]})])

    # -- listening ----------------------------------------------------------------------------

    def _load_keys(self) -> None:
        """Read every meter's key once; an unusable key file stops this bus with ConfigError."""
        if self._keys_loaded:
            return
        for meter in self._meters.values():
            meter.key = self._read_key(meter, meter.config.key_file)
            until = meter.config.key_overlap_until
            if until is not None and (until.tzinfo is None or until > self._clock()):
                meter.previous_key = self._read_key(meter, meter.config.previous_key_file)
                meter.previous_until = until
        self._keys_loaded = True

    @staticmethod
    def _read_key(meter: WirelessMeter, reference: str | None) -> AesKey | None:
        if reference is None:
            return None
        try:
            return AesKey.from_hex(read_secret(reference).decode("ascii", "replace"))
        except ValueError as exc:
            path = resolve_secret_path(reference)
            raise ConfigError([f"{path}: key of meter {meter.config.name}: {exc}"]) from None

    async def _listen(self, session: DongleSession) -> float | None:
        """Handle telegrams until stopped (None) or until the dongle has been silent for
        ``silence_timeout_s`` (returns how long)."""
        loop = asyncio.get_running_loop()
        silence_s = self.bus.silence_timeout_s
        last_data = next_watch = loop.time()
        while not self._stopping:
            received_before = self.counters["bytes"]
            wait_s = max(0.0, min(self.tick_s, last_data + silence_s - loop.time()))
            telegrams = await session.receive(wait_s)
            if telegrams or self.counters["bytes"] != received_before:
                last_data = loop.time()
            for telegram in telegrams:
                await self._handle(telegram)
            if loop.time() >= next_watch:
                next_watch = loop.time() + self.tick_s
                await self._watch_meters()
            silent_s = loop.time() - last_data
            if silent_s >= silence_s:
                return silent_s
        return None

    async def _handle(self, received: ReceivedTelegram) -> None:
        now = asyncio.get_running_loop().time()
        at = self._clock()
        self.counters["frames"] += 1
        try:
            frame = link_frame(received)
        except MBusFrameError as exc:
            count_frame_error(self.counters, exc)
            log.debug("bus %s: telegram refused at the link layer: %s", self.name, exc)
            return
        address = meter_address(frame)
        meter = self._match(address.identification, address.manufacturer, address.version, address.device_type)
        if meter is not None:
            self._heard_again(meter, now, at)
        events: list[Record] = []
        key = duplicate_key(frame)
        if self._recent.seen(key, now, self.bus.duplicate_window_s):
            self.counters["duplicates"] += 1
            await self._commit([], events, key, now)
            return
        heard = interpret(received, frame, self._decoder, meter.key if meter is not None else None)
        counter = None
        if meter is None:
            readings = self._unknown(heard, at)
            self._answer_probes(received, frame, heard, at)
        else:
            heard, flags = self._with_previous_key(meter, received, frame, heard, at)
            heard, counter = await self._check_counter(heard)
            readings = self._known(meter, heard, now, at, events, flags)
        await self._commit(readings, events, key, now, counter)

    async def _check_counter(self, heard: Heard) -> tuple[Heard, tuple[str, int] | None]:
        """``heard`` refused as a replay when its message counter is not above the last one
        accepted from its meter; else with ``(device, counter)`` to commit with it."""
        counter = message_counter(heard)
        if counter is None:
            return heard, None
        device = heard.address.device
        accepted = _ACCEPTED.setdefault(asyncio.get_running_loop(), {})
        if device not in accepted and self._state is not None:
            stored = await self._state.get_state(MCR_PREFIX + device)
            try:
                if stored is not None:
                    accepted[device] = max(int(stored), accepted.get(device, 0))
            except ValueError:
                log.error("bus %s: state %s holds %r, not a message counter; ignoring it", self.name,
                          MCR_PREFIX + device, stored[:40])
        last = accepted.get(device)
        if last is not None and counter <= last:
            return replayed(heard, last), None
        return heard, (device, counter)

    def _with_previous_key(self, meter: WirelessMeter, received: ReceivedTelegram, frame: Any, heard: Heard,
                           at: datetime) -> tuple[Heard, tuple[str, ...]]:
        """During a key change's overlap, a telegram the new key refuses is tried with the
        previous key; its readings are flagged ``previous_key``."""
        if heard.refused is None or meter.previous_key is None or meter.previous_until is None:
            return heard, ()
        if meter.previous_until.tzinfo is not None and at >= meter.previous_until:
            meter.previous_key = None  # the overlap is over: only the new key from now on
            return heard, ()
        again = interpret(received, frame, self._decoder, meter.previous_key)
        return (again, ("previous_key",)) if again.decoded is not None else (heard, ())

    def _answer_probes(self, received: ReceivedTelegram, frame: Any, heard: Heard, at: datetime) -> None:
        address = heard.address
        for probe in self._probes:
            if probe.future.done() or not probe.device.matches(address.identification, address.manufacturer,
                                                                address.version, address.device_type):
                continue
            tried = interpret(received, frame, self._decoder, probe.key)
            probe.future.set_result(Probed(tried, readings_of(tried, self._tz, at), at))

    def _match(self, identification: str, manufacturer: str, version: int, device_type: int) -> WirelessMeter | None:
        for meter in self._by_id.get(identification, ()):
            if meter.config.matches(identification, manufacturer, version, device_type):
                return meter
        return None

    def _unknown(self, heard: Heard, at: datetime) -> list[Reading]:
        self.counters["unknown"] += 1
        sighting = self.unknown.note(heard, at)
        if sighting.telegrams == 1:
            log.info("bus %s: heard meter %s, which is not configured (%s)", self.name, heard.address.device,
                     "encrypted" if heard.encrypted else "plaintext" if heard.encrypted is False else "unreadable")
            if self.on_discovery is not None:
                self.on_discovery(self.name, discovery_of(sighting))
        if heard.decoded is None:
            return []
        self.counters["decoded"] += 1
        return readings_of(heard, self._tz, at) if self.bus.store_unknown else []

    def _known(self, meter: WirelessMeter, heard: Heard, now: float, at: datetime, events: list[Record],
               flags: tuple[str, ...] = ()) -> list[Reading]:
        meter.telegrams += 1
        health = meter.health
        health.device = heard.address.device
        if heard.refused is not None:
            events.extend(self._refused(meter, heard, now, at))
            return []
        if heard.error is not None:
            self.counters["undecodable"] += 1
            events.extend(self._health_event(meter, health.failed("frame", heard.problem, at)))
            log.info("bus %s: meter %s sent a telegram that cannot be decoded: %s", self.name, meter.config.name,
                     heard.problem)
            return []
        self.counters["decoded"] += 1
        events.extend(self._health_event(meter, health.succeeded(at)))
        readings = readings_of(heard, self._tz, at, flags)
        if readings:
            meter.readings = readings
        return readings

    def _refused(self, meter: WirelessMeter, heard: Heard, now: float, at: datetime) -> list[Record]:
        self.counters["security_refusals"] += 1
        meter.refusals += 1
        meter.unreported_refusals += 1
        meter.last_refusal = heard
        events = self._health_event(meter, meter.health.failed("security", heard.problem, at))
        if meter.refusal_event_at is None or now - meter.refusal_event_at >= self.security_event_interval_s:
            return [self._refusal_event(meter, now), *events]
        log.debug("bus %s: telegram of meter %s refused: %s", self.name, meter.config.name, heard.problem)
        return events

    def _refusal_event(self, meter: WirelessMeter, now: float) -> Event:
        heard = meter.last_refusal
        assert heard is not None and heard.refused is not None
        count, meter.unreported_refusals, meter.refusal_event_at = meter.unreported_refusals, 0, now
        reason = REFUSAL_REASONS.get(type(heard.refused).__name__, "refused")
        plural = "telegram" if count == 1 else "telegrams"
        log.warning("bus %s: meter %s: %d %s refused: %s", self.name, meter.config.name, count, plural, heard.problem)
        return self._event("security.refused",
                           f"meter {meter.config.name}: {count} {plural} refused: {heard.problem}", meter.health.device,
                           {"meter": meter.config.name, "reason": reason, "count": count, "total": meter.refusals})

    @staticmethod
    def _heard_again(meter: WirelessMeter, now: float, at: datetime) -> None:
        """Note that ``meter`` was heard, even a duplicate or a refused telegram: its silence
        ends. No event here: recovery (``comm.recovered``) waits for a telegram that decodes."""
        meter.missed_intervals = 0
        meter.last_heard, meter.last_heard_at = at, now

    async def _watch_meters(self) -> None:
        """A failure for each expected interval a meter was not heard; the hourly summary
        of refusals."""
        now = asyncio.get_running_loop().time()
        at = self._clock()
        events: list[Record] = []
        for meter in self._meters.values():
            since = meter.last_heard_at if meter.last_heard_at is not None else self._started_at or now
            silent_s = now - since
            last = meter.last_heard.isoformat() if meter.last_heard else "never"
            while meter.missed_intervals < int(silent_s // meter.config.expected_interval_s):
                meter.missed_intervals += 1
                transition = meter.health.failed("not_heard", f"not heard for {silent_s:.0f} s", at)
                if transition is not None:
                    log.warning("bus %s: meter %s is %s: not heard for %.0f s (last heard: %s)", self.name,
                                meter.config.name, transition.new.value, silent_s, last)
                events.extend(self._health_event(meter, transition, f"not heard for {silent_s:.0f} s "
                                                 f"(last heard: {last})",
                                                 {"last_heard": last, "silent_s": round(silent_s)}))
            if (meter.unreported_refusals and meter.refusal_event_at is not None
                    and now - meter.refusal_event_at >= self.security_event_interval_s):
                events.append(self._refusal_event(meter, now))
        if events:
            await self._sink.commit(events)

    def _health_event(self, meter: WirelessMeter, transition: Transition | None, why: str | None = None,
                      details: dict[str, str | int] | None = None) -> list[Record]:
        """The event of a change of the meter's state, if it changed."""
        if transition is None:
            return []
        name = meter.config.name
        message = (f"meter {name} is heard again" if transition.new is MeterState.OK
                   else f"meter {name} is {transition.new.value}: {why or meter.health.last_error}")
        return [transition_event(transition, source=self.name, device=meter.health.device, message=message,
                                 details=details)]

    async def _commit(self, readings: list[Reading], events: list[Record], key: Any, now: float,
                      counter: tuple[str, int] | None = None) -> None:
        """Commit the telegram's readings and events, and its message counter with them;
        readings another receiver of this gateway already stored for the same telegram are
        dropped as duplicates."""
        loop = asyncio.get_running_loop()
        stored = _STORED.setdefault(loop, DuplicateFilter())
        if readings and stored.seen(key, now, self.bus.duplicate_window_s):
            self.counters["duplicates"] += 1
            readings = []
        state = None if counter is None else {MCR_PREFIX + counter[0]: str(counter[1])}
        if not readings and not events and not state:
            return
        try:
            await self._sink.commit([*readings, *events], state=state)
        except BaseException:
            if readings:
                stored.forget(key)  # not stored after all: another dongle's copy may be
            raise
        if counter is not None:
            accepted = _ACCEPTED.setdefault(loop, {})
            accepted[counter[0]] = max(counter[1], accepted.get(counter[0], counter[1]))
        self.counters["readings"] += len(readings)

    def _event(self, code: str, message: str, device: str | None, details: dict[str, str | int]) -> Event:
        return make_event(code, message, occurred_at=self._clock(), device=device, source=self.name, details=details)
