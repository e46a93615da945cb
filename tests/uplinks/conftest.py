"""Fixtures of the uplink tests: a real Store, a signing key, a publisher factory, and an
HES-side view (a JWS verifier from another library, a command requester)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from jwcrypto import jwk, jws
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.config import MqttUplink, StoreSection
from gateway.model import Event, Reading, Severity
from gateway.signing import SigningKey
from gateway.store import Store
from gateway.uplinks.backoff import Backoff
from gateway.uplinks.mqtt import MqttPublisher
from tests.mqtt_broker import MosquittoBroker

GATEWAY = "gw-test"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def readings(count: int, start: int = 0) -> list[Reading]:
    """``count`` distinct readings of a few meters."""
    return [
        Reading(device=f"KAM-{10000000 + i % 7}-1b-04", quantity="energy", value=Decimal(i).scaleb(-3),
                unit="kWh", captured_at=T0 + timedelta(seconds=i), obis="1-0:1.8.0*255")
        for i in range(start, start + count)
    ]


def event(code: str = "comm.timeout") -> Event:
    return Event(code=code, severity=Severity.WARNING, message="meter did not answer", occurred_at=T0,
                 device="KAM-10000000-1b-04", details={"retries": 2})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "store.sqlite", StoreSection()) as opened:
        yield opened


@pytest.fixture
def signing_key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "keys" / "signing-key.pem")


@pytest.fixture
def public_jwk(signing_key: SigningKey) -> jwk.JWK:
    """The verifying key as an HES holds it: the public PEM only, in jwcrypto."""
    return jwk.JWK.from_pem(signing_key.public_pem().encode())


def verified(message: aiomqtt.Message, key: jwk.JWK, kid: str) -> dict[str, Any]:
    """The batch inside a data message, after jwcrypto verified its ES256 signature."""
    token = jws.JWS()
    token.deserialize(message.payload.decode())
    token.verify(key, alg="ES256")
    assert token.jose_header["kid"] == kid
    return json.loads(token.payload)


async def no_status() -> dict[str, Any]:
    return {"queue": {"depth": 0}}


PublisherFactory = Callable[..., MqttPublisher]


@pytest.fixture
def make_publisher(store: Store, signing_key: SigningKey) -> PublisherFactory:
    def make(url: str, *, status: Callable[[], Awaitable[dict[str, Any]]] = no_status,
             on_demand_read=None, **settings: Any) -> MqttPublisher:
        config = MqttUplink(url=url, **settings)
        return MqttPublisher(config, gateway_id=GATEWAY, store=store, signer=signing_key, status=status,
                             on_demand_read=on_demand_read, backoff=Backoff(0.05, 0.5))
    return make


@contextlib.asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[asyncio.Task[None]]:
    """``publisher.run()`` in the background; cancelled (and awaited) on exit."""
    async with asyncio.TaskGroup() as group:
        task = group.create_task(publisher.run())
        try:
            yield task
        finally:
            task.cancel()


async def eventually(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 20.0) -> None:
    """Wait until ``condition()`` holds; TimeoutError after ``timeout`` s (a bound only)."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


class Requester:
    """The HES side of commands: MQTT 5 requests with a response topic and correlation
    data, responses collected by correlation data."""

    def __init__(self, client: aiomqtt.Client, response_topic: str) -> None:
        self.client = client
        self.response_topic = response_topic
        self.responses: dict[bytes, aiomqtt.Message] = {}
        self._arrived = asyncio.Condition()
        self._counter = 0

    async def collect(self) -> None:
        async for message in self.client.messages:
            correlation = getattr(message.properties, "CorrelationData", None)
            async with self._arrived:
                self.responses[correlation or b""] = message
                self._arrived.notify_all()

    async def send(self, command: str, payload: bytes | dict[str, Any], *, response_topic: str | None = "default",
                   correlation: bytes | None = None) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        if response_topic is not None:
            properties.ResponseTopic = self.response_topic if response_topic == "default" else response_topic
        if correlation is not None:
            properties.CorrelationData = correlation
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.client.publish(f"metering/{GATEWAY}/cmd/{command}", body, qos=1, properties=properties)

    async def ask(self, command: str, payload: bytes | dict[str, Any] = b"", timeout: float = 20.0) -> dict[str, Any]:
        """Send a request and return the decoded response that carries its correlation data."""
        self._counter += 1
        correlation = f"req-{self._counter}".encode()
        await self.send(command, payload, correlation=correlation)
        message = await self.response(correlation, timeout)
        return json.loads(message.payload)

    async def response(self, correlation: bytes, timeout: float = 20.0) -> aiomqtt.Message:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: correlation in self.responses)
            return self.responses[correlation]


@contextlib.asynccontextmanager
async def requester(broker: MosquittoBroker, response_filter: str = "hes/responses/#") -> AsyncIterator[Requester]:
    client = aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5, timeout=10)
    async with client, asyncio.TaskGroup() as group:
        await client.subscribe(response_filter, qos=1)
        hes = Requester(client, response_filter.replace("#", "gw"))
        task = group.create_task(hes.collect())
        try:
            yield hes
        finally:
            task.cancel()
