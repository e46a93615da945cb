"""A Modbus line and an M-Bus configured on the SAME port share one transport and take
turns: at the far end of the pty no request of one protocol ever arrives while a request
of the other is still unanswered, and each read stays in one piece (the claim holds the
port for a whole read). Without the port's lock the same workload interleaves: the check
can fail."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from gateway.codecs.mbus.link import LinkParser
from gateway.codecs.modbus.rtu import ReadRequest, ResponseReader
from gateway.collectors.mbus import MBusCollector
from gateway.collectors.modbus import ModbusCollector
from gateway.config import MBusBus, MBusMeter, ModbusLine, ModbusMeter
from gateway.model import Reading
from gateway.modbus_maps import shipped_map
from gateway.simulators.mbus import MeterModel, SimulatedBus, SimulatedSlave
from gateway.simulators.pty import pty_end
from gateway.transports import LineSettings, Transport, open_transport

from tests.collectors.modbus_helpers import abb_expected, abb_meter, simulated_line
from tests.collectors.polling import ListSink, running

pytestmark = pytest.mark.integration

FIXED_NOW = datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
#: Each meter takes this long to answer: long enough that an interleaved request would land
#: while the other protocol's answer is pending.
TURNAROUND_S = 0.02
MBUS_START = (0x10, 0x68)  # EN 13757-2 short and long frame starts; the Modbus unit is 1


@dataclass
class TwoProtocolEnd:
    """The far end of the shared pty: an M-Bus meter (the package's simulator) and a Modbus
    meter (pymodbus's server, behind a second pty). ``log`` holds ("rx"|"tx", protocol) in
    the order things happened on the line."""

    mbus: SimulatedBus
    modbus: Transport
    write: object = None
    log: list[tuple[str, str]] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=bytearray)
    _queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def received(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer:
            if self._buffer[0] in MBUS_START:
                parser = LinkParser()
                parser.receive_data(bytes(self._buffer))
                frame = parser.next_frame()
                if frame is None:
                    return
                del self._buffer[:len(frame.to_bytes())]
                self._arrived("mbus", frame)
            else:
                if len(self._buffer) < 8:  # a read request is 8 bytes
                    return
                request, self._buffer[:8] = bytes(self._buffer[:8]), b""
                self._arrived("modbus", request)

    def _arrived(self, protocol: str, request) -> None:
        self.log.append(("rx", protocol))
        self._queue.put_nowait((protocol, request))

    async def serve(self) -> None:
        while True:
            protocol, request = await self._queue.get()
            await asyncio.sleep(TURNAROUND_S)
            reply = self.mbus.handle(request) if protocol == "mbus" else await self._modbus_reply(request)
            self.log.append(("tx", protocol))
            if reply:
                self.write(reply)

    async def _modbus_reply(self, request: bytes) -> bytes:
        reader = ResponseReader(ReadRequest(request[0], request[1], int.from_bytes(request[2:4], "big"),
                                            int.from_bytes(request[4:6], "big")))
        async with self.modbus.claim():
            await self.modbus.write(request)
            while (reply := reader.next_reply()) is None:
                reader.receive_data(await self.modbus.read(timeout_s=5))
        return reply.raw

    def overlaps(self) -> int:
        """Requests that arrived while another request was still unanswered."""
        pending, count = 0, 0
        for direction, _ in self.log:
            if direction == "rx":
                count += pending > 0
                pending += 1
            else:
                pending -= 1
        return count

    def runs(self) -> list[tuple[str, int]]:
        """The requests as runs of one protocol: (protocol, how many in a row)."""
        runs: list[tuple[str, int]] = []
        for direction, protocol in self.log:
            if direction == "rx":
                if runs and runs[-1][0] == protocol:
                    runs[-1] = (protocol, runs[-1][1] + 1)
                else:
                    runs.append((protocol, 1))
        return runs


@contextlib.asynccontextmanager
async def shared_port():
    """Yields (path of the shared port, its far end)."""
    async with simulated_line([abb_meter(1)]) as modbus_line, \
            open_transport(LineSettings(9600, 8, "N", 1), port=modbus_line.path) as modbus:
        end = TwoProtocolEnd(SimulatedBus([SimulatedSlave(5, MeterModel(identification="00000005"))]), modbus)
        async with pty_end(end.received) as pty:
            end.write = pty.write
            task = asyncio.ensure_future(end.serve())
            try:
                yield pty.path, end
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def collectors(path: str, mbus_sink: ListSink, modbus_sink: ListSink) -> tuple[MBusCollector, ModbusCollector]:
    mbus = MBusCollector(MBusBus(name="mbus1", protocol="mbus", port=path, baud=9600, retries=0),
                         [MBusMeter(name="heat", protocol="mbus", bus="mbus1", address=5,
                                    schedule={"interval_s": 86400})], mbus_sink, ZoneInfo("UTC"),
                         clock=lambda: FIXED_NOW)
    modbus = ModbusCollector(ModbusLine(name="rs485", protocol="modbus", port=path, retries=0,
                                        response_timeout_ms=500),
                             [ModbusMeter(name="sub", protocol="modbus", bus="rs485", unit=1, map="abb-b23",
                                          schedule={"interval_s": 86400})], modbus_sink, ZoneInfo("UTC"),
                             clock=lambda: FIXED_NOW)
    return mbus, modbus


async def read_both_at_once(mbus: MBusCollector, modbus: ModbusCollector, rounds: int) -> list:
    async with running(mbus), running(modbus):
        jobs = [job for _ in range(rounds) for job in (mbus.read_now("heat"), modbus.read_now("sub"))]
        return await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), 60)


async def test_a_modbus_meter_and_an_mbus_meter_on_one_port_never_interleave():
    mbus_sink, modbus_sink = ListSink(), ListSink()
    async with shared_port() as (path, end):
        mbus, modbus = collectors(path, mbus_sink, modbus_sink)
        results = await read_both_at_once(mbus, modbus, rounds=4)
        assert mbus._master is None and modbus._master is None  # noqa: SLF001 - both closed their use of the port
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert end.overlaps() == 0
    blocks = len(shipped_map("abb-b23").blocks())
    runs = end.runs()
    assert {protocol for protocol, _ in runs} == {"mbus", "modbus"} and len(runs) >= 2  # they did take turns
    assert all(count % (2 if protocol == "mbus" else blocks) == 0 for protocol, count in runs), runs
    assert sum(count for protocol, count in runs if protocol == "mbus") == 4 * 2  # SND_NKE + REQ_UD2 per read
    assert sum(count for protocol, count in runs if protocol == "modbus") == 4 * blocks
    modbus_readings = [r for r in modbus_sink.records if isinstance(r, Reading)]
    assert {r.quantity: r.value for r in modbus_readings[:len(abb_expected())]} == abb_expected()
    assert {r.device for r in mbus_sink.records if isinstance(r, Reading)} == {"GWY-00000005-01-04"}


async def test_without_the_ports_lock_the_same_workload_interleaves(monkeypatch):
    @contextlib.asynccontextmanager
    async def claim_without_lock(self, line=None):
        if line is not None:
            await self.set_line(line)
        yield self

    monkeypatch.setattr(Transport, "claim", claim_without_lock)
    async with shared_port() as (path, end):
        await read_both_at_once(*collectors(path, ListSink(), ListSink()), rounds=2)
    assert end.overlaps() > 0
