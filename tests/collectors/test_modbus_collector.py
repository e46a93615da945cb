"""The Modbus collector against pymodbus's own server on a pseudo-terminal: exact readings
for the shipped maps, block reads counted at the server, a silent unit and an exception
response as events while the other meter on the line is still read, retries."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.codecs.modbus.errors import ModbusExceptionResponse, ModbusFrameError
from gateway.collectors.modbus import ModbusCollector
from gateway.config import ModbusLine, ModbusMeter
from gateway.errors import DeviceTimeout
from gateway.model import Event, Reading
from gateway.modbus_maps import shipped_map

from tests.collectors.modbus_helpers import (
    SDM630_SERIAL,
    abb_expected,
    abb_meter,
    sdm630_meter,
    sdm630_values,
    simulated_line,
)
from tests.collectors.polling import ListSink, running

pytestmark = pytest.mark.integration

UTC = ZoneInfo("UTC")
FIXED_NOW = datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc)  # next daily slot: a day away


def collector_for(meters: dict[str, tuple[int, str]], sink, *, port: str | None = None, tcp: str | None = None,
                  **line_settings) -> ModbusCollector:
    line = ModbusLine(name="rs485", protocol="modbus", port=port, tcp=tcp, **line_settings)
    configured = [ModbusMeter(name=name, protocol="modbus", bus="rs485", unit=unit, map=map_name,
                              schedule={"interval_s": 86400}) for name, (unit, map_name) in meters.items()]
    return ModbusCollector(line, configured, sink, UTC, clock=lambda: FIXED_NOW)


def blocks_heard(unit: int, map_name: str) -> list[tuple[int, int, int, int]]:
    return [(unit, b.function, b.address, b.count) for b in shipped_map(map_name).blocks()]


async def test_an_sdm630_gives_every_float_as_the_decimal_its_datastore_holds_in_eleven_requests():
    sink = ListSink()
    async with simulated_line([sdm630_meter(1)]) as line:
        collector = collector_for({"sub": (1, "sdm630")}, sink, port=line.path)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("sub"), 20)
    values = sdm630_values()
    assert {r.quantity: r.value for r in readings} == {name: Decimal(text) for name, text in values.items()}
    assert all(isinstance(r.value, Decimal) for r in readings)
    by_name = {r.quantity: r for r in readings}
    assert str(by_name["voltage_l1"].value) == "230.1" and str(by_name["active_power_total"].value) == "-1520.25"
    assert (by_name["voltage_l1"].unit, by_name["voltage_l1"].obis) == ("V", "1-0:32.7.0*255")
    assert (by_name["active_energy_import"].unit, by_name["active_energy_import"].obis) == ("kWh", "1-0:1.8.0*255")
    assert {r.device for r in readings} == {f"modbus-sdm630-{SDM630_SERIAL}"}
    assert {(r.captured_at, r.status) for r in readings} == {(FIXED_NOW, None)}
    assert by_name["voltage_l1"].raw[:3] == bytes([1, 4, 88])  # unit, function, 44 registers
    assert line.heard == blocks_heard(1, "sdm630") and len(line.heard) == 11
    assert [r for r in sink.records if isinstance(r, Reading)] == readings
    status = collector.status()
    assert status["link"]["requests"] == status["counters"]["requests"] == 11
    assert status["meters"]["sub"]["state"] == "ok"


async def test_an_abb_b23_gives_scaled_integers_exactly_in_three_requests_and_a_missing_value_as_such():
    async with simulated_line([abb_meter(2)]) as line:
        collector = collector_for({"b23": (2, "abb-b23")}, ListSink(), port=line.path)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("b23"), 20)
    by_name = {r.quantity: r for r in readings}
    assert {name: r.value for name, r in by_name.items()} == abb_expected()
    assert str(by_name["active_energy_import"].value) == "2013.62" and str(by_name["power_factor_l1"].value) == "1.000"
    assert str(by_name["reactive_energy_net"].value) == "-20.92"
    assert str(by_name["apparent_energy_export"].value) == "0.00"
    assert (by_name["current_neutral"].value, by_name["current_neutral"].status) == (None, "not-available")
    assert {r.device for r in readings} == {"modbus-abb-b23-12345678"}
    assert line.heard == [(2, 3, 0x5000, 36), (2, 3, 0x5B00, 62), (2, 3, 0x8900, 2)]


async def test_a_unit_that_does_not_answer_is_a_comm_failed_event_and_the_other_meter_is_still_read():
    sink = ListSink()
    async with simulated_line([sdm630_meter(1)]) as line:
        collector = collector_for({"ghost": (9, "abb-b23"), "sub": (1, "sdm630")}, sink, port=line.path,
                                  response_timeout_ms=100, retries=1)
        async with running(collector):
            with pytest.raises(DeviceTimeout, match=r"unit 9 did not answer read holding registers 0x5000\+36 "
                                                    r"\(timeout after \d+ ms, 1 retry\)"):
                await asyncio.wait_for(collector.read_now("ghost"), 20)
            readings = await asyncio.wait_for(collector.read_now("sub"), 20)
    assert len(readings) == len(sdm630_values())
    events = [r for r in sink.records if isinstance(r, Event)]
    assert [(e.code, e.details["meter"], e.details["reason"]) for e in events] == [("comm.failed", "ghost", "timeout")]
    assert "unit 9 did not answer" in events[0].message
    assert line.heard[:2] == [(9, 3, 0x5000, 36)] * 2  # one try and one retry, then the read gives up
    status = collector.status()
    assert status["meters"]["ghost"]["state"] == "failing" and status["meters"]["sub"]["state"] == "ok"
    assert status["link"]["timeouts"] == 2


async def test_an_exception_response_is_a_clear_error_and_an_event_without_retrying():
    sink = ListSink()
    variant = sdm630_meter(3).without(4, 0x0156, 0x017D)  # a model without the per-phase energies
    async with simulated_line([variant]) as line:
        collector = collector_for({"sub": (3, "sdm630")}, sink, port=line.path)
        async with running(collector):
            with pytest.raises(ModbusExceptionResponse) as info:
                await asyncio.wait_for(collector.read_now("sub"), 20)
    assert str(info.value) == ("unit 3 refused read input registers 0x0156+40: exception 2 ILLEGAL DATA ADDRESS "
                               "at field exception code")
    assert (info.value.code, info.value.name) == (2, "ILLEGAL DATA ADDRESS")
    assert not [r for r in sink.records if isinstance(r, Reading)]
    exception, failed = sink.records
    assert (exception.code, exception.severity.value, exception.details) == ("modbus.exception", "warning", {
        "meter": "sub", "unit": 3, "request": "read input registers 0x0156+40", "exception_code": 2,
        "exception": "ILLEGAL DATA ADDRESS"})
    assert (failed.code, failed.details["reason"]) == ("comm.failed", "application")
    assert "ILLEGAL DATA ADDRESS" in failed.message
    assert line.heard == blocks_heard(3, "sdm630")  # every block once, the refused one not repeated
    assert collector.status()["link"]["exceptions"] == 1


async def test_a_meter_that_keeps_refusing_raises_its_exception_event_once():
    sink = ListSink()
    async with simulated_line([sdm630_meter(3).without(4, 0x0046, 0x0057)]) as line:
        collector = collector_for({"sub": (3, "sdm630")}, sink, port=line.path)
        async with running(collector):
            for _ in range(3):
                with pytest.raises(ModbusExceptionResponse):
                    await asyncio.wait_for(collector.read_now("sub"), 20)
    assert [r.code for r in sink.records] == ["modbus.exception", "comm.failed"]
    assert collector.status()["meters"]["sub"]["consecutive_failures"] == 3


async def test_a_busy_meter_and_a_garbled_reply_are_asked_again_and_counted():
    busy = abb_meter(4)
    busy.busy_replies = 2  # the first busy answer is garbled on the way, the second arrives
    async with simulated_line([busy], garbled_replies=1) as line:
        collector = collector_for({"b23": (4, "abb-b23")}, ListSink(), port=line.path, response_timeout_ms=200)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("b23"), 20)
    assert {r.quantity: r.value for r in readings} == abb_expected()
    link = collector.status()["link"]
    assert (link["garbled"], link["exceptions"], link["retries"], link["requests"]) == (1, 1, 2, 5)
    assert line.heard[:3] == [(4, 3, 0x5000, 36)] * 3


async def test_a_meter_that_is_garbled_every_time_fails_with_a_frame_error():
    async with simulated_line([abb_meter(5)], garbled_replies=10) as line:
        collector = collector_for({"b23": (5, "abb-b23")}, ListSink(), port=line.path, response_timeout_ms=100,
                                  retries=2)
        async with running(collector):
            with pytest.raises(ModbusFrameError, match=r"unit 5 answered read holding registers 0x5000\+36 with "
                                                       r"garbage \(no valid response frame in the 77 bytes"):
                await asyncio.wait_for(collector.read_now("b23"), 20)
    assert collector.status()["link"]["garbled"] == 3


@contextlib.asynccontextmanager
async def tcp_serial_server(pty_path: str):
    """socat as a TCP serial server in front of the line (RTU frames over TCP); ready once
    socat says it listens (a probe connection would open the pty a second time)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        shutil.which("socat") or "socat", "-d", "-d", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
        f"FILE:{pty_path},raw,echo=0", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(10):
            while b"listening on" not in await process.stderr.readline():
                pass
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


async def test_a_meter_behind_a_tcp_serial_server_is_read_the_same_way():
    async with simulated_line([abb_meter(6)]) as line, tcp_serial_server(line.path) as address:
        collector = collector_for({"b23": (6, "abb-b23")}, ListSink(), tcp=address)
        async with running(collector):
            readings = await asyncio.wait_for(collector.read_now("b23"), 20)
    assert {r.quantity: r.value for r in readings} == abb_expected()
    assert line.heard == [(6, 3, 0x5000, 36), (6, 3, 0x5B00, 62), (6, 3, 0x8900, 2)]
