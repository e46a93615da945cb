"""The Modbus collector: one Modbus line from the configuration, its meters read by their
register maps.

``ModbusCollector.from_config(line, meters, sink, tz)`` opens the line's serial port or
TCP serial server (shared with every other bus configured on the same port) and reads
each meter on its schedule: the blocks of its register map
(:meth:`~gateway.modbus_maps.RegisterMap.blocks`) in one transaction on the port
(:class:`~gateway.collectors.modbus_master.ModbusMaster`), each entry a
:class:`~gateway.model.Reading`:

* ``device``: ``modbus-<map>-<serial number>`` when the map names a serial-number
  register (read on every poll, so a replaced meter is never taken for the old one),
  else ``modbus-<line>-<unit>``;
* ``quantity``: the entry's name; ``obis``: the entry's OBIS code where the map has one;
* ``value``: exact (:mod:`gateway.codecs.modbus.registers`: integers scaled in Decimal, a
  float as the shortest decimal of its width), or None with ``status`` ``not-available``,
  ``NaN``, ``+Infinity`` or ``-Infinity`` when the meter holds no number;
* ``unit``: the map's; ``raw``: the response frame the value came from.

Failures fail the read, and the polling loop records them and raises ``comm.failed``: a
unit that does not answer (``DeviceTimeout``: a wrong unit address looks like this),
garbled replies, an exception response
(:class:`~gateway.codecs.modbus.errors.ModbusExceptionResponse`, e.g. "unit 7 refused read
input registers 0x0000+44: exception 2 ILLEGAL DATA ADDRESS"). An exception response also
raises ``modbus.exception`` with the exception's code and name and the refused request
(once, when a meter that was read well starts refusing: a map that does not fit the meter).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.codecs.modbus.errors import ModbusExceptionResponse
from gateway.codecs.modbus.registers import Decoded
from gateway.collectors.base import PolledBus, Sink, StateStore
from gateway.collectors.modbus_master import ModbusMaster, Timing
from gateway.config import ModbusLine, ModbusMeter
from gateway.errors import TransportError
from gateway.events import make_event
from gateway.model import Reading, Record, utc_now
from gateway.modbus_maps import Entry, RegisterMap, load_map_file, shipped_map
from gateway.transports import LineSettings, open_transport


def line_settings(line: ModbusLine) -> LineSettings:
    """8 data bits, the line's parity and stop bits, at its rate."""
    return LineSettings(line.baud, 8, line.parity, line.stop_bits)


def line_timing(line: ModbusLine) -> Timing:
    return Timing(line_settings(line), line.response_timeout_ms / 1000, line.inter_request_delay_ms / 1000)


def meter_map(meter: ModbusMeter) -> RegisterMap:
    """The meter's register map: shipped (``map``) or the operator's (``map_file``)."""
    if meter.map is not None:
        return shipped_map(meter.map)
    return load_map_file(meter.map_file)  # type: ignore[arg-type]  # one of the two is set (ModbusMeter)


@dataclass(frozen=True, slots=True)
class Value:
    """One entry of a map as read: its exact value and the frame it came in."""

    entry: Entry
    decoded: Decoded
    raw: bytes


@dataclass(frozen=True, slots=True)
class MapReadout:
    """Every entry of a register map read from one unit, and the unit's serial number
    when the map names its register (None when it has none or holds no value)."""

    unit: int
    register_map: RegisterMap
    values: tuple[Value, ...]
    serial_number: str | None

    def device(self, fallback: str | None) -> str | None:
        """``modbus-<map>-<serial>``, or ``fallback`` when there is no serial number."""
        if self.serial_number is None:
            return fallback
        return f"modbus-{self.register_map.name}-{self.serial_number}"

    def readings(self, device: str, captured_at: datetime) -> list[Reading]:
        """Every entry but the serial number (it is the device's identity) as a Reading."""
        serial = self.register_map.serial_number
        return [Reading(device=device, quantity=v.entry.name, value=v.decoded.value, unit=v.entry.unit,
                        captured_at=captured_at, obis=v.entry.obis, status=v.decoded.status, raw=v.raw)
                for v in self.values if v.entry.name != serial]


async def read_map(master: ModbusMaster, unit: int, register_map: RegisterMap) -> MapReadout:
    """Read every block of the map from ``unit`` in one transaction on the port."""
    blocks = register_map.blocks()
    replies = await master.read_blocks([block.request(unit) for block in blocks])
    values = tuple(Value(entry, decoded, reply.raw) for block, reply in zip(blocks, replies)
                   for entry, decoded in block.values(reply.registers, register_map.not_available))
    serial = next((v.decoded.value for v in values if v.entry.name == register_map.serial_number), None)
    return MapReadout(unit, register_map, values, None if serial is None else str(int(serial)))


class ModbusCollector(PolledBus[ModbusMeter]):
    """One Modbus line (see the module docstring). ``status()`` adds the line's link
    counters (requests, responses, retries, timeouts, garbled, exceptions, skipped_bytes),
    kept across reconnects."""

    def __init__(self, line: ModbusLine, meters: Sequence[ModbusMeter], sink: Sink, tz: ZoneInfo, *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(line.name, meters, sink, tz, clock=clock)
        self.line = line
        self.timing = line_timing(line)
        self.maps = {meter.name: meter_map(meter) for meter in meters}
        #: One set for the line's life, across reconnects.
        self.link_counters: dict[str, int] = {}
        self._master: ModbusMaster | None = None

    @classmethod
    def from_config(cls, bus: ModbusLine, meters: Sequence[ModbusMeter], sink: Sink, tz: ZoneInfo, *,
                    state: StateStore | None = None) -> ModbusCollector:
        """What ``gateway.app`` calls for every ``protocol = "modbus"`` bus (Modbus keeps no
        durable state: ``state`` is not used)."""
        return cls(bus, meters, sink, tz)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ModbusMaster]:
        async with open_transport(self.timing.line, port=self.line.port, tcp=self.line.tcp) as transport:
            self._master = ModbusMaster(transport, self.timing, retries=self.line.retries, counters=self.link_counters)
            try:
                yield self._master
            finally:
                self._master = None

    async def read_meter(self, meter: ModbusMeter) -> list[Record]:
        if self._master is None:
            raise TransportError(f"line {self.name} is not connected")
        try:
            readout = await read_map(self._master, meter.unit, self.maps[meter.name])
        except ModbusExceptionResponse as exc:
            health = self.health[meter.name]
            if health.consecutive_failures == 0:
                await self._sink.commit([make_event(
                    "modbus.exception", f"meter {meter.name}: {exc}", occurred_at=self._clock(), device=health.device,
                    source=self.name, details={"meter": meter.name, "unit": meter.unit, "request": exc.request,
                                               "exception_code": exc.code, "exception": exc.name})])
            raise
        device = readout.device(None) or f"modbus-{self.name}-{meter.unit}"
        return list(readout.readings(device, self._clock()))

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["counters"].update(self.link_counters)  # one counters object per bus, as every bus has
        out["link"] = dict(self.link_counters)
        return out
