"""The DLMS server with the gateway's own client over the wrapper on loopback: what each
logical device serves, with values equal to the store's, profiles by range and by entry in
blocks, the access rules and their result codes, SET and ACTION, restarts and connections."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.codecs.dlms.apdu import decode_apdu
from gateway.codecs.dlms.association import (
    Associated,
    AssociationRejected,
    ClientSettings,
    GetListResult,
    RequestFailed,
)
from gateway.codecs.dlms.axdr import Data, DataType, structure
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.selective import CaptureObject, EntryDescriptor, RangeDescriptor
from gateway.codecs.dlms.services import (
    ActionResult,
    AttributeDescriptor,
    DataAccessResult,
    MethodDescriptor,
    SelectiveAccess,
)
from gateway.codecs.dlms.units import ScalerUnit
from gateway.codecs.dlms.xdlms import ExceptionResponse
from gateway.config import StoreSection
from gateway.model import Reading
from gateway.store import Store
from gateway.uplinks.dlms_server import server as server_module
from gateway.uplinks.dlms_server.session import Session
from tests.uplinks.conftest import eventually
from tests.uplinks.dlms_server.conftest import (
    CLOCK,
    EVENT_LOG,
    HEAT,
    MANAGEMENT,
    NAME,
    PROFILE,
    PUBLIC,
    PUSH_SETUP,
    SAP_LIST,
    T0,
    WATER,
    Client,
    gateway_event,
    heat_readings,
    management_settings,
    serving,
    water_readings,
)

HEAT_SAP, WATER_SAP = 16, 17
NOW = datetime(2024, 6, 1, 12, 30, 15, 250000, tzinfo=timezone.utc)


def clock() -> datetime:
    return NOW


def attribute(class_id: int, obis: str, index: int) -> AttributeDescriptor:
    return AttributeDescriptor(class_id, Obis.parse(obis), index)


def rows(result: Data) -> list[list]:
    return [row.to_python() for row in result.value]


def stamp(moment: datetime) -> bytes:
    return CosemDateTime.from_datetime(moment).to_bytes()


async def stored_latest(store: Store) -> dict[tuple[str, str], Reading]:
    return {(s.record.device, s.record.quantity): s.record for s in await store.last_readings()}


async def test_the_management_client_reads_names_saps_clock_and_registers_equal_to_the_store(store) -> None:
    await store.append(heat_readings(10))
    await store.append(water_readings(5))
    latest = await stored_latest(store)
    async with serving(store, clock=clock) as server:
        async with Client(server.port) as client:
            assert isinstance(await client.associate(), Associated)
            assert client.association.server_system_title == server.system_title
            assert (await client.get(NAME)).value == b"demogw1"
            assert (await client.get(SAP_LIST)).to_python() == [[1, b"demogw1"], [HEAT_SAP, b"KAM123456781b04"],
                                                                [WATER_SAP, b"WAT0000000042"]]
            assert (await client.get(CLOCK)).value == stamp(NOW)
        async with Client(server.port, HEAT_SAP, counter=100) as meter:
            assert isinstance(await meter.associate(), Associated)
            assert (await meter.get(NAME)).value == b"KAM123456781b04"
            registers = {"energy": ("6-0:1.0.0", "Wh", 30), "volume": ("0-0:128.0.0", "m^3", 13),
                         "flow temperature": ("0-0:128.0.1", "°C", 9)}
            for quantity, (obis, unit, code) in registers.items():
                value = await meter.get(attribute(3, obis, 2))
                scaler_unit = ScalerUnit.from_data(await meter.get(attribute(3, obis, 3)))
                reading = latest[(HEAT, quantity)]
                expected = reading.value * 1000 if reading.unit == "kWh" else reading.value
                assert (scaler_unit.apply(value), scaler_unit.unit) == (expected, code)
                assert value.type is DataType.DOUBLE_LONG and reading.unit.endswith(unit)
            assert await meter.get(attribute(1, "0-0:128.0.2", 2)) == Data(DataType.VISIBLE_STRING, "F-0042")
            directory = (await meter.get(attribute(1, "0-0:129.0.0", 2))).to_python()
            assert [entry[1] for entry in directory] == ["energy", "volume", "flow temperature", "fabrication number"]


async def test_a_meter_profile_by_range_and_by_entry_comes_in_blocks_and_equals_the_store(store) -> None:
    await store.append(heat_readings(200))
    await store.append(water_readings(3))  # another meter's readings in between change nothing
    await store.append(heat_readings(40, start=200))
    settings = management_settings(max_receive_pdu_size=256)
    async with serving(store) as server, Client(server.port, HEAT_SAP, settings=settings) as meter:
        await meter.associate()
        assert (await meter.get(attribute(7, "0-0:99.1.0", 7))).value == 240
        columns = await meter.get(AttributeDescriptor(7, PROFILE, 3))
        assert [CaptureObject.from_data(c).logical_name for c in columns.value] == [
            Obis(0, 0, 1, 0, 0), Obis(6, 0, 1, 0, 0), Obis(0, 0, 128, 0, 0), Obis(0, 0, 128, 0, 1),
            Obis(0, 0, 128, 0, 2)]
        window = RangeDescriptor.by_time(CosemDateTime.from_datetime(T0 + timedelta(minutes=15 * 10)),
                                         CosemDateTime.from_datetime(T0 + timedelta(minutes=15 * 229)))
        ranged = rows(await meter.get(AttributeDescriptor(7, PROFILE, 2), window.to_access()))
        assert len(ranged) == 220
        assert ranged[0] == [stamp(T0 + timedelta(minutes=150)), 123456 + 70, 1010, 550, "F-0042"]
        assert ranged[-1][1:] == [123456 + 7 * 229, 1229, 559, "F-0042"]
        assert [r[2] for r in ranged] == list(range(1010, 1230))
        by_entry = rows(await meter.get(AttributeDescriptor(7, PROFILE, 2), EntryDescriptor(238, 0, 2, 3).to_access()))
        assert by_entry == [[123456 + 7 * n, 1000 + n] for n in (237, 238, 239)]
        everything = rows(await meter.get(AttributeDescriptor(7, PROFILE, 2)))
        assert len(everything) == 240 and everything[:10] == rows_of_first(10)


def rows_of_first(count: int) -> list[list]:
    return [[stamp(T0 + timedelta(minutes=15 * n)), 123456 + 7 * n, 1000 + n, 550 + n % 10, "F-0042"]
            for n in range(count)]


async def test_selective_access_outside_the_buffer_or_malformed_gets_its_result_code(store) -> None:
    await store.append(heat_readings(5))
    async with serving(store) as server, Client(server.port, HEAT_SAP) as meter:
        await meter.associate()
        buffer = AttributeDescriptor(7, PROFILE, 2)
        nothing = RangeDescriptor.by_time(CosemDateTime.from_datetime(T0 - timedelta(days=2)),
                                          CosemDateTime.from_datetime(T0 - timedelta(days=1)))
        assert (await meter.get(buffer, nothing.to_access())).value == ()
        assert await meter.get(buffer, EntryDescriptor(6, 0).to_access()) == DataAccessResult(13)
        assert await meter.get(buffer, EntryDescriptor(1, 2, 1, 9).to_access()) == DataAccessResult(13)
        assert await meter.get(buffer, EntryDescriptor(3, 2).to_access()) == DataAccessResult(13)
        not_clock = RangeDescriptor(CaptureObject(3, Obis(6, 0, 1, 0, 0), 2), nothing.from_value, nothing.to_value)
        assert await meter.get(buffer, not_clock.to_access()) == DataAccessResult(13)
        uncaptured = RangeDescriptor(nothing.restricting_object, nothing.from_value, nothing.to_value,
                                     (CaptureObject(3, Obis(1, 0, 1, 8, 0), 2),))
        assert await meter.get(buffer, uncaptured.to_access()) == DataAccessResult(13)
        assert await meter.get(buffer, SelectiveAccess(2, Data(DataType.UNSIGNED, 1))) == DataAccessResult(12)
        assert await meter.get(buffer, SelectiveAccess(3, Data(DataType.NULL_DATA))) == DataAccessResult(13)
        assert await meter.get(NAME, EntryDescriptor().to_access()) == DataAccessResult(13)
        # and the association still serves
        assert (await meter.get(buffer, EntryDescriptor(5, 5).to_access())).to_python()[0][2] == 1004


async def test_the_public_client_reads_names_and_saps_and_is_denied_the_rest(store) -> None:
    await store.append(heat_readings(2))
    async with serving(store) as server:
        async with Client(server.port, MANAGEMENT, PUBLIC) as public:
            assert isinstance(await public.associate(), Associated)
            assert (await public.get(NAME)).value == b"demogw1"
            assert [sap for sap, _ in (await public.get(SAP_LIST)).to_python()] == [1, HEAT_SAP]
            assert await public.get(CLOCK) == DataAccessResult(3)
            assert await public.get(AttributeDescriptor(7, EVENT_LOG, 2)) == DataAccessResult(3)
            assert await public.get(AttributeDescriptor(1, Obis(1, 2, 3, 4, 5), 2)) == DataAccessResult(4)
            listed = (await public.get(AttributeDescriptor(15, Obis(0, 0, 40, 0, 0), 2))).to_python()
            assert sorted(entry[2] for entry in listed) == sorted(
                o.to_bytes() for o in (Obis(0, 0, 40, 0, 0), Obis(0, 0, 42, 0, 0), Obis(0, 0, 41, 0, 0)))
            # The public association has no SET (nor ACTION): refused, and the association goes on.
            result = await public.run(public.association.send_set(NAME, Data(DataType.OCTET_STRING, b"x")))
            assert result == RequestFailed(ExceptionResponse(1, 1))
            assert (await public.get(NAME)).value == b"demogw1"
            assert server.stats.refused == 1
        async with Client(server.port, HEAT_SAP, PUBLIC) as public:
            await public.associate()
            assert (await public.get(NAME)).value == b"KAM123456781b04"
            assert await public.get(ENERGY_OF_HEAT) == DataAccessResult(3)


ENERGY_OF_HEAT = AttributeDescriptor(3, Obis(6, 0, 1, 0, 0), 2)


async def test_unknown_objects_classes_and_attributes_and_the_clock_get_their_codes(store) -> None:
    await store.append(heat_readings(2))
    async with serving(store) as server, Client(server.port) as client:
        await client.associate()
        assert await client.get(AttributeDescriptor(3, Obis(1, 0, 1, 8, 0), 2)) == DataAccessResult(4)
        assert await client.get(AttributeDescriptor(3, Obis(0, 0, 1, 0, 0), 2)) == DataAccessResult(9)
        assert await client.get(AttributeDescriptor(8, Obis(0, 0, 1, 0, 0), 42)) == DataAccessResult(4)
        assert await client.get(AttributeDescriptor(15, Obis(0, 0, 40, 0, 0), 7)) == DataAccessResult(3)
        assert await client.set(CLOCK, Data(DataType.OCTET_STRING, stamp(NOW))) == DataAccessResult(3)
        adjusted = await client.act(MethodDescriptor(8, Obis(0, 0, 1, 0, 0), 6), Data(DataType.LONG, 60))
        assert adjusted.result == ActionResult(3)
        unknown = await client.act(MethodDescriptor(8, Obis(0, 0, 1, 0, 0), 99), Data(DataType.LONG, 60))
        assert unknown.result == ActionResult(4)
        listed = await client.run(client.association.send_get_with_list([NAME, CLOCK, AttributeDescriptor(
            3, Obis(1, 0, 1, 8, 0), 2), AttributeDescriptor(7, EVENT_LOG, 7)]))
        assert isinstance(listed, GetListResult)
        assert listed.results[0].value == b"demogw1" and listed.results[2] == DataAccessResult(4)
        assert listed.results[3].type is DataType.DOUBLE_LONG_UNSIGNED


async def test_the_event_log_serves_the_stored_events_by_entry_and_range(store) -> None:
    await store.append([gateway_event(n=n) for n in range(30)])
    async with serving(store) as server, Client(server.port) as client:
        await client.associate()
        log = AttributeDescriptor(7, EVENT_LOG, 2)
        last_two = rows(await client.get(log, EntryDescriptor(29, 30).to_access()))
        assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in last_two] == [
            (stamp(T0 + timedelta(minutes=n)), n + 1, "comm.timeout", "warning", HEAT, f"meter did not answer ({n})")
            for n in (28, 29)]
        window = RangeDescriptor.by_time(CosemDateTime.from_datetime(T0 + timedelta(minutes=5)),
                                         CosemDateTime.from_datetime(T0 + timedelta(minutes=9)))
        assert [r[1] for r in rows(await client.get(log, window.to_access()))] == [6, 7, 8, 9, 10]


async def test_new_readings_reach_the_registers_and_new_meters_get_the_next_sap(store) -> None:
    await store.append(heat_readings(1))
    async with serving(store) as server:
        await store.append(heat_readings(1, start=7))
        await store.append(water_readings(2))
        await eventually(lambda: server.registry.meter(WATER_SAP) is not None)
        async with Client(server.port, HEAT_SAP) as meter:
            await meter.associate()
            await eventually(lambda: server.registry.meter(HEAT_SAP).quantities["energy"].latest_seq == 5)
            assert (await meter.get(ENERGY_OF_HEAT)).value == 123456 + 49


async def test_saps_names_and_obis_codes_survive_a_restart_and_scalers_only_get_finer(tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    async with Store(path, StoreSection()) as store:
        await store.append(water_readings(1))
        await store.append(heat_readings(1))
        async with serving(store) as server:
            assert [(m.sap, m.device) for m in server.registry.meters()] == [(16, WATER), (17, HEAT)]
            heat = server.registry.meter(17)
            assert heat.quantities["volume"].scaler == -2
    async with Store(path, StoreSection()) as store:
        odd = Reading(HEAT, "volume", Decimal("10.125"), "m^3", T0 + timedelta(days=1))
        await store.append([odd, Reading("KAM-99999999-01-07", "volume", Decimal(1), "m^3", T0)])
        async with serving(store) as server, Client(server.port, 17) as meter:
            assert [(m.sap, m.device) for m in server.registry.meters()] == [
                (16, WATER), (17, HEAT), (18, "KAM-99999999-01-07")]
            volume = server.registry.meter(17).quantities["volume"]
            assert (volume.obis, volume.scaler) == (Obis(0, 0, 128, 0, 0), -3)
            await meter.associate()
            profile = rows(await meter.get(AttributeDescriptor(7, PROFILE, 2), EntryDescriptor(1, 0, 3, 3).to_access()))
            assert profile == [[10000], [10125]]  # the older value at the finer scaler, exactly


async def test_the_push_setup_is_read_only_without_push_and_unknown_saps_are_ignored(store) -> None:
    async with serving(store) as server, Client(server.port) as client:
        await client.associate()
        destination = AttributeDescriptor(40, PUSH_SETUP, 3)
        assert await client.set(destination, structure(Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, b"h:1"),
                                                       Data(DataType.ENUM, 0))) == DataAccessResult(3)
        assert (await client.act(MethodDescriptor(40, PUSH_SETUP, 1), Data(DataType.INTEGER, 0))).result == \
            ActionResult(2)
        with pytest.raises(TimeoutError):
            await _silent(server.port)
        assert server.stats.ignored == 1


async def _silent(port: int) -> None:
    async with Client(port, 99) as nobody:
        await nobody.exchange(nobody.association.send_aarq(), timeout=0.5)


async def test_unknown_client_saps_are_rejected_and_connections_are_isolated(store) -> None:
    await store.append(heat_readings(3))
    async with serving(store, max_connections=3) as server:
        async with Client(server.port, MANAGEMENT, client_sap=0x20, settings=ClientSettings()) as stranger:
            rejected = await stranger.associate()
            assert isinstance(rejected, AssociationRejected)
        clients = [Client(server.port, HEAT_SAP, counter=1000 * n, title=bytes([0x4D, 0, 0, 0, 0, 0, 0, n]))
                   for n in range(1, 4)]
        for client in clients:
            await client.__aenter__()
        try:
            await asyncio.gather(*(client.associate() for client in clients))
            values = await asyncio.gather(*(client.get(ENERGY_OF_HEAT) for client in clients))
            assert {v.value for v in values} == {123456 + 14}
            async with Client(server.port) as fourth:
                with pytest.raises((ConnectionError, TimeoutError)):
                    await fourth.associate()
            assert server.stats.connections_refused == 1
        finally:
            for client in clients:
                await client.__aexit__()


async def test_an_idle_connection_is_closed_and_shutdown_closes_the_rest(store) -> None:
    async with serving(store, idle_timeout_s=0.3) as server:
        async with Client(server.port) as client:
            await client.associate()
            await asyncio.sleep(0.6)
            with pytest.raises((ConnectionError, TimeoutError)):
                await client.get(NAME)
        assert server.stats.idle_closed == 1
    async with serving(store) as server:
        client = Client(server.port)
        await client.__aenter__()
        await client.associate()
    # the server has stopped: its connection is gone
    assert await client.reader.read() == b""
    await client.__aexit__()
    assert server.status()["open_connections"] == 0


async def test_a_with_list_request_whose_counts_differ_is_refused_as_malformed_and_logs_no_error(store, caplog) -> None:
    descriptor = bytes.fromhex("0001" "0000280000FF" "02" "00")  # the logical device name, no selection
    set_with_list = bytes.fromhex("C104C1") + b"\x02" + descriptor * 2 + b"\x01" + bytes.fromhex("1100")
    async with serving(store) as server:
        for _ in range(2):
            async with Client(server.port, MANAGEMENT, PUBLIC) as public:
                await public.associate()
                assert decode_apdu(await public.exchange(set_with_list)) == ExceptionResponse(1, 3)  # other reason
                assert (await public.get(NAME)).value == b"demogw1"  # the connection goes on
        assert server.stats.malformed == 2 and server.stats.connections_failed == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_unexpected_connection_failure_is_one_warning_line_and_repeats_are_counted(
        store, caplog, monkeypatch) -> None:
    async def broken(self) -> None:
        self.stop()
        raise RuntimeError("boom")

    monkeypatch.setattr(Session, "serve", broken)
    caplog.set_level(logging.WARNING, logger="gateway.uplinks.dlms_server")
    async with serving(store) as server:
        for _ in range(3):
            async with Client(server.port) as client:
                with pytest.raises((ConnectionError, TimeoutError)):
                    await client.associate()
        await eventually(lambda: server.stats.connections_failed == 3)
        monkeypatch.setattr(server_module, "FAILURE_LOG_INTERVAL_S", 0.0)  # the interval is over
        async with Client(server.port) as client:
            with pytest.raises((ConnectionError, TimeoutError)):
                await client.associate()
        await eventually(lambda: server.stats.connections_failed == 4)
    lines = [r for r in caplog.records if r.name == "gateway.uplinks.dlms_server.server"]
    assert [(r.levelno, r.exc_info) for r in lines] == [(logging.WARNING, None)] * 2
    assert [r.getMessage() for r in lines] == [
        "DLMS server dlms: a connection failed: RuntimeError: boom",
        "DLMS server dlms: a connection failed: RuntimeError: boom (2 more since the last report)"]
