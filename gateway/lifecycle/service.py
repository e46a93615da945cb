"""The device lifecycle as the running gateway carries it out: every operation of
``gateway devices`` and of the HES's ``devices.*`` commands, the discoveries of the
collectors, and what the tagger observes.

Each step of a device's life is one transition of its registry entry
(:data:`gateway.registry.TRANSITIONS`), written to the registry (under its lock), then
appended to the audit chain with its ``device.*`` event (one transaction in the store:
stored, sequenced, signed and sent like every record). Who caused it is the audit entry's
actor: the CLI user, ``hes via UPLINK``, or ``gateway`` for what the gateway did itself
(a discovery, a fault, the switch to a new key).

Operations that put a device into or out of service change the configuration the
gateway runs (the registry's active entries are merged into it): they go through
:meth:`Host.apply`, transactional like ``gateway config apply``; when the new configuration
does not start, the registry change is undone and the operation fails with the reason.
One operation runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from gateway import audit
from gateway.config import DlmsMeter, GatewayConfig, Meter, derived_system_title, read_key, read_secret
from gateway.collectors.base import Discovery
from gateway.errors import ConfigError, GatewayError
from gateway.lifecycle.checks import Check, Observation, commissioning_checks, first_failure
from gateway.lifecycle.declaration import Declaration, declaration_of
from gateway.lifecycle.tagger import DeviceTags, Tagger
from gateway.model import Reading, Record, mbus_device_id, utc_now, value_text
from gateway.registry import (
    COMMISSIONED,
    DECOMMISSIONED,
    DISCOVERED,
    EXCHANGED,
    FAULTY,
    FINAL_STATES,
    IN_SERVICE,
    INSTALLED,
    KEY_FILES,
    SUSPENDED,
    MeterRegistry,
    TransitionRefused,
    device_name,
    parse_key,
)

log = logging.getLogger(__name__)

GATEWAY = "gateway"
#: What a discovery records of a device's identity in its audit entry.
IDENTITY_FIELDS = ("manufacturer", "id", "version", "device_type", "system_title")
#: How often expired key overlaps are looked for.
HOUSEKEEPING_S = 60.0
#: A DLMS or wired M-Bus commissioning read waits at most this long for the bus.
POLLED_PROBE_S = 180.0
#: The DLMS objects of the metrological identification (class 1 Data, attribute 2).
IDENTIFICATION_OBJECTS = {"firmware_version": "1.0.0.2.0.255", "firmware_checksum": "1.0.0.2.8.255"}

_METER = TypeAdapter(Meter)


class LifecycleError(GatewayError):
    """A lifecycle operation that could not be carried out; the message says why."""


class Host(Protocol):
    """What the lifecycle needs of the running gateway (:class:`gateway.app.Gateway`)."""

    config: GatewayConfig
    collectors: list[Any]
    store: Any

    async def commit(self, records: Sequence[Record]) -> list[int]: ...

    async def apply_registry(self, source: str, actor: str) -> dict[str, Any]: ...

    async def read_now(self, meter: str) -> list[Reading]: ...


class DeviceLifecycle:
    """See the module docstring."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.tagger = Tagger(notify=self._observed)
        self._lock = asyncio.Lock()
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()

    @property
    def state_dir(self) -> Path:
        return self.host.config.state_dir

    # -- running -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the flags last seen and the registered devices' tags."""
        self.tagger.state = self.host.store
        await self.tagger.load()
        await self.refresh()

    async def run(self) -> None:
        """Carry out the queued work (discoveries, faults, key switches) one at a time, and
        end the key overlaps that expired."""
        while True:
            try:
                async with asyncio.timeout(HOUSEKEEPING_S):
                    job = await self._jobs.get()
            except TimeoutError:
                job = self._end_expired_overlaps
            try:
                await job()
            except GatewayError as exc:
                log.error("device lifecycle: %s", exc)
            except Exception:  # a defect in one job must not stop the others, nor the gateway
                log.exception("device lifecycle: a job failed")

    async def refresh(self) -> MeterRegistry:
        """The tagger's view of the registry, after a change (or at start)."""
        registry = await asyncio.to_thread(MeterRegistry, self.state_dir)
        devices: dict[str, DeviceTags] = {}
        default_tolerance = self.host.config.devices.clock_tolerance_s
        for entry in registry.entries:
            if entry["state"] in FINAL_STATES | {DISCOVERED} or not entry.get("device"):
                continue
            declaration = declaration_of(entry.get("declaration"), f"registry {entry['name']}.declaration")
            keys = entry.get("keys") or {}
            devices[entry["device"]] = DeviceTags(
                name=entry["name"], entry=entry["id"], state=entry["state"], point=entry.get("point"),
                declaration=declaration, tolerance_s=declaration.clock_tolerance_s or default_tolerance,
                check_clock=entry["meter"].get("protocol") != "dlms", calibrating=bool(entry.get("calibration")),
                awaiting_key=keys.get("generation") if keys.get("generation") and not keys.get("switched_at") else None)
        self.tagger.devices = devices
        return registry

    # -- queries -------------------------------------------------------------------------------

    async def list(self) -> list[dict[str, Any]]:
        registry = await asyncio.to_thread(MeterRegistry, self.state_dir)
        return [summary(entry) for entry in registry.entries]

    async def show(self, name: str, *, history: bool = False) -> dict[str, Any]:
        registry = await asyncio.to_thread(MeterRegistry, self.state_dir)
        return describe(registry, name, await self.host.store.audit_log() if history else None)

    # -- discovery -----------------------------------------------------------------------------

    def discovered(self, bus: str, found: Discovery) -> None:
        """A collector heard (or found) a device that is not configured (called from the
        collector: the registration runs later, in :meth:`run`)."""
        if self.host.config.devices.discover:
            self._jobs.put_nowait(lambda: self._register_discovered(bus, found))

    async def scan(self, bus: str, *, actor: str, secondary: bool = True) -> dict[str, Any]:
        """Scan a wired M-Bus for devices and register the new ones as discovered."""
        collector = self._collector(bus)
        if not hasattr(collector, "scan"):
            raise LifecycleError(f"bus {bus} cannot be scanned (only wired M-Bus buses are)")
        result = await collector.scan(secondary)
        found = [await self._register_discovered(bus, scan_discovery(meter), actor=actor) for meter in result.meters]
        return {"bus": bus, "found": [name for name in found if name], "collisions": result.collisions}

    async def _register_discovered(self, bus: str, found: Discovery, *, actor: str = GATEWAY) -> str | None:
        device = found.device

        def register(registry: MeterRegistry) -> dict[str, Any] | None:
            if any(entry.get("device") == device for entry in registry.entries):
                return None
            name = _free_name(registry, device_name(device))
            return registry.add(name, {**found.table, "bus": bus}, source=found.how, actor=actor, state=DISCOVERED,
                                device=device, identity=found.identity, first_seen=found.seen_at.isoformat())

        async with self._lock:
            entry = await self._change(register)
            if entry is None:
                return None
            log.info("device lifecycle: %s discovered on bus %s (%s)", device, bus, found.how)
            await self._audit("discovered", actor, entry, None, f"device {device} {found.how} on bus {bus}",
                              bus=bus, how=found.how, first_seen=entry["first_seen"],
                              **{key: str(found.identity[key]) for key in IDENTITY_FIELDS if key in found.identity})
            return entry["name"]

    # -- commissioning -------------------------------------------------------------------------

    async def commission(self, name: str, *, point: str, actor: str, meter: dict[str, Any] | None = None,
                         keys: dict[str, str] | None = None, declaration: dict[str, Any] | None = None,
                         device: str | None = None, wait_s: float | None = None) -> dict[str, Any]:
        """Bind a discovered device (or a new one, ``meter``: its ``[[meters]]`` table) to
        metering point ``point``, install its keys (``key``; DLMS ``ek``, ``ak``, ``kek``),
        verify it (:mod:`.checks`) and put it into service. A failed check leaves it
        installed and raises :class:`LifecycleError` with the reason."""
        async with self._lock:
            entry = await self._install(name, point=point, actor=actor, meter=meter, keys=keys,
                                        declaration=declaration, device=device)
            return await self._verify_and_activate(entry, actor=actor, wait_s=wait_s)

    async def _install(self, name: str, *, point: str, actor: str, meter: dict[str, Any] | None,
                       keys: dict[str, str] | None, declaration: dict[str, Any] | None, device: str | None,
                       replacing: str | None = None) -> dict[str, Any]:
        declared = declaration_of(declaration)
        _check_point(point)

        def install(registry: MeterRegistry) -> tuple[dict[str, Any], str | None]:
            entry = registry.find(name)
            if entry is None:
                if meter is None:
                    raise LifecycleError(f"no device named {name!r} is registered: give its [[meters]] table to "
                                         "commission a new one (`gateway devices list` shows the discovered ones)")
                entry = registry.add(name, meter, source="hes" if actor.startswith("hes") else "cli", actor=actor,
                                     state=INSTALLED, device=device)
                previous = None
            else:
                if meter is not None:
                    entry["meter"].update({k: v for k, v in meter.items() if k != "name"})
                previous = registry.transition(entry, INSTALLED, actor=actor)
            serving = registry.serving(point)
            if serving is not None and serving["id"] != entry["id"] and serving["name"] != replacing:
                raise LifecycleError(f"metering point {point} is served by {serving['name']}: exchange it "
                                     f"(`gateway devices exchange {serving['name']} {name} …`)")
            entry["point"] = point
            entry["declaration"] = declared.model_dump(mode="json", exclude_defaults=True)
            if device is not None:
                entry["device"] = device
            _prepare_table(entry, declared, self.host.config)
            _install_keys(registry, entry, keys or {}, actor)
            return entry, previous

        entry, previous = await self._change(install)
        _check_bus(self.host.config, entry["meter"])
        await self._audit("installed", actor, entry, previous,
                          f"device {entry['name']} installed at metering point {point}",
                          keys=",".join(sorted(keys or {})) or "none")
        return entry

    async def _verify_and_activate(self, entry: dict[str, Any], *, actor: str, wait_s: float | None,
                                   retiring: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read the installed device, check it, keep its first reading, put it into service
        (and ``retiring``, the device it replaces, out of it: exchanged)."""
        observation = await self._observe(entry, wait_s)
        declared = declaration_of(entry.get("declaration"))
        tolerance = declared.clock_tolerance_s or self.host.config.devices.clock_tolerance_s
        keyed = any(entry["meter"].get(field) for field in ("key_file", "ek_file"))
        checks = commissioning_checks(observation, expected_device=entry.get("device"), keyed=keyed,
                                      declaration=declared, tolerance_s=tolerance)
        failed = first_failure(checks)
        first_seq = await self._keep_first_reading(entry, observation, passed=failed is None)
        if failed is not None:
            return await self._failed(entry, actor, failed, checks)
        entry = await self._transition(entry, COMMISSIONED, actor, f"device {entry['name']} passed its "
                                       "commissioning checks", checks="; ".join(f"{c.name}: {c.detail}" for c in checks))
        if retiring is not None:
            await self._transition(retiring, EXCHANGED, actor, "", quiet=True,
                                   reason=f"replaced by {entry['name']}")
        try:
            await self.host.apply_registry(f"devices: {entry['name']} into service", actor)
        except GatewayError as exc:
            if retiring is not None:
                await self._restore_state(retiring, retiring["state"])
            await self._failed(entry, actor, Check("configuration", False, str(exc)), checks, quiet=True)
            raise LifecycleError(f"device {entry['name']} passed its checks but the configuration with it did not "
                                 f"start ({exc}); it stays installed") from None
        entry = await self._transition(entry, IN_SERVICE, actor, f"device {entry['name']} is in service at "
                                       f"metering point {entry['point']}")
        summary_text = reading_summary(observation.readings, declared)
        await self._change(lambda registry: _open_point(registry, entry, first_seq, summary_text))
        return {**summary(entry), "checks": [check.as_dict() for check in checks], "first_seq": first_seq,
                "first_reading": summary_text}

    async def _keep_first_reading(self, entry: dict[str, Any], observation: Observation, *,
                                  passed: bool) -> int | None:
        """Store what the commissioning read produced: its events always (a clock the
        gateway set), its readings (tagged ``commissioning``: the first of the device at its
        point) only when every check passed. The seq of the first reading."""
        records: list[Record] = list(observation.events)
        if passed:
            if observation.device and entry.get("device") != observation.device:
                await self._change(lambda registry: registry.get(entry["name"]).update(device=observation.device))
                entry["device"] = observation.device
            await self.refresh()
            records = [*observation.readings, *records]
        if not records:
            return None
        seqs = await self.host.commit(records)
        return next((seq for seq, record in zip(seqs, records) if isinstance(record, Reading)), None)

    async def _failed(self, entry: dict[str, Any], actor: str, failed: Check, checks: list[Check], *,
                      quiet: bool = False) -> dict[str, Any]:
        reason = f"{failed.name}: {failed.detail}"
        await self._transition(entry, INSTALLED, actor, f"device {entry['name']} failed its commissioning "
                               f"check {failed.name}: {failed.detail}", action="commissioning_failed",
                               reason=reason, check=failed.name,
                               checks="; ".join(f"{c.name}: {'ok' if c.ok else 'FAILED'}" for c in checks))
        if quiet:
            return {}
        raise LifecycleError(f"device {entry['name']} stays installed: commissioning check {reason}")

    async def _observe(self, entry: dict[str, Any], wait_s: float | None) -> Observation:
        """One read of the device with its installed keys, by its bus's collector."""
        table = {**entry["meter"], "name": entry["name"]}
        if table.get("protocol") == "dlms" and "system_title" not in table:
            table["system_title"] = derived_system_title(self.host.config.gateway.id).hex().upper()
        try:
            config = _METER.validate_python(table)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
            raise LifecycleError(f"device {entry['name']}: its meter table is not valid: {problems}") from None
        collector = self._collector(config.bus)
        wait = wait_s or self.host.config.devices.commission_wait_s
        try:
            if config.protocol == "wmbus":
                return await self._observe_wireless(collector, config, wait)
            if config.protocol == "dlms-push":
                pushed = await collector.probe(config, wait)
                return Observation(pushed.device, tuple(pushed.readings), failure=pushed.failure)
            async with asyncio.timeout(POLLED_PROBE_S):
                if config.protocol == "dlms":
                    return await self._observe_dlms(collector, config, entry)
                readings = await collector.probe(config)
        except TimeoutError:
            return Observation(None, failure=f"timeout: the bus was not free within {POLLED_PROBE_S:g} s")
        except GatewayError as exc:
            return Observation(None, failure=f"{_reason(exc)}: {exc}")
        return Observation(readings[0].device if readings else None, tuple(readings))

    async def _observe_wireless(self, collector: Any, config: Any, wait_s: float) -> Observation:
        from gateway.codecs.mbus.wmbus_security import AesKey

        key = None
        if config.key_file:
            key = AesKey.from_hex(read_secret(config.key_file).decode("ascii", "replace"))
        probed = await collector.probe(config, key, wait_s)
        heard = probed.heard
        if heard.refused is not None:
            return Observation(heard.address.device, failure=f"security: {heard.problem} (check the key)")
        if heard.error is not None:
            return Observation(heard.address.device, failure=f"frame: {heard.problem}")
        return Observation(heard.address.device, tuple(probed.readings))

    async def _observe_dlms(self, collector: Any, config: DlmsMeter, entry: dict[str, Any]) -> Observation:
        from gateway.collectors.dlms_values import DATA_CLASS, ObjectSpec
        from gateway.codecs.dlms.obis import Obis

        declared = declaration_of(entry.get("declaration"))
        codes = [code for name, code in IDENTIFICATION_OBJECTS.items() if getattr(declared, name) is not None]
        if declared.calibration_date is not None and declared.calibration_date_obis:
            codes.append(declared.calibration_date_obis)
        probe = await collector.probe(config, tuple(ObjectSpec(DATA_CLASS, Obis.parse(code), 2) for code in codes))
        return Observation(probe.device, tuple(probe.readings), failure=probe.failure,
                           clock_before_s=probe.clock_before_s, clock_after_s=probe.clock_after_s,
                           events=tuple(probe.events))

    # -- exchange, decommissioning, suspension -------------------------------------------------

    async def exchange(self, old: str, new: str, *, actor: str, meter: dict[str, Any] | None = None,
                       keys: dict[str, str] | None = None, declaration: dict[str, Any] | None = None,
                       device: str | None = None, wait_s: float | None = None, point: str | None = None
                       ) -> dict[str, Any]:
        """Replace device ``old`` at its metering point by ``new`` (discovered, or a new
        one from ``meter``): the final reading of the old one is recorded, the new one is
        commissioned, and the point's history goes on with it. If the new device fails its
        checks, the old one stays as it was."""
        async with self._lock:
            registry = await asyncio.to_thread(MeterRegistry, self.state_dir)
            outgoing = _get(registry, old)
            if outgoing["state"] in FINAL_STATES | {DISCOVERED}:
                raise LifecycleError(f"device {old} is {outgoing['state']}: only a device that serves a point can "
                                     "be exchanged")
            where = point or outgoing.get("point") or outgoing["name"]
            if outgoing.get("point") is None:
                await self._change(lambda r: r.get(old).update(point=where))
                await self._change(lambda r: _open_point(r, r.get(old), None, ""))
            final_seq, final = await self._final_reading(outgoing)
            incoming = await self._install(new, point=where, actor=actor, meter=meter, keys=keys,
                                           declaration=declaration or outgoing.get("declaration"), device=device,
                                           replacing=outgoing["name"])
            was = outgoing["state"]
            result = await self._verify_and_activate(incoming, actor=actor, wait_s=wait_s, retiring=outgoing)
            outgoing = (await asyncio.to_thread(MeterRegistry, self.state_dir)).get(outgoing["name"])
            await self._change(lambda r: (_close_point(r, outgoing, final_seq, final), _drop_keys(r, outgoing)))
            await self._audit("exchanged", actor, outgoing, was, f"device {old} replaced by {new} at metering point "
                              f"{where}", replaced_by=new, final_seq=final_seq or 0, final_reading=final,
                              first_seq=result.get("first_seq") or 0, first_reading=result.get("first_reading", ""))
            await self.refresh()
            return {"point": where, "old": summary(outgoing), "new": result, "final_seq": final_seq,
                    "final_reading": final}

    async def decommission(self, name: str, *, actor: str, reason: str | None = None) -> dict[str, Any]:
        """Take a device out of service for good (a discovered one: forget it)."""
        async with self._lock:
            registry = await asyncio.to_thread(MeterRegistry, self.state_dir)
            entry = _get(registry, name)
            previous = entry["state"]
            final_seq, final = await self._final_reading(entry) if entry.get("point") else (None, "")
            entry = await self._transition(entry, DECOMMISSIONED, actor, f"device {name} decommissioned"
                                           + (f": {reason}" if reason else ""), reason=reason,
                                           final_seq=final_seq or 0, final_reading=final)
            if previous in (COMMISSIONED, IN_SERVICE, FAULTY):
                await self._apply_or_restore(entry, previous, actor)
            await self._change(lambda r: (_close_point(r, entry, final_seq, final), _drop_keys(r, entry)))
            await self.refresh()
            return summary(entry)

    async def suspend(self, name: str, *, actor: str, reason: str | None = None) -> dict[str, Any]:
        """Stop reading a device until it is resumed."""
        async with self._lock:
            entry = _get(await asyncio.to_thread(MeterRegistry, self.state_dir), name)
            previous = entry["state"]
            entry = await self._transition(entry, SUSPENDED, actor, f"device {name} suspended"
                                           + (f": {reason}" if reason else ""), reason=reason)
            await self._apply_or_restore(entry, previous, actor)
            return summary(entry)

    async def resume(self, name: str, *, actor: str) -> dict[str, Any]:
        async with self._lock:
            entry = _get(await asyncio.to_thread(MeterRegistry, self.state_dir), name)
            previous = entry["state"]
            if previous != SUSPENDED:
                raise LifecycleError(f"device {name} is {previous}, not suspended")
            entry = await self._transition(entry, IN_SERVICE, actor, f"device {name} resumed")
            await self._apply_or_restore(entry, previous, actor)
            return summary(entry)

    async def _apply_or_restore(self, entry: dict[str, Any], previous: str, actor: str) -> None:
        try:
            await self.host.apply_registry(f"devices: {entry['name']} {entry['state']}", actor)
        except GatewayError as exc:
            await self._restore_state(entry, previous)
            raise LifecycleError(f"device {entry['name']}: the configuration did not start ({exc}); it is "
                                 f"{previous} again") from None

    async def _restore_state(self, entry: dict[str, Any], state: str) -> None:
        """Undo a transition the running configuration did not take (no audit entry: the
        transition's own entry and the ``config.rolled_back`` event say what happened)."""
        def restore(registry: MeterRegistry) -> None:
            found = registry.get(entry["name"])
            found["state"] = state
            found["history"].append({"at": utc_now().isoformat(), "action": f"restored to {state}", "actor": GATEWAY})
        await self._change(restore)
        await self.refresh()

    # -- keys ----------------------------------------------------------------------------------

    async def rekey(self, name: str, *, actor: str, keys: dict[str, str], overlap_s: float | None = None
                    ) -> dict[str, Any]:
        """New keys for a device without losing readings. Wireless M-Bus (``key``): the key
        the meter was given on site is installed; DLMS (``ek``, ``ak``): transferred to the
        meter first (global_key_transfer, wrapped with its KEK). The previous key is still
        accepted for ``overlap_s`` ([devices] key_overlap_s); the first reading under the
        new key is recorded as ``device.key_switched``."""
        async with self._lock:
            entry = _get(await asyncio.to_thread(MeterRegistry, self.state_dir), name)
            if entry["state"] not in (IN_SERVICE, FAULTY, SUSPENDED, COMMISSIONED):
                raise LifecycleError(f"device {name} is {entry['state']}: only a device in service is re-keyed")
            protocol = entry["meter"].get("protocol")
            overlap = self.host.config.devices.key_overlap_s if overlap_s is None else overlap_s
            until = utc_now() + timedelta(seconds=overlap)
            if protocol == "dlms":
                method = await self._transfer_dlms_keys(entry, keys)
            elif protocol in ("wmbus", "dlms-push"):
                wanted = {"key"} if protocol == "wmbus" else {"ek", "ak"}
                if set(keys) != wanted:
                    raise LifecycleError(f"a {protocol} device takes new {' and '.join(sorted(wanted))} keys")
                method = "installed"
            else:
                raise LifecycleError(f"device {name} ({protocol}) has no keys to change")
            generation = int((entry.get("keys") or {}).get("generation", 0)) + 1

            def change(registry: MeterRegistry) -> dict[str, Any]:
                found = registry.get(name)
                table = found["meter"]
                if protocol in ("dlms", "dlms-push"):
                    registry.move_key(found, "ek_file", "previous_ek_file", "prev.ek")
                    registry.move_key(found, "ak_file", "previous_ak_file", "prev.ak")
                    registry.set_key(name, keys["ek"], actor=actor, action=None, field="ek_file", suffix="ek")
                    registry.set_key(name, keys["ak"], actor=actor, action=None, field="ak_file", suffix="ak")
                    table["key_generation"] = int(table.get("key_generation", 0)) + 1
                else:
                    registry.move_key(found, "key_file", "previous_key_file", "prev.key")
                    registry.set_key(name, keys["key"], actor=actor, action=None)
                table["key_overlap_until"] = until.isoformat()
                found["keys"] = {"generation": generation, "changed_at": utc_now().isoformat(), "method": method,
                                 "overlap_until": until.isoformat(), "switched_at": None}
                registry.note(found, "rekeyed", actor=actor, method=method, generation=generation)
                return found

            entry = await self._change(change)
            await self._audit("rekeyed", actor, entry, None, f"device {name} got new keys ({method}); the previous "
                              f"ones are accepted until {until.isoformat()}", method=method, generation=generation,
                              overlap_until=until.isoformat())
            await self.host.apply_registry(f"devices: {name} re-keyed", actor)
            await self.refresh()
            return {**summary(entry), "method": method, "generation": generation, "overlap_until": until.isoformat()}

    async def _transfer_dlms_keys(self, entry: dict[str, Any], keys: dict[str, str]) -> str:
        if set(keys) != {"ek", "ak"}:
            raise LifecycleError("a DLMS device takes new 'ek' and 'ak' keys")
        kek_file = entry["meter"].get("kek_file")
        if not kek_file:
            raise LifecycleError(f"device {entry['name']} has no master key (KEK) to wrap new keys with: install "
                                 "it first (kek)")
        collector = self._collector(entry["meter"]["bus"])
        new = {name: bytes.fromhex(parse_key(value, f"new {name} of {entry['name']}")) for name, value in keys.items()}
        result = await collector.transfer_keys(entry["name"], new, read_key(kek_file))
        log.info("device lifecycle: %s took its new keys (%s)", entry["name"], result.name)
        return "global_key_transfer"

    async def _end_expired_overlaps(self) -> None:
        """After a key overlap the previous key is forgotten (its file removed)."""
        now = utc_now()

        def expired(registry: MeterRegistry) -> list[str]:
            names = []
            for entry in registry.entries:
                until = entry["meter"].get("key_overlap_until")
                if until and datetime.fromisoformat(until) <= now:
                    for field in ("previous_key_file", "previous_ek_file", "previous_ak_file"):
                        registry.drop_key(entry, field)
                    entry["meter"].pop("key_overlap_until", None)
                    registry.note(entry, "previous key retired", actor=GATEWAY)
                    names.append(entry["name"])
            return names

        async with self._lock:
            names = await self._change(expired)
            if names:
                await self.host.apply_registry(f"devices: key overlap ended for {', '.join(names)}", GATEWAY)

    # -- calibration ---------------------------------------------------------------------------

    async def calibrate(self, name: str, action: str, *, actor: str, certificate: str | None = None,
                        note: str | None = None) -> dict[str, Any]:
        """``start``: readings are flagged ``calibration`` from now, the values before are
        kept; ``end``: the calibration record (who, when, certificate, before/after values)
        is closed."""
        async with self._lock:
            entry = _get(await asyncio.to_thread(MeterRegistry, self.state_dir), name)
            if action == "start":
                return await self._calibration_start(entry, actor, certificate, note)
            if action == "end":
                return await self._calibration_end(entry, actor, certificate, note)
            raise LifecycleError(f"calibration action {action!r}: say start or end")

    async def _calibration_start(self, entry: dict[str, Any], actor: str, certificate: str | None,
                                 note: str | None) -> dict[str, Any]:
        if entry.get("calibration"):
            raise LifecycleError(f"device {entry['name']} is being calibrated already (since "
                                 f"{entry['calibration']['started_at']})")
        if entry["state"] in FINAL_STATES | {DISCOVERED}:
            raise LifecycleError(f"device {entry['name']} is {entry['state']}: it cannot be calibrated")
        before_seq, before = await self._final_reading(entry)
        record = {"started_at": utc_now().isoformat(), "started_by": actor, "certificate": certificate,
                  "note": note, "before": before, "before_seq": before_seq}

        def start(registry: MeterRegistry) -> dict[str, Any]:
            found = registry.get(entry["name"])
            found["calibration"] = record
            registry.note(found, "calibration started", actor=actor)
            return found

        entry = await self._change(start)
        await self.refresh()
        await self._audit("calibration_started", actor, entry, None, f"calibration of {entry['name']} started",
                          before=before, before_seq=before_seq or 0, certificate=certificate or "")
        return {**summary(entry), "calibration": record}

    async def _calibration_end(self, entry: dict[str, Any], actor: str, certificate: str | None,
                               note: str | None) -> dict[str, Any]:
        record = entry.get("calibration")
        if not record:
            raise LifecycleError(f"device {entry['name']} is not being calibrated (`calibrate NAME start` first)")
        certificate = certificate or record.get("certificate")
        if not certificate:
            raise LifecycleError("a calibration ends with the reference of its certificate (certificate)")
        after_seq, after = await self._final_reading(entry)
        closed = {**record, "ended_at": utc_now().isoformat(), "ended_by": actor, "certificate": certificate,
                  "after": after, "after_seq": after_seq, "note": note or record.get("note")}

        def end(registry: MeterRegistry) -> dict[str, Any]:
            found = registry.get(entry["name"])
            found["calibration"] = None
            found.setdefault("calibrations", []).append(closed)
            registry.note(found, "calibrated", actor=actor, certificate=certificate)
            return found

        entry = await self._change(end)
        await self.refresh()
        await self._audit("calibrated", actor, entry, None, f"calibration of {entry['name']} ended "
                          f"(certificate {certificate})", certificate=certificate, before=record.get("before", ""),
                          after=after, started_at=record["started_at"], after_seq=after_seq or 0)
        return {**summary(entry), "calibration": closed}

    # -- what the tagger observed --------------------------------------------------------------

    def _observed(self, what: str, tags: DeviceTags, details: dict[str, Any]) -> None:
        self._jobs.put_nowait(lambda: self._act_on(what, tags, details))

    async def _act_on(self, what: str, tags: DeviceTags, details: dict[str, Any]) -> None:
        async with self._lock:
            registry = await asyncio.to_thread(MeterRegistry, self.state_dir)
            entry = registry.find(tags.name)
            if entry is None or entry["id"] != tags.entry:
                return
            if what == "key_switched":
                generation = details["generation"]

                def switched(registry: MeterRegistry) -> dict[str, Any]:
                    found = registry.get(tags.name)
                    (found.get("keys") or {})["switched_at"] = utc_now().isoformat()
                    registry.note(found, "key switched", actor=GATEWAY, generation=generation)
                    return found

                entry = await self._change(switched)
                await self.refresh()
                await self._audit("key_switched", GATEWAY, entry, None, f"device {tags.name} was read under its new "
                                  f"key (generation {generation})", generation=generation)
            elif what == "fault" and entry["state"] == IN_SERVICE:
                await self._transition(entry, FAULTY, GATEWAY, f"device {tags.name} reports {details['flags']}",
                                       reason=f"reports {details['flags']} (status {details['status']})")
            elif what == "fault_cleared" and entry["state"] == FAULTY:
                await self._transition(entry, IN_SERVICE, GATEWAY, f"device {tags.name} no longer reports a "
                                       "permanent error")

    # -- helpers ---------------------------------------------------------------------------------

    async def _change(self, change: Callable[[MeterRegistry], Any]) -> Any:
        """Apply ``change`` to the registry under its lock and save it; its result."""
        def run() -> Any:
            with MeterRegistry.locked(self.state_dir) as registry:
                result = change(registry)  # a refused change raises before anything is saved
                registry.save()
                return result
        try:
            return await asyncio.to_thread(run)
        except TransitionRefused as exc:
            raise LifecycleError(exc.problems[0]) from None

    async def _transition(self, entry: dict[str, Any], state: str, actor: str, message: str, *,
                          action: str | None = None, reason: str | None = None, quiet: bool = False,
                          **details: Any) -> dict[str, Any]:
        """Move the device to ``state`` in the registry and audit it (``quiet``: the audit
        entry comes later, from the caller)."""
        previous: list[str] = []

        def move(registry: MeterRegistry) -> dict[str, Any]:
            found = registry.get(entry["name"])
            previous.append(registry.transition(found, state, actor=actor, reason=reason,
                                                action=action.replace("_", " ") if action else None))
            return found

        found = await self._change(move)
        await self.refresh()
        if not quiet:
            await self._audit(action or state.replace(" ", "_"), actor, found, previous[0], message,
                              **({"reason": reason} if reason else {}), **details)
        return found

    async def _audit(self, action: str, actor: str, entry: dict[str, Any], previous: str | None, message: str,
                     **details: Any) -> None:
        facts = {"entry": entry["id"], "name": entry["name"], "device": entry.get("device") or "",
                 "point": entry.get("point") or "", "state": entry["state"], "previous": previous or "",
                 "message": message, **{key: value for key, value in details.items() if value is not None}}
        await audit.record(self.host.store, f"device_{action}", actor, facts)

    async def _final_reading(self, entry: dict[str, Any]) -> tuple[int | None, str]:
        """The newest stored metrological readings of a device (read again first where it
        can be asked): the seq of the newest and a summary."""
        if entry["state"] in (IN_SERVICE, FAULTY, COMMISSIONED):
            try:
                async with asyncio.timeout(POLLED_PROBE_S):
                    await self.host.read_now(entry["name"])
            except (GatewayError, KeyError, TimeoutError) as exc:
                log.info("device lifecycle: %s was not read for its final reading (%s); the last stored one "
                         "counts", entry["name"], exc)
        device = entry.get("device")
        if not device:
            return None, ""
        latest = [stored for stored in await self.host.store.last_readings() if stored.record.device == device]
        declared = declaration_of(entry.get("declaration"))
        kept = [s for s in latest if declared.is_metrological(s.record.quantity, s.record.obis)] or latest
        if not kept:
            return None, ""
        return max(s.seq for s in kept), reading_summary([s.record for s in kept], declared)

    def _collector(self, bus: str) -> Any:
        collector = next((c for c in self.host.collectors if c.name == bus), None)
        if collector is None:
            raise LifecycleError(f"no bus named {bus!r} runs (buses: {', '.join(c.name for c in self.host.collectors)})")
        return collector


# -- pure helpers ------------------------------------------------------------------------------------


def summary(entry: dict[str, Any]) -> dict[str, Any]:
    """One line of ``gateway devices list``."""
    table = entry["meter"]
    return {"name": entry["name"], "state": entry["state"], "device": entry.get("device"),
            "point": entry.get("point"), "protocol": table.get("protocol"), "bus": table.get("bus"),
            "since": entry.get("updated_at"), "reason": entry.get("reason"), "first_seen": entry.get("first_seen"),
            "calibrating": bool(entry.get("calibration")), "id": entry["id"]}


def describe(registry: MeterRegistry, name: str, log_entries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What ``gateway devices show`` prints: the entry, its point's history and, given the
    audit log, the device's audit trail with the chain checked."""
    entry = _get(registry, name)
    out = {**summary(entry), "entry": public_entry(entry)}
    if entry.get("point"):
        out["point_history"] = registry.points.get(entry["point"], {}).get("devices", [])
    if log_entries is not None:
        out["history"] = device_history(log_entries, entry["id"])
        broken = audit.verify_chain(log_entries)
        out["chain_intact"], out["chain_broken_at"] = broken is None, broken
    return out


def public_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The registry entry as shown: key files named as present, never read."""
    table = {key: "(installed)" if key in KEY_FILES else value for key, value in entry["meter"].items()}
    return {**entry, "meter": table}


def device_history(log_entries: list[dict[str, Any]], entry_id: str) -> list[dict[str, Any]]:
    """The audit entries of one device's life, oldest first."""
    return [{"audit_id": e["id"], "at": e["at"], "action": e["action"], "event": audit.ACTIONS.get(e["action"]),
             "actor": e["actor"], "state": e["details"].get("state"), "previous": e["details"].get("previous"),
             "message": e["details"].get("message"), "details": e["details"], "hash": e["hash"]}
            for e in log_entries if e["details"].get("entry") == entry_id]


def reading_summary(readings: Sequence[Reading], declaration: Declaration | None = None) -> str:
    """``volume=123.463 m^3; …``: the metrological values of a reading (all when none is)."""
    chosen = [r for r in readings if declaration is None or declaration.is_metrological(r.quantity, r.obis)]
    return "; ".join(f"{r.quantity}={value_text(r.value)}{f' {r.unit}' if r.unit else ''}"
                     for r in (chosen or list(readings)))


def _get(registry: MeterRegistry, name: str) -> dict[str, Any]:
    try:
        return registry.get(name)
    except ConfigError as exc:
        raise LifecycleError(exc.problems[0]) from None


def _free_name(registry: MeterRegistry, name: str) -> str:
    candidate, number = name, 1
    while registry.find(candidate) is not None:
        number += 1
        candidate = f"{name[:60]}-{number}"
    return candidate


def _check_point(point: str) -> None:
    if not point or len(point) > 64 or not point.isprintable():
        raise LifecycleError("a metering point is named by 1 to 64 printable characters")


def _check_bus(config: GatewayConfig, table: dict[str, Any]) -> None:
    bus = next((b for b in config.buses if b.name == table.get("bus")), None)
    if bus is None:
        raise LifecycleError(f"no bus named {table.get('bus')!r} is configured")
    if bus.protocol != table.get("protocol"):
        raise LifecycleError(f"bus {bus.name} is {bus.protocol}, the device speaks {table.get('protocol')}")


def _prepare_table(entry: dict[str, Any], declared: Declaration, config: GatewayConfig) -> None:
    """What the declaration means for the device's [[meters]] table: how often a wireless
    device transfers; a DLMS device's clock checked (and set) on every read."""
    table = entry["meter"]
    if table.get("protocol") in ("wmbus", "dlms-push") and declared.expected_interval_s:
        table["expected_interval_s"] = declared.expected_interval_s
    if table.get("protocol") == "dlms" and "clock_sync" not in table:
        table["clock_sync"] = {"threshold_s": declared.clock_tolerance_s or config.devices.clock_tolerance_s,
                               "set": declared.clock_set}


#: Keys a request may install, and where: table field, file suffix.
KEY_FIELDS = {"key": ("key_file", "key"), "ek": ("ek_file", "ek"), "ak": ("ak_file", "ak"), "kek": ("kek_file", "kek")}


def _install_keys(registry: MeterRegistry, entry: dict[str, Any], keys: dict[str, str], actor: str) -> None:
    unknown = set(keys) - set(KEY_FIELDS)
    if unknown:
        raise LifecycleError(f"unknown keys {', '.join(sorted(unknown))} (known: {', '.join(KEY_FIELDS)})")
    for name, value in keys.items():
        field, suffix = KEY_FIELDS[name]
        registry.set_key(entry["name"], value, actor=actor, action=f"{name} installed", field=field, suffix=suffix)


def _drop_keys(registry: MeterRegistry, entry: dict[str, Any]) -> None:
    """A device whose life ended needs no keys: their files go."""
    found = registry.get(entry["name"])
    for field in KEY_FILES:
        registry.drop_key(found, field)


def _open_point(registry: MeterRegistry, entry: dict[str, Any], first_seq: int | None, first: str) -> None:
    devices = registry.point(entry["point"])["devices"]
    if any(d["entry"] == entry["id"] and d.get("to") is None for d in devices):
        return
    devices.append({"entry": entry["id"], "name": entry["name"], "device": entry.get("device"),
                    "from": utc_now().isoformat(), "to": None, "first_seq": first_seq, "first_reading": first})


def _close_point(registry: MeterRegistry, entry: dict[str, Any], final_seq: int | None, final: str) -> None:
    if not entry.get("point"):
        return
    for record in registry.point(entry["point"])["devices"]:
        if record["entry"] == entry["id"] and record.get("to") is None:
            record.update(to=utc_now().isoformat(), final_seq=final_seq, final_reading=final)


def _reason(exc: BaseException) -> str:
    from gateway.collectors.health import failure_reason

    return failure_reason(exc)


def scan_discovery(found: Any) -> Discovery:
    """A meter a wired M-Bus scan found (:class:`~gateway.collectors.mbus_master.FoundMeter`)."""
    from gateway.collectors.mbus_master import secondary_text

    mask = found.secondary
    device = mbus_device_id(mask.manufacturer or "@@@", mask.identification, mask.version or 0, mask.medium or 0)
    identity = {"id": mask.identification, "manufacturer": mask.manufacturer, "version": mask.version,
                "device_type": f"0x{mask.medium or 0:02X}", "device": device}
    return Discovery(device, identity, {"protocol": "mbus", "secondary": secondary_text(mask)}, utc_now(), "scan")
