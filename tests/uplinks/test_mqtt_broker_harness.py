"""The broker harness itself: a real Mosquitto that starts, stops and speaks TLS."""

from __future__ import annotations

import shutil
import ssl

import aiomqtt
import pytest

from tests import mqtt_broker
from tests.mqtt_broker import MosquittoBroker, Subscriber, client_tls_context, make_ca, mosquitto_binary


async def publish_one(broker: MosquittoBroker, topic: str, payload: bytes, tls: ssl.SSLContext | None = None,
                      timeout: float = 10) -> None:
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5,
                              tls_context=tls, timeout=timeout) as client:
        await client.publish(topic, payload, qos=1)


async def test_plain_broker_relays_a_message_to_a_subscriber(mosquitto: MosquittoBroker) -> None:
    async with Subscriber(mosquitto, "t/#") as sub:
        await publish_one(mosquitto, "t/a", b"hello")
        messages = await sub.wait_for(lambda ms: len(ms) >= 1)
    assert [(str(m.topic), m.payload) for m in messages] == [("t/a", b"hello")]


async def test_broker_restarts_on_the_same_port(mosquitto: MosquittoBroker) -> None:
    port = mosquitto.port
    mosquitto.stop()
    assert not mosquitto.running
    with pytest.raises(aiomqtt.MqttError):
        await publish_one(mosquitto, "t/a", b"x")
    mosquitto.start()
    assert mosquitto.port == port
    await publish_one(mosquitto, "t/a", b"x")


async def test_tls_broker_accepts_the_test_client_certificate(mosquitto_tls: MosquittoBroker) -> None:
    assert mosquitto_tls.pki is not None
    async with Subscriber(mosquitto_tls, "t/#") as sub:
        await publish_one(mosquitto_tls, "t/tls", b"secret", client_tls_context(mosquitto_tls.pki))
        messages = await sub.wait_for(lambda ms: len(ms) >= 1)
    assert messages[0].payload == b"secret"


async def test_tls_broker_refuses_a_client_without_certificate(mosquitto_tls: MosquittoBroker) -> None:
    assert mosquitto_tls.pki is not None
    context = ssl.create_default_context(cafile=str(mosquitto_tls.pki.ca_file))
    # TLS 1.3: the broker's refusal arrives after the client's handshake, so the client
    # sees no CONNACK; a short bound keeps the test quick.
    with pytest.raises(aiomqtt.MqttError):
        await publish_one(mosquitto_tls, "t/a", b"x", context, timeout=1)


async def test_tls_client_refuses_a_broker_from_another_ca(mosquitto_tls: MosquittoBroker, tmp_path) -> None:
    other_ca, _, _ = make_ca(tmp_path / "other")
    context = ssl.create_default_context(cafile=str(other_ca))
    with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await publish_one(mosquitto_tls, "t/a", b"x", context)


def test_a_missing_mosquitto_fails_under_ci_and_skips_elsewhere(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(mqtt_broker, "MOSQUITTO_CANDIDATES", ("/nonexistent/mosquitto",))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="mosquitto is not installed"):
        mosquitto_binary()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="mosquitto is not installed"):
        mosquitto_binary()


async def test_a_persistent_subscriber_gets_what_was_published_while_the_broker_restarted(tmp_path) -> None:
    with mqtt_broker.running_broker(tmp_path / "broker", persistence=True) as broker:
        async with Subscriber(broker, "t/#", persistent=True) as sub:
            await publish_one(broker, "t/1", b"before")
            await sub.wait_for(lambda ms: len(ms) == 1)
            broker.stop()
            broker.start()
            await publish_one(broker, "t/2", b"after")  # possibly before the subscriber is back
            messages = await sub.wait_for(lambda ms: len(ms) == 2)
    assert [m.payload for m in messages] == [b"before", b"after"]
    assert sub.connections == 2
