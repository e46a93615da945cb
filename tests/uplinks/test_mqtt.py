"""The MQTT uplink against a real Mosquitto: signed delivery from a real Store, outages,
the last will, the retained status and the broker's limits."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import aiomqtt
import pytest

from gateway.payload import record_json
from gateway.uplinks import mqtt as uplink_mqtt
from tests.mqtt_broker import MosquittoBroker, SilentServer, Subscriber, TcpProxy, running_broker
from tests.uplinks.conftest import GATEWAY, eventually, event, readings, running, verified

pytestmark = pytest.mark.integration

DATA = f"metering/{GATEWAY}/+"
STATUS = f"metering/{GATEWAY}/status"


def batch_of(message: aiomqtt.Message) -> dict[str, Any]:
    """The batch inside a data message, unverified (for quick predicates)."""
    encoded = json.loads(message.payload)["payload"]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def data_messages(messages: list[aiomqtt.Message]) -> list[aiomqtt.Message]:
    return [m for m in messages if not str(m.topic).endswith("/status")]


def seqs_of(messages: list[aiomqtt.Message]) -> list[int]:
    return [record["seq"] for m in data_messages(messages) for record in batch_of(m)["records"]]


def covers(last_seq: int):
    return lambda messages: set(seqs_of(messages)) >= set(range(1, last_seq + 1))


def statuses(messages: list[aiomqtt.Message]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if str(m.topic) == STATUS and m.payload]


async def test_stored_records_arrive_signed_in_order_on_their_topics(mosquitto, store, make_publisher,
                                                                     signing_key, public_jwk) -> None:
    await store.append(readings(250))
    await store.append([event()])
    await store.append(readings(300, start=250))
    publisher = make_publisher(mosquitto.url, batch_size=100)
    async with Subscriber(mosquitto, DATA) as sub, running(publisher):
        await store.append(readings(149, start=550))  # arrives while the uplink waits
        messages = data_messages(await sub.wait_for(covers(700)))
        await eventually(lambda: publisher.counters.cursor == 700)

    batches = [(str(m.topic), verified(m, public_jwk, signing_key.kid)) for m in messages]
    seqs = [record["seq"] for _, batch in batches for record in batch["records"]]
    assert sorted(seqs) == list(range(1, 701))  # no loss, no duplicate
    for name in ("readings", "events"):  # in order on each topic
        on_topic = [r["seq"] for topic, batch in batches if topic.endswith(name) for r in batch["records"]]
        assert on_topic == sorted(on_topic)
    assert [topic for topic, batch in batches if batch["records"][0]["seq"] == 251] == [f"metering/{GATEWAY}/events"]
    for topic, batch in batches:
        assert batch["gateway"] == GATEWAY
        assert (batch["first_seq"], batch["last_seq"]) == (batch["records"][0]["seq"], batch["records"][-1]["seq"])
        assert len(batch["records"]) <= 100
        assert topic.endswith("/events") == (batch["first_seq"] == 251)
    stored = {s.seq: record_json(s) for s in await store.read_after(0, 1000)}
    assert all(record == stored[record["seq"]] for _, batch in batches for record in batch["records"])
    assert await store.cursor("mqtt") == 700


async def test_a_restarted_publisher_resumes_from_the_cursor(mosquitto, store, make_publisher) -> None:
    await store.append(readings(120))
    first, second = make_publisher(mosquitto.url, batch_size=50), make_publisher(mosquitto.url, batch_size=50)
    async with Subscriber(mosquitto, DATA) as sub:
        async with running(first) as task:
            await sub.wait_for(covers(120))
            await eventually(lambda: first.counters.cursor == 120)
        assert task.cancelled()
        assert await store.cursor("mqtt") == 120
        await store.append(readings(30, start=120))
        async with running(second):
            messages = await sub.wait_for(covers(150))
            await eventually(lambda: second.counters.cursor == 150)
    assert seqs_of(messages) == list(range(1, 151))  # nothing sent twice


async def test_a_broker_outage_loses_nothing_and_duplicates_are_identical(tmp_path, store, make_publisher) -> None:
    with running_broker(tmp_path / "broker", persistence=True) as broker:
        await store.append(readings(3000))
        publisher = make_publisher(broker.url, batch_size=20)
        async with Subscriber(broker, DATA, persistent=True) as sub, running(publisher):
            await sub.wait_for(lambda ms: len(seqs_of(ms)) >= 200)
            broker.stop()  # mid-run: messages are in flight
            await eventually(lambda: not publisher.counters.connected)
            await store.append(readings(500, start=3000))  # during the outage
            await eventually(lambda: publisher.counters.connect_failures >= 1)
            broker.start()
            messages = await sub.wait_for(covers(3500), timeout=60)
            await eventually(lambda: publisher.counters.cursor == store.last_seq, timeout=30)

    first_copy: dict[int, dict[str, Any]] = {}
    for message in data_messages(messages):
        for record in batch_of(message)["records"]:
            assert first_copy.setdefault(record["seq"], record) == record  # a duplicate is identical
    assert sorted(first_copy) == list(range(1, 3501))
    assert publisher.counters.reconnects >= 1
    assert await store.cursor("mqtt") == store.last_seq == 3500


async def test_the_last_will_turns_the_retained_status_offline_when_the_connection_dies(mosquitto, make_publisher) -> None:
    async with TcpProxy(mosquitto.host, mosquitto.port) as proxy, Subscriber(mosquitto, STATUS) as sub:
        publisher = make_publisher(proxy.url)
        async with running(publisher):
            await sub.wait_for(lambda ms: [s["state"] for s in statuses(ms)] == ["online"])
            proxy.cut()  # no DISCONNECT: the broker sees the connection die
            messages = await sub.wait_for(lambda ms: len(statuses(ms)) >= 3)
    states = statuses(messages)
    assert [s["state"] for s in states[:3]] == ["online", "offline", "online"]  # will, then back
    assert states[1] == {"state": "offline", "gateway": GATEWAY, "reason": "connection lost",
                         "version": states[1]["version"]}


async def status_after_cancelling(broker: MosquittoBroker, publisher) -> dict[str, Any]:
    """Run the publisher until it says online, cancel it, and return the status that
    follows; the cancellation must have propagated out of run()."""
    async with Subscriber(broker, STATUS) as sub:
        async with running(publisher) as task:
            await sub.wait_for(lambda ms: len(statuses(ms)) == 1)
        assert task.cancelled()
        return statuses(await sub.wait_for(lambda ms: len(statuses(ms)) == 2))[1]


async def test_a_cancelled_run_leaves_status_offline_and_propagates_cancellation(mosquitto, make_publisher) -> None:
    after = await status_after_cancelling(mosquitto, make_publisher(mosquitto.url))
    assert (after["state"], after["reason"]) == ("offline", "shutdown")
    async with Subscriber(mosquitto, STATUS) as late:  # retained for whoever comes later
        retained = await late.wait_for(lambda ms: len(ms) == 1)
    assert retained[0].retain and json.loads(retained[0].payload)["state"] == "offline"


async def test_a_shutdown_that_cannot_say_goodbye_in_time_leaves_the_last_will(mosquitto, make_publisher,
                                                                                monkeypatch) -> None:
    publish = aiomqtt.Client.publish

    async def stuck_goodbye(client, topic, payload=None, *args, **kwargs):
        if b'"shutdown"' in (payload or b""):  # as if data queued ahead on a slow link held it up
            await asyncio.Event().wait()
        return await publish(client, topic, payload, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "publish", stuck_goodbye)
    monkeypatch.setattr(uplink_mqtt, "GOODBYE_TIMEOUT_S", 0.1)
    after = await status_after_cancelling(mosquitto, make_publisher(mosquitto.url))
    assert (after["state"], after["reason"]) == ("offline", "connection lost")  # the broker's: the will


async def test_the_retained_status_carries_the_integrators_status_and_the_uplink_counters(
        mosquitto, store, make_publisher) -> None:
    async def status() -> dict[str, Any]:
        return {"version": "9.9.9", "uptime_s": 12, "queue": {"depth": store.last_seq},
                "buses": {"bus1": {"last_success": "2024-05-01T12:00:00+00:00"}}}

    await store.append(readings(10))
    publisher = make_publisher(mosquitto.url, status=status)
    async with Subscriber(mosquitto, STATUS) as sub, running(publisher):
        await eventually(lambda: publisher.counters.cursor == 10)
        publisher.request_status()
        messages = await sub.wait_for(lambda ms: any(s["uplinks"]["mqtt"]["records_acked"] == 10 for s in statuses(ms)))
    document = statuses(messages)[-1]
    assert document["state"] == "online" and document["gateway"] == GATEWAY
    assert (document["version"], document["uptime_s"], document["buses"]["bus1"]["last_success"]) == (
        "9.9.9", 12, "2024-05-01T12:00:00+00:00")
    counters = document["uplinks"]["mqtt"]
    assert counters["connected"] is True and counters["cursor"] == 10 and counters["pending"] == 0
    assert counters["messages_acked"] >= 1


async def test_the_status_goes_out_even_when_the_status_callback_fails(mosquitto, make_publisher) -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("collector state unavailable")

    async with Subscriber(mosquitto, STATUS) as sub, running(make_publisher(mosquitto.url, status=broken)):
        messages = await sub.wait_for(lambda ms: len(statuses(ms)) >= 1)
    document = statuses(messages)[0]
    assert document["state"] == "online"
    assert document["status_error"] == "collector state unavailable"


async def drain_through(broker_settings: str, count: int, batch_size: int, tmp_path, store, make_publisher):
    """Drain ``count`` readings through a broker with extra settings: the publisher and
    the data messages a subscriber received."""
    with running_broker(tmp_path / "broker", extra=broker_settings) as broker:
        await store.append(readings(count))
        publisher = make_publisher(broker.url, batch_size=batch_size)
        async with Subscriber(broker, DATA) as sub, running(publisher):
            messages = data_messages(await sub.wait_for(covers(count)))
            await eventually(lambda: publisher.counters.cursor == count)
    assert seqs_of(messages) == list(range(1, count + 1))
    assert publisher.counters.connects == 1  # the broker never had to drop the connection
    return publisher, messages


async def test_batches_are_split_to_fit_the_brokers_maximum_packet_size(tmp_path, store, make_publisher,
                                                                         signing_key, public_jwk) -> None:
    _, messages = await drain_through("max_packet_size 4000\n", 300, 200, tmp_path, store, make_publisher)
    assert len(messages) > 2  # unsplit, two batches of 200 and 100 records would be two messages
    assert all(len(m.payload) < 4000 for m in messages)
    assert all(verified(m, public_jwk, signing_key.kid) for m in messages)


async def test_the_brokers_receive_maximum_is_respected(tmp_path, store, make_publisher) -> None:
    publisher, _ = await drain_through("max_inflight_messages 2\n", 400, 5, tmp_path, store, make_publisher)
    assert (publisher.broker_limits.receive_maximum, publisher.broker_limits.in_flight) == (2, 2)


async def test_a_large_backlog_drains_without_warnings_or_per_message_logs(mosquitto, store, make_publisher,
                                                                          caplog) -> None:
    caplog.set_level(logging.DEBUG)
    await store.append(readings(3000))
    publisher = make_publisher(mosquitto.url, batch_size=5)  # 600 messages, a full window
    async with running(publisher):
        await eventually(lambda: publisher.counters.cursor == 3000, timeout=60)
    assert publisher.counters.messages_acked == 600
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r for r in loud if r.levelno >= logging.WARNING] == []
    assert len(loud) <= 2  # "connected", nothing per message


async def test_connection_failures_are_retried_with_back_off_and_logged_once(tmp_path, store, make_publisher,
                                                                            caplog) -> None:
    broker = MosquittoBroker(tmp_path / "broker")  # configured, not started: nothing listens
    publisher = make_publisher(broker.url)
    caplog.set_level(logging.DEBUG, logger=uplink_mqtt.__name__)
    async with running(publisher) as task:
        await eventually(lambda: publisher.counters.connect_failures >= 3)
        assert not task.done()
        broker.start()
        try:
            await eventually(lambda: publisher.counters.connected)
        finally:
            broker.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot connect to" in warnings[0].getMessage()
    assert "Connection refused" in publisher.counters.last_error or "refused" in publisher.counters.last_error


async def test_cancelling_a_connection_attempt_closes_its_socket(make_publisher) -> None:
    async with SilentServer() as server:
        publisher = make_publisher(f"mqtt://127.0.0.1:{server.port}")
        async with running(publisher) as task:
            await eventually(lambda: server.accepted == 1)  # waiting for a CONNACK that never comes
        assert task.cancelled()
        await eventually(lambda: server.closed == 1)
    assert publisher.counters.connects == 0


async def test_a_failed_connection_attempt_closes_its_socket_and_is_retried(make_publisher) -> None:
    async with SilentServer() as server:
        publisher = make_publisher(f"mqtt://127.0.0.1:{server.port}", connect_timeout_s=0.2)
        async with running(publisher):
            await eventually(lambda: server.accepted >= 2 and publisher.counters.connect_failures >= 2)
            await eventually(lambda: server.closed >= 2)
    assert "timed out" in publisher.counters.last_error


def test_the_window_of_messages_in_flight_is_bounded() -> None:
    assert 1 < uplink_mqtt.MAX_IN_FLIGHT <= 65535


def test_topics_follow_the_prefix_and_gateway_id(store, make_publisher) -> None:
    publisher = make_publisher("mqtt://127.0.0.1:1883", topic_prefix="utility/eu")
    assert (publisher.topic_readings, publisher.topic_events, publisher.topic_status, publisher.topic_commands) == (
        f"utility/eu/{GATEWAY}/readings", f"utility/eu/{GATEWAY}/events", f"utility/eu/{GATEWAY}/status",
        f"utility/eu/{GATEWAY}/cmd/+")
    assert publisher.client_id == f"{GATEWAY}-mqtt"


async def test_waiting_for_records_does_not_poll(mosquitto, store, make_publisher, monkeypatch) -> None:
    calls = 0
    original = store.read_after

    async def counting(seq: int, limit: int):
        nonlocal calls
        calls += 1
        return await original(seq, limit)

    monkeypatch.setattr(store, "read_after", counting)
    publisher = make_publisher(mosquitto.url)
    async with running(publisher):
        await eventually(lambda: publisher.counters.connected)
        await asyncio.sleep(0.3)  # idle: the uplink waits on the store, it does not poll it
        idle_calls = calls
        await store.append(readings(3))
        await eventually(lambda: publisher.counters.cursor == 3)
    assert idle_calls == 0
    assert calls == 1
