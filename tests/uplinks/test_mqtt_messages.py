"""The uplink's messages without a broker: the JWS envelope, the split between topics and
to fit the broker's packet size, and the status document."""

from __future__ import annotations

import asyncio
import json
import threading
from types import SimpleNamespace
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import payload
from gateway.config import MqttUplink
from gateway.model import StoredRecord
from gateway.payload import batch_payload, record_json
from gateway.signing import SigningKey, verify_jws
from gateway.uplinks import mqtt as uplink_mqtt
from gateway.uplinks.mqtt import MqttPublisher, jws_json
from tests.uplinks.conftest import GATEWAY, T0, event, eventually, readings

KEY = SigningKey.generate()


@settings(max_examples=50)
@given(st.binary(max_size=2000))
def test_the_envelope_is_the_compact_json_of_the_jws_and_verifies(payload: bytes) -> None:
    jws = KEY.sign(payload)
    message = jws_json(jws)
    assert message == json.dumps(jws, separators=(",", ":")).encode()
    assert verify_jws(message, KEY.public_key) == payload


async def test_a_batch_goes_out_as_readings_then_events_on_their_topics(store, make_publisher) -> None:
    await store.append([*readings(3), event(), *readings(2, start=3)])
    publisher = make_publisher("mqtt://127.0.0.1:1883")
    messages = publisher._messages(await store.read_after(0, 100))
    topics = [m.topic for m in messages]
    seqs = [[r["seq"] for r in json.loads(verify_jws(m.payload, publisher.signer.public_key))["records"]] for m in messages]
    assert topics == [f"metering/{GATEWAY}/readings", f"metering/{GATEWAY}/events"]
    assert seqs == [[1, 2, 3, 5, 6], [4]]
    assert [m.count for m in messages] == [5, 1]


async def test_a_batch_too_large_for_the_broker_is_split_in_order(store, make_publisher) -> None:
    await store.append(readings(40))
    publisher = make_publisher("mqtt://127.0.0.1:1883")
    publisher.broker_limits.maximum_packet_size = 3000
    messages = publisher._messages(await store.read_after(0, 100))
    seqs = [r["seq"] for m in messages for r in json.loads(verify_jws(m.payload, publisher.signer.public_key))["records"]]
    assert len(messages) > 1
    assert all(len(m.payload) + 100 < 3000 for m in messages)
    assert seqs == list(range(1, 41))


@settings(max_examples=20, deadline=None)
@given(st.integers(1500, 20_000), st.integers(1, 60))
def test_a_split_fills_each_message_to_the_broker_limit_encoding_each_record_at_most_twice(limit, count) -> None:
    records = [StoredRecord(seq, reading, T0) for seq, reading in enumerate(readings(count), start=1)]
    publisher = MqttPublisher(MqttUplink(url="mqtt://127.0.0.1:1883"), gateway_id=GATEWAY, store=None, signer=KEY,
                              status=None)
    publisher.broker_limits.maximum_packet_size = limit
    room = limit - len(publisher.topic_readings) - uplink_mqtt.PUBLISH_OVERHEAD
    encoded = []
    with patch.object(payload, "record_json", side_effect=lambda s, *times: encoded.append(s.seq) or record_json(s, *times)):
        messages = publisher._messages(records)
    parts = [json.loads(verify_jws(m.payload, KEY.public_key))["records"] for m in messages]
    assert [r["seq"] for part in parts for r in part] == list(range(1, count + 1))
    assert all(len(m.payload) <= room for m in messages if m.count > 1)
    # As full as possible: the next message's first record would not have fitted.
    for part, message, following in zip(parts, messages, parts[1:]):
        longer = batch_payload(GATEWAY, records[part[0]["seq"] - 1 : following[0]["seq"]])
        assert KEY.envelope_size(len(longer)) > room and message.count == len(part)
    assert all(encoded.count(seq) <= 2 for seq in range(1, count + 1))


async def test_messages_are_encoded_and_signed_off_the_event_loop(store, make_publisher) -> None:
    await store.append(readings(30))
    publisher = make_publisher("mqtt://127.0.0.1:1883", batch_size=10)
    signing_threads = set()
    sign = publisher.signer.sign
    publisher.signer = SimpleNamespace(sign=lambda payload: signing_threads.add(threading.get_ident()) or sign(payload),
                                       envelope_size=publisher.signer.envelope_size)
    client = HeldAcks()
    async with asyncio.TaskGroup() as group:
        delivery = group.create_task(publisher._deliver(client))
        await eventually(lambda: len(client.pending) == 3)
        delivery.cancel()
    assert signing_threads and threading.get_ident() not in signing_threads


async def test_a_status_callback_that_hangs_does_not_hold_the_status(store, make_publisher, monkeypatch) -> None:
    async def hangs() -> dict:
        await asyncio.Event().wait()
        return {}

    monkeypatch.setattr(uplink_mqtt, "STATUS_CALLBACK_TIMEOUT_S", 0.05)
    document = await make_publisher("mqtt://127.0.0.1:1883", status=hangs).status_document()
    assert document["state"] == "online"
    assert document["status_error"] == "status callback did not answer within 0.05 s"
    assert document["uplinks"]["mqtt"]["connected"] is False


async def test_the_status_keeps_other_uplinks_the_integrator_reports(store, make_publisher) -> None:
    async def status() -> dict:
        return {"uplinks": {"backup": {"connected": True}}}

    await store.append(readings(7))
    publisher = make_publisher("mqtt://127.0.0.1:1883", status=status)
    document = await publisher.status_document()
    assert document["uplinks"]["backup"] == {"connected": True}
    assert document["uplinks"]["mqtt"]["pending"] == 7



class HeldAcks:
    """A stand-in for the MQTT client whose PUBACKs arrive when the test says so."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[None]] = []

    async def publish(self, topic, payload, **kwargs) -> None:
        acked = asyncio.get_running_loop().create_future()
        self.pending.append(acked)
        await acked


async def test_the_cursor_moves_only_past_messages_acknowledged_in_order(store, make_publisher) -> None:
    await store.append(readings(30))
    publisher = make_publisher("mqtt://127.0.0.1:1883", batch_size=10)
    client = HeldAcks()
    async with asyncio.TaskGroup() as group:
        delivery = group.create_task(publisher._deliver(client))
        await eventually(lambda: len(client.pending) == 3)
        client.pending[2].set_result(None)  # the last batch first: nothing may move
        await asyncio.sleep(0.05)
        cursor_after_third = await store.cursor("mqtt")
        client.pending[0].set_result(None)
        await eventually(lambda: publisher.counters.cursor == 10)
        client.pending[1].set_result(None)  # now everything up to 30 is acknowledged
        await eventually(lambda: publisher.counters.cursor == 30)
        delivery.cancel()
    assert cursor_after_third == 0
    assert await store.cursor("mqtt") == 30
    assert publisher.counters.records_acked == 30
