"""Simulated Modbus meters: pymodbus's own server on one end of a socat pseudo-terminal
pair, the gateway on the other, and datastores filled for the shipped maps from
independent sources (struct for SDM630 floats, the ABB manual's read example for the
B23's integers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import struct
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from gateway.modbus_maps import shipped_map

#: The SDM630 datastore: each entry's value as the float literal written here; the reading
#: must be exactly this decimal.
SDM630_SERIAL = 21000123


def sdm630_values() -> dict[str, str]:
    """A distinct, plausible decimal of at most 6 significant digits for every float entry."""
    named = {"voltage_l1": "230.1", "voltage_l2": "229.8", "voltage_l3": "231.4", "frequency": "49.98",
             "power_factor_l1": "-0.987", "active_energy_import": "12345.6", "active_energy_export": "0.5",
             "active_power_total": "-1520.25", "current_neutral": "0"}
    out = {}
    for index, entry in enumerate(shipped_map("sdm630").entries):
        if entry.data_type.name == "float32":
            out[entry.name] = named.get(entry.name, repr(round(index * 3.17 + 0.25, 2)))
    return out


def float32_words(text: str) -> tuple[int, int]:
    high, low = struct.unpack(">HH", struct.pack(">f", float(text)))
    return high, low


@dataclass
class SimulatedMeter:
    """One unit on the simulated line: its holding and input registers (address → word)."""

    unit: int
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    #: Answer each request this much later (a slow meter).
    reply_delay_s: float = 0.0
    #: Answer this many requests with SERVER DEVICE BUSY first.
    busy_replies: int = 0

    def without(self, function: int, first: int, last: int) -> SimulatedMeter:
        """The meter with registers ``first..last`` of ``function`` not served (a variant
        of the model that lacks them: reads of them get ILLEGAL DATA ADDRESS)."""
        table = self.holding if function == 3 else self.input
        kept = {a: w for a, w in table.items() if not first <= a <= last}
        return SimulatedMeter(self.unit, kept if function == 3 else dict(self.holding),
                              kept if function == 4 else dict(self.input), self.reply_delay_s)


def sdm630_meter(unit: int, values: dict[str, str] | None = None, serial: int = SDM630_SERIAL) -> SimulatedMeter:
    meter = SimulatedMeter(unit)
    values = values if values is not None else sdm630_values()
    for entry in shipped_map("sdm630").entries:
        if entry.name in values:
            meter.input.update(zip((entry.address, entry.address + 1), float32_words(values[entry.name])))
    meter.holding.update({0xFC00: serial >> 16, 0xFC01: serial & 0xFFFF})
    return meter


#: ABB B23 registers and the readings they must give. The 5B00h block follows the read example
#: of the ABB A43/A44 manual (2CMC48001M0201 rev C, same EQ-meter mapping): raw hex as printed there,
#: the decimal the manual derives from it; voltages L1-N..L2-L3 and the energies are made up.
ABB_REGISTERS: dict[str, tuple[str, str | None]] = {
    "serial_number": ("00BC614E", "12345678"),
    "active_energy_import": ("0000000000031292", "2013.62"),
    "active_energy_export": ("000000000000923A", "374.34"),
    "active_energy_net": ("0000000000028058", "1639.28"),
    "reactive_energy_import": ("00000000000062E5", "253.17"),
    "reactive_energy_export": ("0000000000006B11", "274.09"),
    "reactive_energy_net": ("FFFFFFFFFFFFF7D4", "-20.92"),
    "apparent_energy_import": ("0000000000012345", "745.65"),
    "apparent_energy_export": ("0000000000000000", "0.00"),
    "apparent_energy_net": ("0000000000012345", "745.65"),
    "voltage_l1": ("000008FD", "230.1"),
    "voltage_l2": ("0000090B", "231.5"),
    "voltage_l3": ("000008FB", "229.9"),
    "voltage_l1_l2": ("00000FA1", "400.1"),
    "voltage_l3_l2": ("00000FCA", "404.2"),
    "voltage_l1_l3": ("00000FC0", "403.2"),
    "current_l1": ("00000065", "1.01"),
    "current_l2": ("000000C9", "2.01"),
    "current_l3": ("0000012E", "3.02"),
    "current_neutral": ("FFFFFFFF", None),  # no data available: the manual's FF FF ...
    "active_power_total": ("0001E8E4", "1251.56"),
    "active_power_l1": ("00005AE2", "232.66"),
    "active_power_l2": ("0000B097", "452.07"),
    "active_power_l3": ("0000DD6B", "566.83"),
    "reactive_power_total": ("00007541", "300.17"),
    "reactive_power_l1": ("0000001C", "0.28"),
    "reactive_power_l2": ("FFFFD04A", "-122.14"),
    "reactive_power_l3": ("0000A4DB", "422.03"),
    "apparent_power_total": ("000225C3", "1407.39"),
    "apparent_power_l1": ("00005AE2", "232.66"),
    "apparent_power_l2": ("0000B6DF", "468.15"),
    "apparent_power_l3": ("00011402", "706.58"),
    "frequency": ("1383", "49.95"),
    "phase_angle_power_total": ("0087", "13.5"),
    "phase_angle_power_l1": ("0000", "0.0"),
    "phase_angle_power_l2": ("FF6A", "-15.0"),
    "phase_angle_power_l3": ("016F", "36.7"),
    "phase_angle_voltage_l1": ("0000", "0.0"),
    "phase_angle_voltage_l2": ("04AF", "119.9"),
    "phase_angle_voltage_l3": ("FB4E", "-120.2"),
    "phase_angle_current_l1": ("FFF3", "-1.3"),
    "phase_angle_current_l2": ("0409", "103.3"),
    "phase_angle_current_l3": ("FCAE", "-85.0"),
    "power_factor_total": ("03CC", "0.972"),
    "power_factor_l1": ("03E8", "1.000"),
    "power_factor_l2": ("03C6", "0.966"),
    "power_factor_l3": ("0384", "0.900"),
}
#: 5B34h..5B36h: no quantity, the meter answers FFFF (the manual's example).
ABB_UNUSED = {0x5B34: 0xFFFF, 0x5B35: 0xFFFF, 0x5B36: 0xFFFF}


def abb_meter(unit: int) -> SimulatedMeter:
    meter = SimulatedMeter(unit, holding=dict(ABB_UNUSED))
    for entry in shipped_map("abb-b23").entries:
        raw = bytes.fromhex(ABB_REGISTERS[entry.name][0])
        meter.holding.update({entry.address + i: int.from_bytes(raw[2 * i:2 * i + 2], "big")
                              for i in range(len(raw) // 2)})
    return meter


def abb_expected() -> dict[str, Decimal | None]:
    return {name: None if text is None else Decimal(text) for name, (_, text) in ABB_REGISTERS.items()
            if name != "serial_number"}


@dataclass
class SimulatedLine:
    """The gateway's end of the line (``path``) and every request the server heard, as
    (unit, function, address, count), whether a meter answered it or not."""

    path: str
    heard: list[tuple[int, int, int, int]] = field(default_factory=list)


def _runs(table: dict[int, int]) -> list[tuple[int, list[int]]]:
    """Contiguous runs of registers: pymodbus's datastore is built of such blocks."""
    runs: list[tuple[int, list[int]]] = []
    for address in sorted(table):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(table[address])
        else:
            runs.append((address, [table[address]]))
    return runs


def _device(meter: SimulatedMeter):
    from pymodbus.simulator import DataType, SimData, SimDevice

    def block(table: dict[int, int]) -> list:
        return [SimData(a, values=words, datatype=DataType.REGISTERS) for a, words in _runs(table)] or \
            [SimData(0, values=0, datatype=DataType.INVALID)]

    from pymodbus.constants import ExcCodes

    async def action(*_args):
        if meter.reply_delay_s:  # a slow meter: the answer comes this much later
            await asyncio.sleep(meter.reply_delay_s)
        if meter.busy_replies:
            meter.busy_replies -= 1
            return ExcCodes.DEVICE_BUSY
        return None

    no_bits = [SimData(0, values=False, datatype=DataType.BITS)]
    return SimDevice(meter.unit, simdata=(no_bits, list(no_bits), block(meter.holding), block(meter.input)),
                     action=action)


@contextlib.asynccontextmanager
async def pty_pair() -> AsyncIterator[tuple[str, str]]:
    """Two linked pseudo-terminals (socat ``pty,raw,echo=0`` on both sides)."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is not installed (apt-get install socat)")
    with tempfile.TemporaryDirectory(prefix="modbus-pty-") as folder:
        ends = os.path.join(folder, "gateway"), os.path.join(folder, "meter")
        process = await asyncio.create_subprocess_exec(
            socat, *(f"pty,raw,echo=0,link={end}" for end in ends),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            async with asyncio.timeout(10):
                while not all(os.path.exists(end) for end in ends):
                    await asyncio.sleep(0.01)
            yield ends
        finally:
            process.terminate()
            await process.wait()


@contextlib.asynccontextmanager
async def simulated_line(meters: Sequence[SimulatedMeter], *, garbled_replies: int = 0) -> AsyncIterator[SimulatedLine]:
    """pymodbus's serial server as an RS-485 line of ``meters``. A unit that is not there
    does not answer (the server hears the request and drops it); the first
    ``garbled_replies`` responses leave with a broken CRC (noise on the line)."""
    from pymodbus.server import ModbusSerialServer

    units = {meter.unit for meter in meters}
    garble = [garbled_replies]
    async with pty_pair() as (gateway_end, meter_end):
        line = SimulatedLine(gateway_end)

        def trace_packet(sending: bool, data: bytes) -> bytes:
            if sending and garble[0]:
                garble[0] -= 1
                return data[:-1] + bytes([data[-1] ^ 0xFF])
            return data

        def trace_pdu(sending: bool, pdu):
            if sending:
                return pdu
            line.heard.append((pdu.dev_id, pdu.function_code, pdu.address, pdu.count))
            return pdu if pdu.dev_id in units else None  # nobody at that address

        server = ModbusSerialServer([_device(m) for m in meters], port=meter_end, baudrate=9600,
                                    trace_pdu=trace_pdu, trace_packet=trace_packet)
        await server.serve_forever(background=True)
        try:
            yield line
        finally:
            await server.shutdown()
