"""The wireless M-Bus receiver against simulated dongles on a pseudo-terminal: initialisation,
decryption, exact readings, duplicates, garbage, unknown meters, security refusals (one
event, not one per telegram), watchdogs; and the naming rule it shares with wired M-Bus."""

from __future__ import annotations

import asyncio
import shutil
import socket
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from gateway.app import StoreSink, build_collectors
from gateway.codecs.mbus.application import Header, decode_response, encode
from gateway.codecs.mbus.dongles import ReceivedTelegram
from gateway.codecs.mbus.wireless import WMBusDecoder
from gateway.codecs.mbus.wireless_link import decode_frame
from gateway.codecs.mbus.wmbus_security import AesKey
from gateway.collectors.mbus import readings_from_readout
from gateway.collectors.mbus_master import Readout, Telegram
from gateway.collectors.wmbus import NotHeardYet, WMBusReceiver
from gateway.collectors.wmbus_telegrams import DuplicateFilter, Sightings, interpret, readings_of
from gateway.config import StoreSection, WMBusDongle, parse_config
from gateway.errors import ConfigError, TransportError
from gateway.model import Reading
from gateway.simulators.wmbus import DONGLES, AmberDongle, Faults, serve_dongle
from gateway.store import Store

from tests.codecs.mbus.wmbus_builders import mode5_telegram, mode7_telegram
from tests.collectors.wmbus_helpers import (
    BERLIN,
    KEY,
    METER_CLOCK,
    OTHER_KEY,
    ListSink,
    dongle_config,
    key_file,
    meter_config,
    model,
    receiving,
    telegram_number,
    until,
)

pytestmark = pytest.mark.integration

FRAMINGS = sorted(DONGLES)
GARBAGE = 13


def scenario(tmp_path):
    """Meters on the air and the configuration that knows some of them."""
    meters = {
        "good": model("11111111", KEY),  # encrypted, key configured
        "plain": model("22222222", status=0x04),  # plaintext, configured without a key; power low
        "stranger": model("33333333"),  # plaintext, not configured
        "secret": model("44444444", OTHER_KEY),  # encrypted, not configured
        "wrong": model("55555555", OTHER_KEY),  # configured with another key
        "downgraded": model("66666666"),  # plaintext although a key is configured
        "keyless": model("88888888", OTHER_KEY),  # encrypted, configured without a key
    }
    key = key_file(tmp_path, "good.key")
    configured = [
        meter_config("good", "11111111", key_file=key),
        meter_config("plain", "22222222"),
        meter_config("wrong", "55555555", key_file=key),
        meter_config("downgraded", "66666666", key_file=key),
        meter_config("keyless", "88888888"),
    ]
    return meters, configured


@pytest.mark.parametrize("dongle", FRAMINGS)
async def test_a_dongle_is_initialised_and_its_telegrams_become_exact_readings_refusals_and_sightings(tmp_path, dongle):
    meters, configured = scenario(tmp_path)
    sink = ListSink()
    async with serve_dongle(DONGLES[dongle](), meters.values(), Faults(garbage=GARBAGE, repeat=True)) as server:
        receiver = WMBusReceiver.from_config(dongle_config(server.path, dongle), configured, sink, BERLIN)
        async with receiving(receiver):
            await until(lambda: len({r.raw for r in sink.readings("GWY-11111111-01-07")}) >= 3
                        and receiver.status()["meters"]["wrong"]["security_refusals"] >= 3
                        and receiver.status()["meters"]["downgraded"]["security_refusals"] >= 2
                        and receiver.status()["meters"]["keyless"]["security_refusals"] >= 2
                        and len(receiver.unknown) == 2)
    status = receiver.status()
    counters = status["counters"]

    # The initialisation was exchanged: the dongle received in T1 only after being told to.
    assert server.dongle.inits == 1 and server.dongle.commands[-1] == "set mode T1"
    assert status["dongle"]["open"] is False and status["dongle"]["type"] == dongle

    # Encrypted telegrams decrypted with the key: each telegram's exact values.
    good = meters["good"]
    by_telegram: dict[int, dict[str, Reading]] = {}
    for reading in sink.readings("GWY-11111111-01-07"):
        by_telegram.setdefault(telegram_number(good, reading.raw), {})[reading.quantity] = reading
    for number, readings in by_telegram.items():
        assert set(readings) == {"volume", "volume_flow", "time_point_date_and_time", "volume;storage=1"}
        assert readings["volume"].value == good.volume_at(number) and readings["volume"].unit == "m^3"
        assert readings["volume;storage=1"].value == Decimal("123.456")
        assert readings["time_point_date_and_time"].value == METER_CLOCK.replace(tzinfo=BERLIN)
        assert all(r.meter_time == METER_CLOCK.replace(tzinfo=BERLIN) and r.status == "00" for r in readings.values())
    assert all(isinstance(r.value, Decimal) for t in by_telegram.values() for q, r in t.items() if q != "time_point_date_and_time")

    # Every telegram was delivered twice: stored once, the repeat counted.
    volumes = [(r.device, r.raw) for r in sink.readings() if r.quantity == "volume"]
    assert len(volumes) == len(set(volumes))
    assert counters["duplicates"] >= counters["frames"] // 2 - 1 > 0
    assert counters["garbage_bytes"] >= GARBAGE * (counters["frames"] // 2)
    assert counters["crc_errors"] == counters["frame_errors"] == 0

    # The plaintext meter configured without a key is stored too, its status byte untouched.
    plain = sink.readings("GWY-22222222-01-07")
    assert {r.value for r in plain if r.quantity == "volume;storage=1"} == {Decimal("123.456")}
    assert {r.status for r in plain} == {"04"}

    # Unknown meters are listed, not stored.
    unknown = {s["id"]: s for s in status["unknown_meters"]}
    assert set(unknown) == {"33333333", "44444444"}
    assert unknown["33333333"]["encrypted"] is False and unknown["44444444"]["encrypted"] is True
    assert unknown["44444444"]["rssi_dbm"] == -60 and unknown["44444444"]["telegrams"] >= 1
    assert not sink.readings("GWY-33333333-01-07") and not sink.readings("GWY-44444444-01-07")

    # Refusals: counted per meter, one event per meter (not one per telegram), no key in it.
    refused = sink.events("security.refused")
    assert sorted(e.details["meter"] for e in refused) == ["downgraded", "keyless", "wrong"]
    details = {e.details["meter"]: e.details for e in refused}
    assert details["wrong"]["reason"] == "authentication_failed" and details["downgraded"]["reason"] == "plaintext"
    assert details["keyless"]["reason"] == "no_key" and all(d["count"] == 1 for d in details.values())
    assert all(KEY not in e.message and KEY.lower() not in e.message for e in refused)
    assert status["meters"]["wrong"]["state"] == "failing" and status["meters"]["good"]["state"] == "ok"
    assert counters["security_refusals"] == sum(m["security_refusals"] for m in status["meters"].values())
    assert not [r for r in sink.readings() if r.device.split("-")[1] in ("55555555", "66666666", "88888888")]


async def test_an_amber_module_in_transparent_mode_without_rssi_is_read_as_it_is_configured(tmp_path):
    good = model("11111111", KEY)
    sink = ListSink()
    async with serve_dongle(AmberDongle(command_output=False, rssi=False), [good]) as server:
        config = [meter_config("good", "11111111", key_file=key_file(tmp_path, "k"))]
        receiver = WMBusReceiver(dongle_config(server.path, "amber", mode="c1+t1"), config, sink, BERLIN)
        async with receiving(receiver):
            await until(lambda: len(sink.readings()) >= 8)
    assert server.dongle.commands == ["get 0x05", "get 0x45", "set mode C1+T1"]
    assert receiver.status()["dongle"]["output"] == "transparent" and receiver.status()["dongle"]["rssi"] == "off"
    assert {r.quantity for r in sink.readings()} >= {"volume", "volume;storage=1"}


async def test_plaintext_telegrams_of_unknown_meters_are_stored_when_store_unknown_is_set():
    sink = ListSink()
    async with serve_dongle(DONGLES["imst"](), [model("33333333"), model("44444444", OTHER_KEY)]) as server:
        receiver = WMBusReceiver(dongle_config(server.path, "imst", store_unknown=True), [], sink, BERLIN)
        async with receiving(receiver):
            await until(lambda: len(receiver.unknown) == 2 and sink.readings())
    assert {r.device for r in sink.readings()} == {"GWY-33333333-01-07"}


async def test_readings_go_through_a_real_store_with_their_raw_telegram(tmp_path):
    good = model("11111111", KEY)
    config = [meter_config("good", "11111111", key_file=key_file(tmp_path, "k"))]
    async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
        async with serve_dongle(DONGLES["cul"](), [good]) as server:
            receiver = WMBusReceiver(dongle_config(server.path, "cul"), config, StoreSink(store), BERLIN)
            async with receiving(receiver):
                await until(lambda: receiver.counters["readings"] >= 8)
        stored = [s.record for s in await store.read_after(0, 100)]
    readings = [r for r in stored if isinstance(r, Reading)]
    assert len(readings) == receiver.counters["readings"]
    for reading in readings:
        assert reading.device == "GWY-11111111-01-07" and reading.captured_at.tzinfo is not None
        if reading.quantity == "volume":
            assert reading.value == good.volume_at(telegram_number(good, reading.raw))


async def test_a_silent_dongle_is_reopened_and_initialised_again_with_a_dongle_reset_event():
    sink = ListSink()
    async with serve_dongle(DONGLES["imst"](), [model("22222222")]) as server:
        bus = dongle_config(server.path, "imst", silence_timeout_s=0.5)
        receiver = WMBusReceiver(bus, [meter_config("plain", "22222222")], sink, BERLIN, tick_s=0.1)
        async with receiving(receiver):
            await until(lambda: sink.readings())
            server.silent = True
            await until(lambda: sink.events("dongle.reset"))
            server.silent = False
            heard = len(sink.readings())
            await until(lambda: len(sink.readings()) > heard)
    reset = sink.events("dongle.reset")[0]
    assert reset.details["silent_s"] >= 0 and reset.details["resets"] == 1 and reset.source == "radio"
    assert server.dongle.inits == 1 + receiver.counters["dongle_resets"]


async def test_a_dongle_that_stalls_for_a_while_by_itself_is_reset_and_heard_again():
    sink = ListSink()
    faults = Faults(silent_after_s=0.6, silent_for_s=1.2)
    async with serve_dongle(DONGLES["amber"](), [model("22222222")], faults) as server:
        bus = dongle_config(server.path, "amber", silence_timeout_s=0.5)
        receiver = WMBusReceiver(bus, [meter_config("plain", "22222222")], sink, BERLIN, tick_s=0.1)
        async with receiving(receiver):
            await until(lambda: sink.events("dongle.reset"))
            heard = len(sink.readings())
            await until(lambda: len(sink.readings()) > heard)
    assert receiver.counters["dongle_resets"] >= 1 and server.dongle.inits >= 2


async def test_a_meter_that_stops_transmitting_fails_as_not_heard_and_then_recovers(tmp_path):
    sink = ListSink()
    quiet = model("22222222")
    async with serve_dongle(DONGLES["cul"](), [quiet]) as server:
        meters = [meter_config("plain", "22222222", expected_interval_s=0.15, not_heard_after=3),
                  meter_config("absent", "77777777", expected_interval_s=0.15, not_heard_after=2)]
        receiver = WMBusReceiver(dongle_config(server.path, "cul"), meters, sink, BERLIN, tick_s=0.05)
        async with receiving(receiver):
            await until(lambda: sink.readings())
            quiet.muted = True
            await until(lambda: any(e.details["meter"] == "plain" for e in not_heard_events(sink)))
            assert receiver.status()["meters"]["plain"]["not_heard"] is True
            quiet.muted = False
            await until(lambda: sink.events("comm.recovered"))
    not_heard = {e.details["meter"]: e for e in not_heard_events(sink)}
    assert not_heard["absent"].details["last_heard"] == "never" and not_heard["absent"].device is None
    assert not_heard["plain"].details["last_heard"] != "never" and not_heard["plain"].device == "GWY-22222222-01-07"
    assert len([e for e in not_heard_events(sink) if e.details["meter"] == "plain"]) == 1
    (recovered,) = sink.events("comm.recovered")
    assert recovered.details["meter"] == "plain" and receiver.status()["meters"]["plain"]["not_heard"] is False


def not_heard_events(sink):
    return [e for e in sink.events("comm.failed") if e.details["reason"] == "not_heard"]


async def test_refusals_after_the_first_event_are_summarised_at_most_once_per_interval_with_their_count(tmp_path):
    sink = ListSink()
    async with serve_dongle(DONGLES["imst"](), [model("55555555", OTHER_KEY, interval_s=0.05)]) as server:
        config = [meter_config("wrong", "55555555", key_file=key_file(tmp_path, "k"), expected_interval_s=0.15,
                               not_heard_after=2)]
        receiver = WMBusReceiver(dongle_config(server.path, "imst"), config, sink, BERLIN,
                                 security_event_interval_s=0.6, tick_s=0.05)
        async with receiving(receiver):
            await until(lambda: len(sink.events("security.refused")) >= 2)
    # A refused telegram is still the meter heard: it fails for security, never as not heard.
    assert not not_heard_events(sink) and receiver.status()["meters"]["wrong"]["not_heard"] is False
    first, second = sink.events("security.refused")[:2]
    assert first.details["count"] == 1 and second.details["count"] > 1
    assert second.details["total"] == first.details["count"] + second.details["count"]
    assert (second.occurred_at - first.occurred_at).total_seconds() > 0


async def test_read_now_answers_the_last_telegram_heard_and_refuses_before_any(tmp_path):
    sink = ListSink()
    async with serve_dongle(DONGLES["amber"](), [model("11111111", KEY)]) as server:
        config = [meter_config("good", "11111111", key_file=key_file(tmp_path, "k"))]
        receiver = WMBusReceiver(dongle_config(server.path, "amber"), config, sink, BERLIN)
        with pytest.raises(NotHeardYet, match="has been decoded since the gateway started"):
            await receiver.read_now("good")
        with pytest.raises(KeyError):
            await receiver.read_now("nobody")
        async with receiving(receiver):
            await until(lambda: sink.readings())
            latest = sink.readings()[-1].raw
            readings = await receiver.read_now("good")  # answered from memory: nothing runs meanwhile
    assert readings == [r for r in sink.readings() if r.raw == latest]
    assert {r.quantity for r in readings} == {"volume", "volume_flow", "time_point_date_and_time", "volume;storage=1"}


async def test_two_dongles_hearing_one_telegram_store_it_once():
    sink = ListSink()
    # Two radios hear the same meter: identical models started together send identical telegrams.
    first, second = model("22222222", interval_s=0.2), model("22222222", interval_s=0.2)
    async with serve_dongle(DONGLES["imst"](), [first]) as one, serve_dongle(DONGLES["cul"](), [second]) as two:
        receivers = [WMBusReceiver(dongle_config(one.path, "imst", name="radio1"),
                                   [meter_config("m1", "22222222", bus="radio1")], sink, BERLIN),
                     WMBusReceiver(dongle_config(two.path, "cul", name="radio2"),
                                   [meter_config("m2", "22222222", bus="radio2")], sink, BERLIN)]
        async with receiving(receivers[0]), receiving(receivers[1]):
            await until(lambda: all(r.counters["decoded"] >= 4 for r in receivers))
    stored = [decode_frame(r.raw, frame_format="auto").to_bytes() for r in sink.readings() if r.quantity == "volume"]
    assert len(stored) == len(set(stored)) >= 3
    assert sum(r.counters["duplicates"] for r in receivers) >= 2


OMS_KEY = bytes(range(16))


def radio(tmp_path, window_s: float = 0) -> tuple[WMBusDongle, list]:
    """A dongle that keeps no duplicate window (a telegram sent again counts as new) and the
    OMS example meter (ELS 12345678) with its key."""
    kf = key_file(tmp_path, "oms.key", OMS_KEY.hex())
    return dongle_config("/dev/null", "imst", duplicate_window_s=window_s), [meter_config("water", "12345678", key_file=kf)]


async def hear(receiver: WMBusReceiver, frame: bytes) -> None:
    receiver._load_keys()
    await receiver._handle(ReceivedTelegram(frame))


async def test_a_replayed_mode7_telegram_is_refused_because_its_message_counter_did_not_grow(tmp_path):
    sink = ListSink()
    receiver = WMBusReceiver(*radio(tmp_path), sink, BERLIN)
    accepted = []
    for counter in (10, 11, 11, 9, 12):
        before = len(sink.readings())
        await hear(receiver, mode7_telegram(OMS_KEY, counter=counter))
        accepted.append(len(sink.readings()) > before)
    assert accepted == [True, True, False, False, True]
    assert receiver.counters["security_refusals"] == 2
    (event,) = sink.events("security.refused")  # the second refusal waits for the hourly summary
    assert event.details["reason"] == "replay" and "message counter 11 is not above 11" in event.message
    assert sink.saved == {"wmbus.mcr.ELS-12345678-33-03": "12"}  # committed with the readings


def test_the_last_message_counter_is_kept_in_the_store_across_a_restart(tmp_path):
    async def life(counters) -> list[bool]:
        async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
            sink = StoreSink(store)
            receiver = WMBusReceiver(*radio(tmp_path), sink, BERLIN, state=store)
            heard = []
            for counter in counters:
                before = receiver.counters["readings"]
                await hear(receiver, mode7_telegram(OMS_KEY, counter=counter))
                heard.append(receiver.counters["readings"] > before)
            return heard

    # each life in an event loop of its own, as a restarted gateway has
    assert asyncio.run(life([10, 20])) == [True, True]
    assert asyncio.run(life([20, 15, 21])) == [False, False, True]


async def test_mode5_telegrams_carry_no_counter_and_a_wrapping_access_number_is_no_replay(tmp_path):
    sink = ListSink()
    receiver = WMBusReceiver(*radio(tmp_path), sink, BERLIN)
    for access in (0xFE, 0xFF, 0x00, 0x01):
        await hear(receiver, mode5_telegram(OMS_KEY, access=access))
    assert receiver.counters["decoded"] == 4 and receiver.counters["security_refusals"] == 0
    assert sink.saved == {}


async def test_a_dongle_that_does_not_answer_its_initialisation_fails_the_run_with_the_reason():
    async with serve_dongle(DONGLES["imst"](), [model("22222222")]) as server:
        receiver = WMBusReceiver(dongle_config(server.path, "cul"), [], ListSink(), BERLIN)
        with pytest.raises(TransportError, match=r"the cul dongle did not answer V \(version\) within 2 s"):
            await receiver.run()


async def test_an_unusable_key_file_stops_the_bus_with_a_config_error(tmp_path):
    readable = key_file(tmp_path, "k", mode=0o644)
    receiver = WMBusReceiver(dongle_config("/dev/null", "imst"), [meter_config("m", "11111111", key_file=readable)],
                             ListSink(), BERLIN)
    with pytest.raises(ConfigError, match="readable by other users"):
        await receiver.run()


def test_the_app_builds_a_wireless_receiver_for_a_wmbus_bus(tmp_path):
    config = parse_config(f"""
[gateway]
id = "gw"
state_dir = "{tmp_path}"
[[buses]]
name = "radio"
protocol = "wmbus"
port = "/dev/ttyUSB9"
dongle = "amber"
[[meters]]
name = "water"
protocol = "wmbus"
bus = "radio"
id = "11111111"
expected_interval_s = 120
""")
    (collector,) = build_collectors(config, StoreSink(None))
    assert isinstance(collector, WMBusReceiver) and collector.meters() == ["water"]
    assert collector.line.baud == 9600 and collector.status()["meters"]["water"]["last_heard"] is None


# -- the naming rule, shared with wired M-Bus ----------------------------------------------------

def test_a_wired_frame_and_the_same_records_heard_wirelessly_give_the_same_readings():
    meter = model("12345678", KEY, manufacturer="KAM", version=0x1B)
    records = meter.records_at(5)
    wired = decode_response(encode(Header("12345678", "KAM", 0x1B, 0x07, 5, 0), records))
    from_wire = readings_from_readout(Readout(1, (Telegram(wired.frame, wired.response),)), BERLIN, METER_CLOCK.replace(tzinfo=timezone.utc))
    received = ReceivedTelegram(meter.telegram_at(5))
    heard = interpret(received, decode_frame(received.frame), WMBusDecoder(), AesKey.from_hex(KEY))
    from_air = readings_of(heard, BERLIN, METER_CLOCK.replace(tzinfo=timezone.utc))
    assert [(r.device, r.quantity, r.value, r.unit, r.meter_time, r.status) for r in from_air] == \
           [(r.device, r.quantity, r.value, r.unit, r.meter_time, r.status) for r in from_wire]
    assert [r.quantity for r in from_air] == ["volume", "volume_flow", "time_point_date_and_time", "volume;storage=1"]


# -- the receiver's bookkeeping -------------------------------------------------------------------

def test_a_duplicate_is_remembered_for_its_window_only():
    seen = DuplicateFilter()
    assert seen.seen("a", 0.0, 10.0) is False
    assert seen.seen("a", 9.9, 10.0) is True
    assert seen.seen("a", 10.0, 10.0) is False  # the window has passed: a new telegram
    assert seen.seen("b", 10.5, 10.0) is False and len(seen) == 2
    seen.seen("c", 30.0, 10.0)
    assert len(seen) == 1  # expired entries are dropped, memory stays bounded
    seen.forget("c")
    assert seen.seen("c", 30.1, 10.0) is False


def test_a_long_window_in_front_does_not_keep_an_expired_short_one_alive():
    seen = DuplicateFilter()
    seen.seen("long", 0.0, 100.0)
    seen.seen("short", 0.0, 1.0)
    assert seen.seen("short", 2.0, 1.0) is False


def test_the_table_of_meters_heard_is_bounded_and_keeps_the_most_recent():
    sightings = Sightings(limit=3)
    decoder = WMBusDecoder()
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for n in range(5):
        frame = model(f"{n:08d}").telegram_at(1)
        sightings.note(interpret(ReceivedTelegram(frame), decode_frame(frame), decoder, None), at)
    assert [s.address.identification for s in sightings] == ["00000002", "00000003", "00000004"]


async def test_a_dongle_behind_a_tcp_serial_server_is_received_the_same_way(tmp_path):
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is not installed (apt-get install socat)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = ListSink()
    async with serve_dongle(DONGLES["imst"](), [model("11111111", KEY)]) as server:
        relay = await asyncio.create_subprocess_exec(
            socat, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"FILE:{server.path},raw,echo=0")
        try:
            await until(lambda: _listening(port))
            bus = WMBusDongle(name="radio", protocol="wmbus", tcp=f"127.0.0.1:{port}", dongle="imst")
            receiver = WMBusReceiver(bus, [meter_config("good", "11111111", key_file=key_file(tmp_path, "k"))],
                                     sink, BERLIN)
            async with receiving(receiver):
                await until(lambda: len(sink.readings()) >= 8)
        finally:
            relay.terminate()
            await relay.wait()
    assert receiver.status()["dongle"]["tcp"] == f"127.0.0.1:{port}" and server.dongle.inits == 1
    assert {r.device for r in sink.readings()} == {"GWY-11111111-01-07"}


def _listening(port: int) -> bool:
    """Whether a TCP port on loopback is listening (without connecting to it)."""
    with open("/proc/net/tcp") as table:
        return any(line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A" for line in table.readlines()[1:])
