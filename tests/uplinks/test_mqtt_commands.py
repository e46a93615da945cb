"""Commands from the HES over MQTT 5 request/response, against a real Mosquitto: each is
answered on the request's response topic with its correlation data, and none can stop the
uplink or hold up delivery."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from gateway.config import MqttUplink, StoreSection
from gateway.errors import DeviceTimeout
from gateway.model import Reading
from gateway.store import Store
from gateway.uplinks.mqtt import MqttPublisher
from tests.mqtt_broker import Subscriber
from tests.store_helpers import Clock
from tests.uplinks.conftest import GATEWAY, T0, eventually, no_status, readings, requester, running, verified
from tests.uplinks.test_mqtt import DATA, batch_of, covers, data_messages, seqs_of

pytestmark = pytest.mark.integration


async def fake_read(meter: str) -> list[Reading]:
    """The integrator's on-demand read, standing in for a collector."""
    if meter == "silent":
        raise DeviceTimeout("meter silent did not answer within 1.5 s")
    if meter != "heat-1":
        raise KeyError(f"no meter is named {meter!r}")
    return [Reading(device="KAM-12345678-1b-04", quantity="energy", value=Decimal("1234.567"), unit="kWh",
                    captured_at=T0, obis="1-0:1.8.0*255")]


async def test_ping_is_answered_on_the_response_topic_with_the_correlation_data(mosquitto, make_publisher) -> None:
    publisher = make_publisher(mosquitto.url)
    async with requester(mosquitto) as hes, running(publisher):
        await eventually(lambda: publisher.counters.connected)
        await hes.send("ping", {}, correlation=b"\x00corr-1\xff")
        message = await hes.response(b"\x00corr-1\xff")
    answer = json.loads(message.payload)
    assert str(message.topic) == hes.response_topic
    assert message.properties.CorrelationData == b"\x00corr-1\xff"
    assert answer["ok"] is True
    assert answer["result"]["pong"] is True
    assert set(answer["result"]) >= {"time", "version"}


async def test_status_returns_the_status_document(mosquitto, make_publisher) -> None:
    async def status():
        return {"buses": {"bus1": {"ok": True}}}

    publisher = make_publisher(mosquitto.url, status=status)
    async with requester(mosquitto) as hes, running(publisher):
        answer = await ask_when_ready(hes, publisher, "status")
    assert answer["ok"] is True
    assert answer["result"]["buses"] == {"bus1": {"ok": True}}
    assert answer["result"]["uplinks"]["mqtt"]["connected"] is True


async def test_read_returns_the_readings_of_the_on_demand_read(mosquitto, make_publisher) -> None:
    publisher = make_publisher(mosquitto.url, on_demand_read=fake_read)
    async with requester(mosquitto) as hes, running(publisher):
        answer = await ask_when_ready(hes, publisher, "read", {"meter": "heat-1"})
        unknown = await hes.ask("read", {"meter": "nope"})
        silent = await hes.ask("read", {"meter": "silent"})
        missing = await hes.ask("read", {})
    assert answer == {"ok": True, "result": {"meter": "heat-1", "readings": [{
        "seq": None, "kind": "reading", "device": "KAM-12345678-1b-04", "quantity": "energy",
        "obis": "1-0:1.8.0*255", "value": "1234.567", "unit": "kWh", "meter_time": None,
        "captured_at": "2024-05-01T12:00:00+00:00", "status": None, "point": None,
        "metrological": None, "protection": None, "flags": []}]}}
    assert unknown == {"ok": False, "error": "no meter is named 'nope'"}
    assert silent == {"ok": False, "error": "meter silent did not answer within 1.5 s"}
    assert missing == {"ok": False, "error": "missing argument 'meter' (a non-empty string)"}


async def test_read_without_an_on_demand_reader_says_so(mosquitto, make_publisher) -> None:
    publisher = make_publisher(mosquitto.url)
    async with requester(mosquitto) as hes, running(publisher):
        answer = await ask_when_ready(hes, publisher, "read", {"meter": "heat-1"})
    assert answer == {"ok": False, "error": "on-demand reads are not available on this gateway"}


async def test_replay_sends_a_range_again_with_the_same_seqs_without_moving_the_cursor(
        mosquitto, store, make_publisher, signing_key, public_jwk) -> None:
    await store.append(readings(300))
    publisher = make_publisher(mosquitto.url, batch_size=40)
    async with Subscriber(mosquitto, DATA) as sub, requester(mosquitto) as hes, running(publisher):
        first = data_messages(await sub.wait_for(covers(300)))
        await eventually(lambda: publisher.counters.cursor == 300)
        answer = await hes.ask("replay", {"from_seq": 101, "to_seq": 180})
        everything = data_messages(await sub.wait_for(lambda ms: len(seqs_of(ms)) >= 380))
        cursor = await store.cursor("mqtt")
    assert answer == {"ok": True, "result": {"from_seq": 101, "to_seq": 180, "records": 80, "messages": 2}}
    again = everything[len(first):]
    assert seqs_of(again) == list(range(101, 181))
    originals = {r["seq"]: r for m in first for r in batch_of(m)["records"]}
    assert all(r == originals[r["seq"]] for m in again for r in verified(m, public_jwk, signing_key.kid)["records"])
    assert cursor == 300 and publisher.counters.records_replayed == 80


async def test_replay_to_the_end_and_its_refusals(mosquitto, store, make_publisher) -> None:
    await store.append(readings(50))
    publisher = make_publisher(mosquitto.url)
    async with requester(mosquitto) as hes, running(publisher):
        to_end = await ask_when_ready(hes, publisher, "replay", {"from_seq": 41})
        beyond = await hes.ask("replay", {"from_seq": 51})
        zero = await hes.ask("replay", {"from_seq": 0})
        backwards = await hes.ask("replay", {"from_seq": 20, "to_seq": 10})
        text = await hes.ask("replay", {"from_seq": "1"})
    assert to_end == {"ok": True, "result": {"from_seq": 41, "to_seq": 50, "records": 10, "messages": 1}}
    assert beyond == {"ok": False, "error": "nothing stored from seq 51: the last seq is 50"}
    assert zero == {"ok": False, "error": "argument 'from_seq' must be at least 1"}
    assert backwards == {"ok": False, "error": "argument 'to_seq' must be at least 20"}
    assert text == {"ok": False, "error": "argument 'from_seq' must be an integer"}


async def test_replay_older_than_retention_names_the_oldest_stored_seq(mosquitto, tmp_path, signing_key) -> None:
    clock = Clock(T0)
    async with Store(tmp_path / "aged.sqlite", StoreSection(max_age_days=1), clock=clock) as store:
        await store.append(readings(30))
        clock.advance(days=2)
        await store.append(readings(5, start=30))
        await store.enforce_retention()  # drops seqs 1..30 and records a store.dropped event
        publisher = MqttPublisher(MqttUplink(url=mosquitto.url), gateway_id=GATEWAY, store=store,
                                  signer=signing_key, status=no_status)
        async with requester(mosquitto) as hes, running(publisher):
            answer = await ask_when_ready(hes, publisher, "replay", {"from_seq": 5, "to_seq": 33})
    assert answer == {"ok": False, "error": "seq 5 is no longer stored (retention); the oldest stored seq is 31"}


async def test_unknown_commands_and_malformed_requests_get_errors_and_the_uplink_carries_on(
        mosquitto, store, make_publisher) -> None:
    publisher = make_publisher(mosquitto.url)
    async with Subscriber(mosquitto, DATA) as sub, requester(mosquitto) as hes, running(publisher):
        unknown = await ask_when_ready(hes, publisher, "reboot", {})
        malformed = await hes.ask("ping", b"{not json")
        binary = await hes.ask("ping", b"\xff\xfe")
        array = await hes.ask("ping", b"[1, 2]")
        await store.append(readings(5))
        await sub.wait_for(covers(5))
        still = await hes.ask("ping")
    assert unknown == {"ok": False, "error": "unknown command 'reboot' (known: ping, read, replay, status)"}
    assert malformed["ok"] is False and malformed["error"].startswith("malformed JSON request")
    assert binary["ok"] is False and binary["error"].startswith("malformed JSON request")
    assert array == {"ok": False, "error": "the request must be a JSON object, not list"}
    assert still["ok"] is True
    assert publisher.counters.commands == 5 and publisher.counters.command_errors == 4
    assert publisher.counters.connects == 1


async def test_a_request_without_response_topic_is_answered_on_the_gateways_responses_topic(
        mosquitto, make_publisher) -> None:
    publisher = make_publisher(mosquitto.url)
    async with Subscriber(mosquitto, f"metering/{GATEWAY}/responses/#") as responses, \
            requester(mosquitto) as hes, running(publisher):
        await ask_when_ready(hes, publisher, "ping")
        await hes.send("ping", {}, response_topic=None, correlation=b"c-7")
        messages = await responses.wait_for(lambda ms: len(ms) >= 1)
    assert str(messages[0].topic) == f"metering/{GATEWAY}/responses/ping"
    assert messages[0].properties.CorrelationData == b"c-7"
    assert json.loads(messages[0].payload)["ok"] is True


async def test_a_slow_command_holds_up_neither_delivery_nor_other_commands(mosquitto, store, make_publisher) -> None:
    release = asyncio.Event()

    async def slow_read(meter: str) -> list[Reading]:
        await release.wait()
        return []

    publisher = make_publisher(mosquitto.url, on_demand_read=slow_read)
    async with Subscriber(mosquitto, DATA) as sub, requester(mosquitto) as hes, running(publisher):
        await ask_when_ready(hes, publisher, "ping")
        await hes.send("read", {"meter": "heat-1"}, correlation=b"slow")
        await eventually(lambda: publisher.counters.commands == 2)
        await store.append(readings(20))
        await sub.wait_for(covers(20))  # delivered while the read is pending
        pong = await hes.ask("ping")
        assert b"slow" not in hes.responses
        release.set()
        slow = json.loads((await hes.response(b"slow")).payload)
    assert pong["ok"] is True
    assert slow == {"ok": True, "result": {"meter": "heat-1", "readings": []}}


async def ask_when_ready(hes, publisher, command: str, payload=b"") -> dict:
    """The first request of a test, sent once the uplink counts as connected (it has
    subscribed to commands by then)."""
    await eventually(lambda: publisher.counters.connected)
    return await hes.ask(command, payload)
