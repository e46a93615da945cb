"""The whole gateway for end-to-end tests of operations: the simulated DLMS meter on a
DLMS line, a real Mosquitto with passwords and an ACL that ties each HES to its identity,
the MQTT uplink, the DLMS/COSEM server, the relay; and the HES's side of MQTT."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
from jwcrypto import jwk, jws
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.app import Gateway, Timing
from gateway.config import parse_config
from gateway.simulators.dlms import MeterServer, SimulatedDlmsMeter
from gateway.uplinks.mqtt_client import cancellable
from tests.mqtt_broker import MosquittoBroker, running_broker

GATEWAY = "demo-ops"
PASSWORDS = {"gateway": "gw-secret", "hes-a": "a-secret", "hes-b": "b-secret"}
#: Each HES publishes the plain commands (ping, status, op-status ...), identified commands
#: only under its own identity (its MQTT username), reads the gateway's topics and its own
#: responses; the gateway reads and writes what it needs.
ACL = """
pattern write metering/+/cmd/+
pattern write metering/+/cmd/+/%u
pattern read hes/%u/#
user gateway
topic readwrite metering/#
topic write hes/#
user hes-a
topic read metering/#
user hes-b
topic read metering/#
"""
#: The Green Book's keys for the DLMS server (a demo gateway may use them).
EK, AK = bytes(range(16)).hex(), bytes(range(0xD0, 0xE0)).hex()


def broker_files(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    passwords, acl = directory / "passwd", directory / "acl"
    passwords.unlink(missing_ok=True)
    for n, (user, password) in enumerate(PASSWORDS.items()):
        subprocess.run(["mosquitto_passwd", *(["-c"] if n == 0 else []), "-b", str(passwords), user, password],
                       check=True, capture_output=True)
    acl.write_text(ACL)
    return passwords, acl


@contextlib.contextmanager
def acl_broker(directory: Path):
    passwords, acl = broker_files(directory / "auth")
    with running_broker(directory / "broker", password_file=passwords,
                        extra=f"acl_file {acl}\nlog_type debug\n") as broker:
        yield broker


def secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


#: The relay's settings in these tests (quick retries and polls).
RELAY = {"retry_s": 0.3, "poll_s": 0.05, "dlms_wait_s": 5}


def gateway_config(tmp_path: Path, meter_address: str, broker: MosquittoBroker | None, *,
                   operations: str = "", dlms_server: bool = True, relay: dict[str, Any] | None = None) -> str:
    state = tmp_path / "state"
    mqtt = ""
    if broker is not None:
        mqtt = f"""
[[uplinks.mqtt]]
name = "hes"
url = "{broker.url}"
username = "gateway"
password_file = "{secret(tmp_path / 'mqtt-password', PASSWORDS['gateway'])}"
"""
    server = ""
    if dlms_server:
        server = f"""
[uplinks.dlms]
port = 0
ek_file = "{secret(tmp_path / 'ek', EK)}"
ak_file = "{secret(tmp_path / 'ak', AK)}"
"""
    settings = "\n".join(f"{k} = {json.dumps(v)}" for k, v in {**RELAY, **(relay or {})}.items())
    return f"""
[gateway]
id = "{GATEWAY}"
state_dir = "{state}"
timezone = "UTC"
{mqtt}{server}
[[buses]]
name = "dlms1"
protocol = "dlms"
tcp = "{meter_address}"
interface = "wrapper"
response_timeout_ms = 1000
session_timeout_s = 20
retries = 0

[[meters]]
name = "m1"
protocol = "dlms"
bus = "dlms1"
objects = ["1.0.1.8.0.255"]
schedule = {{ interval_s = 86400 }}

[operations]
{settings}
{operations}
"""


@dataclass
class Running:
    gateway: Gateway
    meter_server: MeterServer

    @property
    def meter(self) -> SimulatedDlmsMeter:
        return self.meter_server.meter

    @property
    def dlms_server(self) -> Any:
        return next(u for u in self.gateway.uplinks if hasattr(u, "listening"))


@contextlib.asynccontextmanager
async def running_gateway(tmp_path: Path, broker: MosquittoBroker | None, meter: SimulatedDlmsMeter | None = None,
                          **options: Any) -> AsyncIterator[Running]:
    server = MeterServer(meter or SimulatedDlmsMeter())
    await server.start()
    config = parse_config(gateway_config(tmp_path, server.address, broker, **options))
    gateway = Gateway(config, timing=Timing(stop_polling_s=5, drain_uplinks_s=5, housekeeping_s=600,
                                            status_file_s=600))
    stop = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(gateway.run(stop))
            async with asyncio.timeout(20):
                while gateway.relay is None or not gateway.relay.ready.is_set():
                    await asyncio.sleep(0.02)
            try:
                yield Running(gateway, server)
            finally:
                stop.set()
    finally:
        await server.stop()


class Hes:
    """One HES on the broker, as its MQTT username: requests with MQTT 5 request/response,
    responses by correlation data, the gateway's signed events."""

    def __init__(self, client: aiomqtt.Client, identity: str) -> None:
        self.client = client
        self.identity = identity
        self.responses: dict[bytes, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.raw_events: list[bytes] = []
        self._arrived = asyncio.Condition()
        self._counter = 0

    async def collect(self) -> None:
        async for message in self.client.messages:
            async with self._arrived:
                if message.topic.matches(f"metering/{GATEWAY}/events"):
                    self.raw_events.append(message.payload)
                    self.events += _records(message.payload)
                else:
                    correlation = getattr(message.properties, "CorrelationData", b"")
                    self.responses[correlation] = json.loads(message.payload)
                self._arrived.notify_all()

    async def ask(self, command: str, payload: dict[str, Any], *, identity: str | None = "own",
                  timeout: float = 30.0) -> dict[str, Any]:
        """Publish to cmd/COMMAND/IDENTITY (our own unless told) and wait for the answer."""
        self._counter += 1
        correlation = f"{self.identity}-{self._counter}".encode()
        await self.publish(command, payload, identity=identity, correlation=correlation)
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: correlation in self.responses)
            return self.responses[correlation]

    async def publish(self, command: str, payload: dict[str, Any], *, identity: str | None = "own",
                      correlation: bytes = b"none") -> None:
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = f"hes/{self.identity}/responses"
        properties.CorrelationData = correlation
        who = self.identity if identity == "own" else identity
        topic = f"metering/{GATEWAY}/cmd/{command}" + (f"/{who}" if who else "")
        await self.client.publish(topic, json.dumps(payload).encode(), qos=1, properties=properties)

    async def event(self, predicate, timeout: float = 30.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: any(predicate(e) for e in self.events))
            return next(e for e in self.events if predicate(e))

    async def outcome(self, operation_id: int, timeout: float = 30.0) -> dict[str, Any]:
        """The operation.result event of an operation."""
        return await self.event(lambda e: e.get("code") == "operation.result" and e["details"]["id"] == operation_id,
                                timeout)


def _records(payload: bytes) -> list[dict[str, Any]]:
    """The records of a signed batch (the signature is checked in :func:`verified_records`)."""
    body = json.loads(payload)["payload"]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["records"]


def verified_records(payload: bytes, key_pem: bytes) -> list[dict[str, Any]]:
    token = jws.JWS()
    token.deserialize(payload.decode())
    token.verify(jwk.JWK.from_pem(key_pem), alg="ES256")
    return json.loads(token.payload)["records"]


@contextlib.asynccontextmanager
async def hes(broker: MosquittoBroker, identity: str) -> AsyncIterator[Hes]:
    client = aiomqtt.Client(broker.host, broker.port, username=identity, password=PASSWORDS[identity],
                            protocol=aiomqtt.ProtocolVersion.V5, timeout=10, identifier=f"test-{identity}")
    async with client, asyncio.TaskGroup() as group:
        await cancellable(client.subscribe(f"hes/{identity}/responses", qos=1))
        await cancellable(client.subscribe(f"metering/{GATEWAY}/events", qos=1))
        side = Hes(client, identity)
        task = group.create_task(side.collect())
        try:
            yield side
        finally:
            task.cancel()
