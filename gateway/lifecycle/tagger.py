"""What the lifecycle adds to records on their way into the store (the sink calls
:meth:`Tagger.tag` before it commits a batch):

* a reading of a registered device gets its metering ``point``, ``metrological`` by the
  device's declaration, and the flags ``calibration`` (a calibration is under way) and
  ``commissioning`` (the read that commissioned it);
* a change of any M-Bus device's status or error flags becomes one ``meter.alarm`` event in
  the same batch (:mod:`.disturbances`); the flags last seen are kept in the store's
  durable state, so a restart does not raise them again;
* a registered device whose clock the gateway cannot set (M-Bus, wireless M-Bus) is checked
  against the gateway's clock on every reading that carries its time: drifting beyond
  its tolerance raises ``clock.drift`` once, until it is back within (DLMS devices are
  checked, and set, by their collector);
* observations that change a device's life are handed to the lifecycle (``notify``): a
  permanent error (faulty) and its end, the first reading under a new key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.collectors.base import StateStore
from gateway.events import make_event
from gateway.lifecycle.checks import drift_s, within
from gateway.lifecycle.declaration import Declaration
from gateway.lifecycle.disturbances import FAULT_FLAGS, reported_flags, severity_of
from gateway.model import Event, Reading, Record

STATE_PREFIX = "lifecycle.flags."


@dataclass
class DeviceTags:
    """What the tagger knows of one registered device (from its registry entry)."""

    name: str
    entry: str
    state: str
    point: str | None
    declaration: Declaration
    tolerance_s: float
    check_clock: bool
    calibrating: bool = False
    awaiting_key: int | None = None  # a key generation whose first reading is awaited
    _metrological: dict[tuple[str, str | None], bool] = field(default_factory=dict, repr=False)

    @property
    def commissioning(self) -> bool:
        return self.state == "installed"

    def metrological(self, quantity: str, obis: str | None) -> bool:
        """The declaration's answer for one quantity (remembered: a device has few)."""
        key = (quantity, obis)
        known = self._metrological.get(key)
        if known is None:
            known = self._metrological[key] = self.declaration.is_metrological(quantity, obis)
        return known


#: ``notify(what, tags, details)``: ``fault`` / ``fault_cleared`` / ``key_switched``.
Notify = Callable[[str, DeviceTags, dict[str, Any]], None]


class Tagger:
    """See the module docstring. ``devices`` maps a device identity to its tags."""

    def __init__(self, state: StateStore | None = None, notify: Notify | None = None) -> None:
        self.state = state
        self.notify = notify
        self.devices: dict[str, DeviceTags] = {}
        self.flags: dict[str, frozenset[str]] = {}
        self.drifting: set[str] = set()

    async def load(self) -> None:
        """The flags last seen per device, from the store's durable state."""
        items = await self.state.state_items(STATE_PREFIX) if hasattr(self.state, "state_items") else {}
        self.flags = {key.removeprefix(STATE_PREFIX): frozenset(filter(None, value.split(",")))
                      for key, value in items.items()}

    async def tag(self, records: Sequence[Record]) -> list[Record]:
        """``records`` with their tags, and the events their flags and clocks raise."""
        out: list[Record] = []
        by_device: dict[str, list[Reading]] = {}
        for record in records:
            if isinstance(record, Reading):
                by_device.setdefault(record.device, []).append(record)
                tags = self.devices.get(record.device)
                out.append(record if tags is None else self._tagged(record, tags))
            else:
                out.append(record)
        for device, readings in by_device.items():
            out += await self._flag_changes(device, readings)
            tags = self.devices.get(device)
            if tags is not None:
                out += self._clock(device, readings, tags)
                self._key_switch(readings, tags)
        return out

    def _tagged(self, r: Reading, tags: DeviceTags) -> Reading:
        flags = r.flags
        if tags.calibrating:
            flags += ("calibration",)
        if tags.commissioning:
            flags += ("commissioning",)
        # The constructor rather than dataclasses.replace: a third of the cost, on every reading.
        return Reading(r.device, r.quantity, r.value, r.unit, r.captured_at, r.meter_time, r.obis, r.status, r.raw,
                       tags.point, tags.metrological(r.quantity, r.obis), r.protection, flags)

    async def _flag_changes(self, device: str, readings: list[Reading]) -> list[Event]:
        reported = reported_flags(readings)
        if reported is None:
            return []
        status, flags = reported
        before = self.flags.get(device, frozenset())
        if flags == before:
            return []
        self.flags[device] = frozenset(flags)
        if self.state is not None:
            await self.state.set_state(STATE_PREFIX + device, ",".join(sorted(flags)))
        raised, cleared = sorted(flags - before), sorted(before - flags)
        tags = self.devices.get(device)
        name = tags.name if tags else device
        if tags is not None and self.notify is not None:
            if flags & FAULT_FLAGS and not before & FAULT_FLAGS:
                self.notify("fault", tags, {"flags": ",".join(sorted(flags)), "status": status or ""})
            elif before & FAULT_FLAGS and not flags & FAULT_FLAGS:
                self.notify("fault_cleared", tags, {"flags": ",".join(sorted(flags)), "status": status or ""})
        what = "; ".join(part for part in (f"raised {', '.join(raised)}" if raised else "",
                                           f"cleared {', '.join(cleared)}" if cleared else "") if part)
        return [make_event("meter.alarm", f"device {name}: {what}", occurred_at=readings[0].captured_at,
                           device=device, source="lifecycle", severity=severity_of(flags),
                           details={"meter": name, "device": device, "status": status or "",
                                    "flags": ",".join(sorted(flags)), "set": ",".join(raised),
                                    "cleared": ",".join(cleared)})]

    def _clock(self, device: str, readings: list[Reading], tags: DeviceTags) -> list[Event]:
        stamped = next((r for r in readings if r.meter_time is not None), None)
        if not tags.check_clock or stamped is None:
            return []
        if within(stamped.meter_time, stamped.captured_at, tags.tolerance_s):
            self.drifting.discard(device)
            return []
        if device in self.drifting:
            return []
        self.drifting.add(device)
        deviation = drift_s(stamped.meter_time, stamped.captured_at)
        return [make_event("clock.drift", f"device {tags.name}: clock off by {deviation:+.0f} s (tolerance "
                           f"{tags.tolerance_s:g} s); it cannot be set over this protocol",
                           occurred_at=stamped.captured_at, device=device, source="lifecycle",
                           details={"meter": tags.name, "deviation_s": f"{deviation:+.1f}",
                                    "tolerance_s": f"{tags.tolerance_s:g}"})]

    def _key_switch(self, readings: list[Reading], tags: DeviceTags) -> None:
        if tags.awaiting_key is None or self.notify is None:
            return
        if any("previous_key" not in r.flags and "commissioning" not in r.flags for r in readings):
            generation, tags.awaiting_key = tags.awaiting_key, None
            self.notify("key_switched", tags, {"generation": generation})
