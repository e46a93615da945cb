"""The SAP registry: which meter is which logical device, with which objects, and its latest
values. Kept in the store's durable state, so a meter keeps its SAP, name and OBIS codes for
ever (across restarts, whatever else appears).

SAPs follow the Green Book's table of reserved wrapper ports (IEC 62056-47, 7.3.3.2): 0 is
no-station, 1 the management logical device, 2..15 are reserved, 16..126 are open for the
logical devices and 127 is all-station. Meters get the lowest free SAP from 16 upwards, in the
order they first appear in the store; beyond 126 (more than 111 meters) numbering goes on at
128 up to 0x3FFE, the range two-byte HDLC addressing opens for logical devices (the wrapper's
wPort has room for it; an HES limited to the Green Book's wrapper table sees the first 111).

State key ``dlms-server.ld.<device id>`` holds ``{"sap", "name", "quantities": [[quantity, OBIS,
unit, scaler, numeric], ...]}``; the quantities' order is the column order of the meter's
profile.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.codecs.dlms.axdr import Data
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.units import ScalerUnit
from gateway.model import Reading, StoredRecord
from gateway.store import SeriesInfo, Store
from gateway.uplinks.dlms_server import mapping

log = logging.getLogger(__name__)

MANAGEMENT_SAP = 0x0001
FIRST_METER_SAP = 0x0010
ALL_STATION = 0x007F
LAST_SAP = 0x3FFE
STATE_PREFIX = "dlms-server.ld."

#: OBIS codes every logical device uses for its own objects: never given to a quantity.
RESERVED_OBIS = frozenset({
    Obis(0, 0, 1, 0, 0),      # Clock
    Obis(0, 0, 42, 0, 0),     # logical device name
    Obis(0, 0, 99, 1, 0),     # the meter's profile
    *(Obis(0, 0, 40, 0, e) for e in range(3)),   # Association LN objects
    *(Obis(0, 0, 43, 0, e) for e in range(3)),   # Security setup objects
})

dlms_unit = functools.lru_cache(maxsize=512)(mapping.dlms_unit)


def sap_numbers() -> Iterator[int]:
    """The SAPs meters are given, in order (see the module docstring)."""
    yield from range(FIRST_METER_SAP, ALL_STATION)
    yield from range(ALL_STATION + 1, LAST_SAP + 1)


@dataclass
class Quantity:
    """One quantity of a meter: a Register (numbers) or a Data object (anything else)."""

    name: str
    obis: Obis
    unit: str | None
    scaler: int = 0
    numeric: bool = True
    latest: Any = None
    latest_unit: str | None = None
    latest_seq: int = 0
    captured_at: datetime | None = None

    @property
    def unit_code(self) -> int:
        return dlms_unit(self.unit)[0]

    @property
    def scaler_unit(self) -> Data:
        return ScalerUnit(self.scaler, self.unit_code).to_data()

    def encode(self, value: Any, unit: str | None) -> bytes:
        """The A-XDR bytes of one value of this quantity given in ``unit`` (see
        :mod:`~gateway.uplinks.dlms_server.mapping` for the rules)."""
        if not self.numeric:
            return mapping.value_data(value).to_bytes()
        return mapping.encode_integer(self._mantissa(value, unit))

    def data(self, value: Any, unit: str | None) -> Data:
        """:meth:`encode` as Data."""
        if not self.numeric:
            return mapping.value_data(value)
        return mapping.integer_data(self._mantissa(value, unit))

    def current(self) -> Data | None:
        """The latest value, None while there is none."""
        return None if self.latest_seq == 0 else self.data(self.latest, self.latest_unit)

    def _mantissa(self, value: Any, unit: str | None) -> int | None:
        code, power = dlms_unit(unit)
        return mapping.mantissa(value, power - self.scaler) if code == self.unit_code else None

    def as_state(self) -> list[Any]:
        return [self.name, self.obis.dotted, self.unit, self.scaler, self.numeric]


@dataclass
class Meter:
    """A collected meter as a logical device. ``version`` changes when its objects do."""

    device: str
    sap: int
    name: bytes
    quantities: dict[str, Quantity] = field(default_factory=dict)
    version: int = 0

    def as_state(self) -> str:
        return json.dumps({"sap": self.sap, "name": self.name.decode("ascii"),
                           "quantities": [q.as_state() for q in self.quantities.values()]}, separators=(",", ":"))

    @classmethod
    def from_state(cls, device: str, text: str) -> Meter:
        data = json.loads(text)
        meter = cls(device, int(data["sap"]), data["name"].encode("ascii"))
        for name, obis, unit, scaler, numeric in data["quantities"]:
            meter.quantities[name] = Quantity(name, Obis.parse(obis), unit, int(scaler), bool(numeric))
        return meter


class Registry:
    """Every meter the store has readings of, as a logical device (see the module docstring).

    :meth:`load` reads the persisted assignments and the latest values; :meth:`sync`
    catches up with what the store received since; :meth:`run` keeps syncing."""

    def __init__(self, store: Store, management_name: bytes) -> None:
        self.store = store
        self.management_name = management_name
        self._by_device: dict[str, Meter] = {}
        self._by_sap: dict[int, Meter] = {}
        self._known_seq = 0
        self._lock = asyncio.Lock()
        self.changed = 0  # counts structural changes (a new meter or quantity)

    # --- queries -------------------------------------------------------------------------

    def meter(self, sap: int) -> Meter | None:
        return self._by_sap.get(sap)

    def meter_of(self, device: str) -> Meter | None:
        return self._by_device.get(device)

    def meters(self) -> list[Meter]:
        return sorted(self._by_sap.values(), key=lambda m: m.sap)

    def __len__(self) -> int:
        return len(self._by_sap)

    # --- keeping up with the store -------------------------------------------------------

    async def load(self) -> None:
        for key, text in (await self.store.state_items(STATE_PREFIX)).items():
            device = key.removeprefix(STATE_PREFIX)
            try:
                self._add(Meter.from_state(device, text))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("DLMS registry: the state of %s is unreadable (%s); it gets a new SAP", device, exc)
        async with self._lock:
            target = self.store.last_seq
            latest = await self.store.last_readings()
            with_readings = {stored.record.device for stored in latest}
            for device in await self.store.device_names():  # new meters in the order they came
                if device in with_readings and device not in self._by_device:
                    await self._register(device)
            for stored in latest:
                await self._apply(stored)
            self._known_seq = max(self._known_seq, target)

    async def sync(self) -> None:
        """Apply every reading stored since the last sync."""
        async with self._lock:
            target = self.store.last_seq
            if target <= self._known_seq:
                return
            async for stored in self.store.query_readings(since_seq=self._known_seq):
                await self._apply(stored)
            self._known_seq = max(self._known_seq, target)

    async def run(self, pause_s: float = 0.2) -> None:
        """Sync whenever the store grows (at most every ``pause_s``)."""
        while True:
            await self.store.wait_for_records(self._known_seq)
            await asyncio.sleep(pause_s)
            await self.sync()

    async def _apply(self, stored: StoredRecord) -> None:
        reading = stored.record
        assert isinstance(reading, Reading)
        meter = self._by_device.get(reading.device)
        if meter is None or reading.quantity not in meter.quantities:
            meter = await self._register(reading.device)
        quantity = meter.quantities.get(reading.quantity)
        if quantity is None or stored.seq < quantity.latest_seq:
            return
        quantity.latest, quantity.latest_unit, quantity.latest_seq = reading.value, reading.unit, stored.seq
        quantity.captured_at = reading.captured_at
        await self._widen(meter, quantity, reading)

    async def _widen(self, meter: Meter, quantity: Quantity, reading: Reading) -> None:
        """Lower the scaler for a value with more decimals (every older value stays an
        integer at the finer scaler); make a Data object a Register once a number comes."""
        value_exponent = mapping.exponent(reading.value)
        if value_exponent is None:
            return
        code, power = dlms_unit(reading.unit)
        if not quantity.numeric:
            quantity.numeric, quantity.unit = True, reading.unit
            quantity.scaler = mapping.clamp_scaler(value_exponent + power)
            meter.version += 1
            self.changed += 1
        elif code == quantity.unit_code and value_exponent + power < quantity.scaler:
            quantity.scaler = mapping.clamp_scaler(value_exponent + power)
        else:
            return
        await self._persist(meter)

    async def _register(self, device: str) -> Meter:
        """Give a new meter its SAP and name, and every quantity of it (new or not yet
        registered) its object, from the store's series and their exponents."""
        series = await self.store.device_series(device)
        meter = self._by_device.get(device) or Meter(device, self._free_sap(), self._free_name(device))
        taken = {q.obis for q in meter.quantities.values()}
        names = list(dict.fromkeys(s.quantity for s in series))
        for name in names:
            if name in meter.quantities:
                continue
            quantity = _quantity(name, [s for s in series if s.quantity == name], taken)
            meter.quantities[name] = quantity
            taken.add(quantity.obis)
        meter.version += 1
        self.changed += 1
        self._add(meter)
        await self._persist(meter)
        log.info("DLMS registry: %s is logical device %d (%s), %d objects", device, meter.sap,
                 meter.name.decode("ascii"), len(meter.quantities))
        return meter

    async def _persist(self, meter: Meter) -> None:
        await self.store.set_state(STATE_PREFIX + meter.device, meter.as_state())

    def _add(self, meter: Meter) -> None:
        self._by_device[meter.device] = meter
        self._by_sap[meter.sap] = meter

    def _free_sap(self) -> int:
        for sap in sap_numbers():
            if sap not in self._by_sap:
                return sap
        raise OverflowError("every logical device SAP is taken")

    def _free_name(self, device: str) -> bytes:
        taken = {m.name for m in self._by_sap.values()} | {self.management_name}
        name = mapping.logical_device_name(device)
        if name not in taken:
            return name
        digest = mapping.digest_name(device)
        for suffix in range(10_000):
            candidate = (digest if suffix == 0 else f"{digest[:12]}{suffix:04d}").encode("ascii")
            if candidate not in taken:
                return candidate
        raise OverflowError(f"no logical device name is left for {device}")


def _quantity(name: str, series: list[SeriesInfo], taken: set[Obis]) -> Quantity:
    """A quantity's object from its series: the newest one's OBIS code and unit, the
    smallest exponent of every value in that unit."""
    newest = max(series, key=lambda s: s.id)
    code = dlms_unit(newest.unit)[0]
    exponents = [s.exponent + dlms_unit(s.unit)[1] for s in series
                 if s.exponent is not None and dlms_unit(s.unit)[0] == code]
    obis = mapping.reading_obis(newest.obis)
    if obis is None or obis in taken or obis in RESERVED_OBIS:
        obis = next(o for o in map(mapping.abstract_obis, range(128 * 255)) if o not in taken)
    return Quantity(name, obis, newest.unit, mapping.clamp_scaler(min(exponents)) if exponents else 0,
                    numeric=bool(exponents))

