"""The DLMS collector against the independent gurux meter (tests/dlms_peer.py): over the TCP
wrapper and over HDLC on a pseudo-terminal, with no security, LLS and HLS-GMAC + suite 0;
exact register values, the clock, profiles read incrementally across restarts, block
transfer, and every failure a clear error and an event, never a hang."""

from __future__ import annotations

import asyncio
import os
import tty
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from gateway.app import StoreSink
from gateway.codecs.dlms.errors import DLMSError, DLMSFrameError, DLMSSecurityError
from gateway.codecs.dlms.hdlc import HdlcParser
from gateway.codecs.dlms.wrapper import WrapperMessage
from gateway.collectors.dlms import DlmsCollector, MemoryState
from gateway.collectors.dlms_session import AssociationRefused, CredentialsRefused
from gateway.config import StoreSection
from gateway.errors import DeviceTimeout, StoreError
from gateway.model import Event, Reading
from gateway.store import Store

from tests.collectors.dlms_helpers import (
    AK,
    DEVICE,
    EK,
    PROFILE,
    SECURITY,
    key_files,
    line,
    meter,
)
from tests.collectors.dlms_sim_meter import RawBytes, mode_e_opening, tampering_proxy
from tests.collectors.polling import ListSink, running

pytestmark = pytest.mark.integration

UTC = ZoneInfo("UTC")
#: The gurux profile holds 15-minute rows from 2024-01-01 00:00 (8 of them, to 01:45).
FIRST_ROW = datetime(2024, 1, 1, tzinfo=timezone.utc)
WHOLE_PROFILE = {"obis": PROFILE, "backfill_s": 10**9}


async def read_once(collector: DlmsCollector, name: str = "m1"):
    async with running(collector):
        return await asyncio.wait_for(collector.read_now(name), 30)


def profile_rows(records) -> list[tuple[datetime, Decimal]]:
    return [(r.meter_time, r.value) for r in records if isinstance(r, Reading) and ";profile=" in r.quantity]


@pytest.mark.parametrize("iface", ["wrapper", "hdlc-pty"])
@pytest.mark.parametrize("security", sorted(SECURITY))
async def test_the_register_and_the_clock_read_exactly_with_every_security_setting(
        start_dlms_meter, request, tmp_path, security, iface):
    peer_options, _ = SECURITY[security]
    if iface == "wrapper":
        where = line(tcp="%s:%d" % start_dlms_meter(**peer_options).address)
    else:
        request.node.add_marker(pytest.mark.dlms_meter(**peer_options))
        where = line(port=request.getfixturevalue("dlms_meter_serial"), interface="hdlc")
    sink = ListSink()
    before = datetime.now(timezone.utc)
    collector = DlmsCollector(where, [meter(tmp_path, security=security)], sink, UTC)
    readings = {r.quantity: r for r in await read_once(collector)}
    energy = readings["active_energy_import"]
    # 1234567 × 10^-1 Wh, exactly.
    assert (energy.value, energy.unit, energy.obis, energy.device) == (
        Decimal("123456.7"), "Wh", "1-0:1.8.0*255", DEVICE)
    assert str(energy.value) == "123456.7"
    clock = readings["clock"].value
    assert clock.tzinfo is not None and before - timedelta(seconds=5) < clock < datetime.now(timezone.utc) + timedelta(seconds=5)
    assert abs(readings["clock_deviation_s"].value) < 5 and readings["clock_deviation_s"].unit == "s"
    assert energy.meter_time == clock
    assert collector.status()["link"]["associations"] == 1
    assert not sink.of(Event)


async def test_a_profile_is_read_by_range_and_then_only_its_new_rows_across_a_restart(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(auth="gmac", secure=True)
    where = line(tcp="%s:%d" % peer.address)
    config = meter(tmp_path, security="hls-gmac", profiles=[WHOLE_PROFILE])
    now = FIRST_ROW + timedelta(minutes=30)
    async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
        collector = DlmsCollector(where, [config], StoreSink(store), UTC, state=store, clock=lambda: now)
        async with running(collector):
            assert await asyncio.wait_for(collector.read_now("m1"), 30)  # the register and the clock
            assert profile_rows(await _stored(store)) == [
                (FIRST_ROW + timedelta(minutes=15 * i), Decimal(100000 + 25 * i)) for i in range(3)]
            now = FIRST_ROW + timedelta(minutes=60)
            await asyncio.wait_for(collector.read_now("m1"), 30)
        rows = profile_rows(await _stored(store))
        assert [t for t, _ in rows] == [FIRST_ROW + timedelta(minutes=15 * i) for i in range(5)]
    # The gateway restarts: a new collector on the same store resumes after 01:00.
    now = FIRST_ROW + timedelta(minutes=105)
    async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
        collector = DlmsCollector(where, [config], StoreSink(store), UTC, state=store, clock=lambda: now)
        await read_once(collector)
        rows = profile_rows(await _stored(store))
        assert [t for t, _ in rows] == [FIRST_ROW + timedelta(minutes=15 * i) for i in range(8)]  # no gap, no twice
        assert rows[-1][1] == Decimal("100175.0")
        assert await store.get_state(f"dlms.profile.m1.{'1.0.99.1.0.255'}") == "2024-01-01T01:45:00+00:00"
        # ... and its invocation counters went on from the stored ones (the meter refuses replays).
        assert int(await store.get_state("dlms.ic.out.4d4d4d0000000001")) == 2000


class MarksLostInACrash:
    """The store as a collector's state, except that the process dies at any separate
    write of a profile mark (after the rows were committed, before their mark)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get_state(self, key):
        return await self.store.get_state(key)

    async def increment_state(self, key, by=1):
        return await self.store.increment_state(key, by)

    async def set_state(self, key, value):
        if key.startswith("dlms.profile."):
            raise StoreError("power cut")
        await self.store.set_state(key, value)


async def test_profile_rows_and_their_mark_are_committed_together_so_no_row_is_stored_twice(start_dlms_meter, tmp_path):
    peer = start_dlms_meter()
    config = meter(tmp_path, profiles=[WHOLE_PROFILE])
    async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
        for _ in range(2):
            collector = DlmsCollector(line(tcp="%s:%d" % peer.address), [config], StoreSink(store), UTC,
                                      state=MarksLostInACrash(store), clock=lambda: FIRST_ROW + timedelta(hours=3))
            await read_once(collector)
        rows = profile_rows(await _stored(store))
        assert [t for t, _ in rows] == [FIRST_ROW + timedelta(minutes=15 * i) for i in range(8)]  # each once
        assert await store.get_state("dlms.profile.m1.1.0.99.1.0.255") == "2024-01-01T01:45:00+00:00"


async def test_every_reading_of_one_read_shares_one_captured_at_and_rows_keep_their_meter_time(
        start_dlms_meter, tmp_path):
    peer = start_dlms_meter()
    ticks = iter(range(10**6))
    sink = ListSink()
    collector = DlmsCollector(line(tcp="%s:%d" % peer.address), [meter(tmp_path, profiles=[WHOLE_PROFILE])], sink, UTC,
                              clock=lambda: FIRST_ROW + timedelta(hours=2, microseconds=next(ticks)))  # never twice the same
    await read_once(collector)
    readings = sink.of(Reading)
    assert len(readings) > 10 and len({r.captured_at for r in readings}) == 1
    assert len({t for t, _ in profile_rows(readings)}) == 8


async def _stored(store: Store) -> list:
    return [stored.record for stored in await store.read_after(0, 10_000)]


async def test_a_small_pdu_size_makes_the_meter_answer_in_blocks_and_the_values_stay_exact(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(auth="gmac", secure=True)
    state = MemoryState()  # shared: the second association goes on with the counters
    continuations, values = [], []
    for size in (0xFFFF, 128):
        sink = ListSink(state)
        config = meter(tmp_path, security="hls-gmac", profiles=[WHOLE_PROFILE], max_pdu_size=size)
        collector = DlmsCollector(line(tcp="%s:%d" % peer.address), [config], sink, UTC, state=state,
                                  clock=lambda: FIRST_ROW + timedelta(hours=2))
        readings = await read_once(collector)
        continuations.append(collector.status()["link"]["continuations"])
        values.append(({r.quantity: r.value for r in readings}["active_energy_import"], profile_rows(sink.records)))
        await state.set_state("dlms.profile.m1.1.0.99.1.0.255", "")  # read the whole profile again
    # HLS pass 3 alone, then HLS pass 3 and GET-next for the profile's blocks.
    assert continuations[0] == 1 and continuations[1] > 1
    assert values[0] == values[1] and values[1][0] == Decimal("123456.7") and len(values[1][1]) == 8


@pytest.mark.parametrize("wrong", ["ak", "ek"])
async def test_a_wrong_key_is_a_security_refusal_with_events_and_no_readings(start_dlms_meter, tmp_path, wrong):
    peer = start_dlms_meter(auth="gmac", secure=True)
    bad = "00" * 16
    keys = key_files(tmp_path, ek=bad if wrong == "ek" else EK, ak=bad if wrong == "ak" else AK)
    sink = ListSink()
    collector = DlmsCollector(line(tcp="%s:%d" % peer.address), [meter(tmp_path, security="hls-gmac", keys=keys)],
                              sink, UTC)
    with pytest.raises(AssociationRefused, match="could not decipher the AARQ") as info:
        await read_once(collector)
    assert bad not in str(info.value) and EK not in str(info.value).upper() and AK not in str(info.value).upper()
    codes = [e.code for e in sink.of(Event)]
    assert codes == ["security.refused", "comm.failed"]
    assert not sink.of(Reading)
    assert collector.status()["meters"]["m1"]["state"] == "failing"


async def test_the_wrong_lls_password_is_refused_as_credentials(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(auth="low")
    sink = ListSink()
    config = meter(tmp_path, security="lls", keys=key_files(tmp_path, password="wrong"))
    with pytest.raises(CredentialsRefused, match="authentication-failure"):
        await read_once(DlmsCollector(line(tcp="%s:%d" % peer.address), [config], sink, UTC))
    assert [e.code for e in sink.of(Event)] == ["security.refused", "comm.failed"]


async def test_a_replayed_ciphered_reply_is_refused(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(auth="gmac", secure=True)
    recorded: dict[int, bytes] = {}

    def replay(connection: int, reply: int, apdu: bytes) -> bytes:
        if connection == 1:
            recorded[reply] = apdu
            return apdu
        # The second association gets the first one's answer to its first GET again.
        return recorded[3] if reply == 3 else apdu

    sink = ListSink()
    async with tampering_proxy(peer.address, replay) as address:
        collector = DlmsCollector(line(tcp=address), [meter(tmp_path, security="hls-gmac")], sink, UTC)
        async with running(collector):
            assert await asyncio.wait_for(collector.read_now("m1"), 30)
            with pytest.raises(DLMSSecurityError, match="replayed APDU"):
                await asyncio.wait_for(collector.read_now("m1"), 30)
    assert [e.code for e in sink.of(Event)] == ["security.refused", "comm.failed"]
    assert sink.of(Event)[0].details["field"] == "invocation-counter"


async def test_a_flipped_tag_byte_is_refused(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(auth="gmac", secure=True)

    def flip(connection: int, reply: int, apdu: bytes) -> bytes:
        return apdu[:-1] + bytes([apdu[-1] ^ 0x01]) if reply == 3 else apdu

    sink = ListSink()
    async with tampering_proxy(peer.address, flip) as address:
        collector = DlmsCollector(line(tcp=address), [meter(tmp_path, security="hls-gmac")], sink, UTC)
        with pytest.raises(DLMSSecurityError, match="authentication tag does not match"):
            await read_once(collector)
    assert [e.code for e in sink.of(Event)] == ["security.refused", "comm.failed"]


async def test_a_frame_cut_short_times_out_instead_of_hanging(start_dlms_meter, tmp_path):
    peer = start_dlms_meter()

    def cut(connection: int, reply: int, apdu: bytes) -> bytes:
        # The header announces the whole APDU; the rest never comes.
        return RawBytes(WrapperMessage(1, 16, apdu).to_bytes()[:-3]) if reply == 2 else apdu

    sink = ListSink()
    async with tampering_proxy(peer.address, cut) as address:
        collector = DlmsCollector(line(tcp=address, response_timeout_ms=300), [meter(tmp_path)], sink, UTC)
        with pytest.raises(DeviceTimeout, match="nothing received within 300 ms"):
            await read_once(collector)
    assert [e.code for e in sink.of(Event)] == ["comm.failed"]


async def test_an_apdu_cut_short_inside_a_whole_frame_is_a_frame_error(start_dlms_meter, tmp_path):
    peer = start_dlms_meter()
    sink = ListSink()
    async with tampering_proxy(peer.address, lambda c, reply, apdu: apdu[:-3] if reply == 2 else apdu) as address:
        collector = DlmsCollector(line(tcp=address), [meter(tmp_path)], sink, UTC)
        with pytest.raises(DLMSFrameError, match="truncated"):
            await read_once(collector)
    assert [e.code for e in sink.of(Event)] == ["comm.failed"]
    assert sink.of(Event)[0].details["reason"] == "frame"


async def test_a_silent_meter_is_a_timeout_and_a_comm_event_never_a_hang(silent_tcp_server, tmp_path):
    sink = ListSink()
    collector = DlmsCollector(line(tcp="%s:%d" % silent_tcp_server, response_timeout_ms=200), [meter(tmp_path)],
                              sink, UTC)
    with pytest.raises(DeviceTimeout, match="nothing received within 200 ms"):
        await read_once(collector)
    assert [e.code for e in sink.of(Event)] == ["comm.failed"]
    assert sink.of(Event)[0].details["reason"] == "timeout"


async def test_a_meter_that_answers_again_raises_comm_recovered(start_dlms_meter, tmp_path):
    peer = start_dlms_meter()
    answering = True

    def gate(connection: int, reply: int, apdu: bytes) -> bytes | None:
        return apdu if answering else None

    sink = ListSink()
    async with tampering_proxy(peer.address, gate) as address:
        collector = DlmsCollector(line(tcp=address, response_timeout_ms=200), [meter(tmp_path)], sink, UTC)
        async with running(collector):
            answering = False
            with pytest.raises(DeviceTimeout):
                await asyncio.wait_for(collector.read_now("m1"), 30)
            answering = True
            assert await asyncio.wait_for(collector.read_now("m1"), 30)
    assert [e.code for e in sink.of(Event)] == ["comm.failed", "comm.recovered"]


async def test_mode_e_opens_the_link_at_300_baud_then_hdlc_follows(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(iface="hdlc")
    heard: list[bytes] = []
    sink = ListSink()
    async with mode_e_opening(peer.address, heard=heard) as address:
        collector = DlmsCollector(line(tcp=address, interface="hdlc", mode_e=True), [meter(tmp_path)], sink, UTC)
        readings = {r.quantity: r.value for r in await read_once(collector)}
    assert heard == [b"/?!\r\n", b"\x06" + b"252\r\n"]  # HDLC procedure, 9600 baud (Z = 5), binary mode
    assert readings["active_energy_import"] == Decimal("123456.7")


async def test_a_meter_without_mode_e_is_a_clear_error(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(iface="hdlc")
    sink = ListSink()
    async with mode_e_opening(peer.address, identification=b"/GRX5GXMETER\r\n") as address:
        collector = DlmsCollector(line(tcp=address, interface="hdlc", mode_e=True), [meter(tmp_path)], sink, UTC)
        with pytest.raises(DLMSError, match="does not offer mode E"):
            await read_once(collector)


async def test_two_meters_share_one_hdlc_line_one_association_at_a_time(request, tmp_path):
    tty = request.getfixturevalue("dlms_meter_serial")
    sink = ListSink()
    meters = [meter(tmp_path, name, server_physical=address) for name, address in (("east", 17), ("west", 18))]
    collector = DlmsCollector(line(port=tty, interface="hdlc"), meters, sink, UTC)
    async with running(collector):
        both = await asyncio.wait_for(asyncio.gather(collector.read_now("east"), collector.read_now("west")), 30)
    assert [[r.value for r in readings if r.quantity == "active_energy_import"] for readings in both] == [
        [Decimal("123456.7")], [Decimal("123456.7")]]
    assert collector.status()["link"]["associations"] == 2


async def test_profile_rows_read_before_a_later_failure_are_kept_and_not_read_again(start_dlms_meter, tmp_path):
    peer = start_dlms_meter()
    state = MemoryState()
    sink = ListSink(state)
    # The gurux meter has no event log: reading it fails after the profile was read.
    config = meter(tmp_path, profiles=[WHOLE_PROFILE], event_logs=["0.0.99.98.0.255"])
    collector = DlmsCollector(line(tcp="%s:%d" % peer.address), [config], sink, UTC, state=state,
                              clock=lambda: FIRST_ROW + timedelta(hours=3))
    async with running(collector):
        for _ in range(2):
            # (gurux answers a GET of an unknown object with a mismatched invoke-id)
            with pytest.raises(DLMSError):
                await asyncio.wait_for(collector.read_now("m1"), 30)
    assert len(profile_rows(sink.records)) == 8  # once, though the meter was read twice
    assert await state.get_state("dlms.profile.m1.1.0.99.1.0.255") == "2024-01-01T01:45:00+00:00"
    assert [e.code for e in sink.of(Event)] == ["comm.failed"]


async def test_a_silent_hdlc_line_repeats_snrm_then_gives_up_with_a_timeout(tmp_path):
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    sink = ListSink()
    try:
        collector = DlmsCollector(line(port=path, interface="hdlc", response_timeout_ms=150, retries=2),
                                  [meter(tmp_path)], sink, UTC)
        with pytest.raises(DeviceTimeout, match="nothing received within 150 ms"):
            await read_once(collector)
        parser = HdlcParser()
        parser.receive_data(os.read(master, 4096))
        frames = []
        while (frame := parser.next_frame()) is not None:
            frames.append(frame.kind)
    finally:
        os.close(master)
        os.close(slave)
    assert frames[:3] == ["SNRM", "SNRM", "SNRM"]  # the first and two repeats
    assert [e.code for e in sink.of(Event)] == ["comm.failed"]
