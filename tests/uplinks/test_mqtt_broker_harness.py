"""The broker harness itself: a real Mosquitto that starts, stops and speaks TLS."""

from __future__ import annotations

import ssl

import aiomqtt
import pytest

from tests.mqtt_broker import MosquittoBroker, Subscriber, client_tls_context, make_ca


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
