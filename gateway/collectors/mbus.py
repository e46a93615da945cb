"""The wired M-Bus collector: one bus from the configuration, polled on its meters' schedules.

``MBusCollector(bus, meters, sink, tz)`` opens the bus's serial port or TCP serial server
(shared with any other bus configured on the same port), reads each meter completely
(primary or secondary address, every telegram) and turns each data record into a
:class:`~gateway.model.Reading`:

* ``device``: :func:`~gateway.model.mbus_device_id` of the header's manufacturer,
  identification, version and medium;
* ``quantity``: :func:`~gateway.collectors.mbus_readings.quantity_name` (the naming rule
  shared with wireless M-Bus, :mod:`gateway.collectors.mbus_readings`);
* ``value``: exact, as the codec decoded it (``Decimal``, text, bytes, a date; a date and
  time becomes aware in the gateway's time zone);
* ``meter_time``: the telegram's current date and time record (storage 0), aware;
* ``status``: the header's status byte as two hex digits, untouched (a meter that flags
  errors in it still gives its readings);
* ``raw``: the RSP_UD frame the value came from.

A meter that reports an application error (CI 0x70) fails the read: no readings, and the
polling loop records the failure and raises ``comm.failed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.codecs.mbus.application import CI_OFFSET, FixedDataResponse, FixedRecord
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.records import DataRecord
from gateway.collectors.base import PolledBus, Sink, StateStore
from gateway.collectors.mbus_master import MBusMaster, Readout, ScanResult, Telegram, parse_secondary
from gateway.collectors.mbus_readings import RecordSource, meter_time, readings_from_sources, unique_names
from gateway.collectors.mbus_readings import quantity_name  # noqa: F401 - the naming rule, as callers know it
from gateway.config import MBusBus, MBusMeter
from gateway.errors import TransportError
from gateway.model import Reading, Record, mbus_device_id, utc_now
from gateway.transports import LineSettings, open_transport

#: Identity of a fixed-data-structure meter (CI 0x73), whose reply names no manufacturer
#: or version: manufacturer code 0 ("@@@"), version 0, medium 0x0F ("unknown medium").
FIXED_STRUCTURE_IDENTITY = ("@@@", 0, 0x0F)


def device_of(telegram: Telegram) -> str:
    response = telegram.response
    if isinstance(response, FixedDataResponse):
        manufacturer, version, medium = FIXED_STRUCTURE_IDENTITY
        return mbus_device_id(manufacturer, response.identification, version, medium)
    head = response.header
    if head.identification is None or head.manufacturer is None or head.version is None or head.medium is None:
        raise MBusFrameError("the reply has no long header (CI 0x7A or 0x78), so it names no device",
                             offset=CI_OFFSET, field="CI")
    return mbus_device_id(head.manufacturer, head.identification, head.version, head.medium)


def meter_time_of(telegrams: Sequence[Telegram], tz: ZoneInfo) -> datetime | None:
    """The current date and time a meter stamped its telegrams with (see
    :func:`gateway.collectors.mbus_readings.meter_time`)."""
    return meter_time((record for telegram in telegrams for record in telegram.response.records), tz)


def named_records(readout: Readout) -> Iterator[tuple[Telegram, DataRecord | FixedRecord, str]]:
    """Every record of the readout with its quantity name, duplicates numbered
    (``;index=2`` ...) in readout order so that names are unique within the device."""
    return unique_names((telegram, record) for telegram in readout.telegrams for record in telegram.response.records)


def status_text(telegram: Telegram) -> str:
    """The header's status byte (EN 13757-3 table 4) as two hex digits."""
    response = telegram.response
    return f"{response.status if isinstance(response, FixedDataResponse) else response.header.status:02X}"


def readings_from_readout(readout: Readout, tz: ZoneInfo, captured_at: datetime) -> list[Reading]:
    """Every record of every telegram as a Reading (see the module docstring)."""
    if not readout.telegrams:
        return []
    sources = [RecordSource(tuple(t.response.records), status_text(t), t.raw) for t in readout.telegrams]
    return readings_from_sources(device_of(readout.telegrams[0]), sources, tz, captured_at)


def bus_line(bus: MBusBus) -> LineSettings:
    """The bus's line: its baud rate, 8E1 (EN 13757-2)."""
    return LineSettings(bus.baud, 8, "E", 1)


class MBusCollector(PolledBus[MBusMeter]):
    """One wired M-Bus, built from its configuration (see the module docstring).

    ``status()`` adds the bus's link counters (requests, frames, errors, retries,
    timeouts, collisions, garbage_bytes), kept across reconnects.
    """

    def __init__(self, bus: MBusBus, meters: Sequence[MBusMeter], sink: Sink, tz: ZoneInfo, *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(bus.name, meters, sink, tz, clock=clock)
        self.bus = bus
        self.line = bus_line(bus)
        self.link_counters: dict[str, int] = {}
        self._master: MBusMaster | None = None
        self._addresses = {meter.name: meter.address if meter.address is not None else parse_secondary(meter.secondary or "")
                           for meter in meters}

    @classmethod
    def from_config(cls, bus: MBusBus, meters: Sequence[MBusMeter], sink: Sink, tz: ZoneInfo, *,
                    state: StateStore | None = None) -> MBusCollector:
        """What ``gateway.app`` calls for every ``protocol = "mbus"`` bus (M-Bus keeps no
        durable state: ``state`` is not used)."""
        return cls(bus, meters, sink, tz)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[MBusMaster]:
        async with open_transport(self.line, port=self.bus.port, tcp=self.bus.tcp) as transport:
            master = MBusMaster(transport, self.line, extra_timeout_ms=self.bus.extra_timeout_ms,
                                retries=self.bus.retries)
            if self.link_counters:
                master.counters = self.link_counters  # one set of counters for the bus's life
            self.link_counters = master.counters
            self._master = master
            try:
                yield master
            finally:
                self._master = None

    async def read_meter(self, meter: MBusMeter) -> list[Record]:
        if self._master is None:
            raise TransportError(f"bus {self.name} is not connected")
        readout = await self._master.read(self._addresses[meter.name])
        return list(readings_from_readout(readout, self._tz, self._clock()))

    async def probe(self, meter: MBusMeter) -> list[Reading]:
        """The commissioning read of ``meter`` (a ``[[meters]]`` table not configured on
        this bus yet): its readings; a failed read raises as a scheduled read does."""
        address = meter.address if meter.address is not None else parse_secondary(meter.secondary or "")

        async def read() -> list[Reading]:
            if self._master is None:
                raise TransportError(f"bus {self.name} is not connected")
            return readings_from_readout(await self._master.read(address), self._tz, self._clock())

        return await self.run_exclusive(read)

    async def scan(self, secondary: bool = True) -> ScanResult:
        """The meters on the bus (secondary scan with wildcard narrowing, or primary)."""
        async def scan() -> ScanResult:
            if self._master is None:
                raise TransportError(f"bus {self.name} is not connected")
            return await (self._master.scan_secondary() if secondary else self._master.scan_primary())

        return await self.run_exclusive(scan)

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["counters"].update(self.link_counters)  # one counters object per bus, as every bus has
        out["link"] = dict(self.link_counters)
        return out
