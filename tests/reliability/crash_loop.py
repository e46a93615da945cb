"""Kill the gateway with SIGKILL at random moments while it polls and publishes.

Shared by the test suite (a short loop) and ``tests/bench/bench_crash_loop.py`` (a long
one). A simulated M-Bus runs in its own process, so only the gateway dies; Mosquitto and a
subscriber (the HES) keep running. After every kill the store must pass
``PRAGMA integrity_check``; at the end a last run drains the uplink and the HES must have
every committed record at least once, each seq always with the same content, and nothing
that was never committed.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from tests.hes import received_records

GATEWAY_ID = "crash-test"
CONFIG = """\
[gateway]
id = "{gateway_id}"
state_dir = "{state_dir}"
timezone = "UTC"

[[uplinks.mqtt]]
name = "hes"
url = "mqtt://127.0.0.1:{broker_port}"
topic_prefix = "crash"
client_id = "crash-test-gateway"
batch_size = 25

[[buses]]
name = "bus1"
protocol = "mbus"
port = "{pty}"
baud = 9600
retries = 1
{meters}
"""
METER = """
[[meters]]
name = "m{n}"
protocol = "mbus"
bus = "bus1"
address = {n}
[meters.schedule]
interval_s = 1
"""


@dataclass
class Message:
    """What the HES keeps of a message: enough for tests.hes.received_records."""

    topic: str
    payload: bytes


@dataclass
class HesSubscriber:
    """A paho subscriber on its own thread: the HES, which never dies in this test."""

    port: int
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="crash-test-hes",
                                   protocol=paho.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_connect = lambda client, *_: client.subscribe(f"crash/{GATEWAY_ID}/+", qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, bytes(message.payload)))

    def __enter__(self) -> HesSubscriber:
        self._client.connect("127.0.0.1", self.port)
        self._client.loop_start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)


class DelayingProxy:
    """A loopback TCP relay between the gateway and the broker that holds the gateway's
    bytes for ``delay_s`` before passing them on, and DROPS what it still holds when the
    gateway's connection dies: a power cut takes the packets in the box's buffers with it.
    So a message counts as delivered only once the broker acknowledged it, and an uplink
    that moved its cursor earlier would lose records here. Broker→gateway bytes pass at once.
    Runs its own event loop on a thread.
    """

    def __init__(self, broker_port: int, delay_s: float = 0.15) -> None:
        self.broker_port = broker_port
        self.delay_s = delay_s
        self.port = 0
        self.dropped_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DelayingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        except OSError:
            client_writer.close()
            return
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def upstream() -> None:
            while data := await client_reader.read(65536):
                held.put_nowait((self._loop.time() + self.delay_s, data))

        async def forward() -> None:
            while True:
                due, data = await held.get()
                await asyncio.sleep(max(0.0, due - self._loop.time()))
                broker_writer.write(data)
                await broker_writer.drain()

        async def downstream() -> None:
            while data := await broker_reader.read(65536):
                client_writer.write(data)
                await client_writer.drain()

        tasks = [asyncio.ensure_future(t()) for t in (upstream, forward, downstream)]
        await asyncio.wait([tasks[0], tasks[2]], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        while not held.empty():
            self.dropped_bytes += len(held.get_nowait()[1])
        for writer in (client_writer, broker_writer):
            writer.transport.abort()


@dataclass
class CrashLoopResult:
    kills: int
    committed: int
    received: int
    duplicates: int
    integrity_failures: list[str]
    missing: list[int]
    invented: list[int]
    differing: list[int]
    seconds: float
    bytes_lost_in_flight: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (v[:20] if isinstance(v, list) else v) for k, v in self.__dict__.items()}


class CrashLoop:
    def __init__(self, workdir: Path, uplink_port: int, *, meters: int = 3, seed: int = 1) -> None:
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.config_file = workdir / "gateway.toml"
        self.uplink_port = uplink_port
        self.meters = meters
        self.rng = random.Random(seed)
        self.log = (workdir / "gateway.log").open("ab")

    def run(self, kills: int, hes: HesSubscriber) -> CrashLoopResult:
        started = time.monotonic()
        simulator, pty = self._start_simulator()
        try:
            self._write_config(pty)
            integrity_failures = []
            for number in range(kills):
                gateway = self._start_gateway()
                time.sleep(self.rng.uniform(0.3, 2.5))
                gateway.send_signal(signal.SIGKILL)
                gateway.wait(timeout=30)
                verdict = self._integrity()
                if verdict != "ok":
                    integrity_failures.append(f"kill {number}: {verdict}")
            self._drain_and_stop()
        finally:
            simulator.terminate()
            simulator.wait(timeout=30)
            self.log.close()
        stored = asyncio.run(self._stored())
        received = received_records(self._wait_for_all(hes, stored), self.state_dir / "keys" / "signing-key.pem")
        data_messages = [m for m in hes.snapshot() if m.topic.rsplit("/", 1)[-1] in ("readings", "events")]
        deliveries = sum(len(_payload(m)["records"]) for m in data_messages)
        return CrashLoopResult(
            kills=kills,
            committed=len(stored),
            received=len(received),
            duplicates=deliveries - len(received),
            integrity_failures=integrity_failures,
            missing=sorted(set(stored) - set(received)),
            invented=sorted(set(received) - set(stored)),
            differing=sorted(seq for seq in set(stored) & set(received) if stored[seq] != received[seq]),
            seconds=round(time.monotonic() - started, 1),
        )

    # -- the parts --------------------------------------------------------------------------

    def _start_simulator(self) -> tuple[subprocess.Popen[str], str]:
        simulator = subprocess.Popen(
            [sys.executable, "-m", "gateway.simulators.mbus", "--meters", str(self.meters), "--baud", "9600", "--no-pace"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = simulator.stdout.readline() if simulator.stdout else ""
        if not line.startswith("PTY "):
            simulator.kill()
            raise RuntimeError(f"the M-Bus simulator did not start: {line!r}")
        return simulator, line.split()[1]

    def _write_config(self, pty: str) -> None:
        meters = "".join(METER.format(n=n) for n in range(1, self.meters + 1))
        self.config_file.write_text(CONFIG.format(gateway_id=GATEWAY_ID, state_dir=self.state_dir,
                                                  broker_port=self.uplink_port, pty=pty, meters=meters))

    def _start_gateway(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(self.config_file)],
                                stdout=self.log, stderr=self.log)

    def _integrity(self) -> str:
        store = self.state_dir / "store.sqlite"
        if not store.exists():
            return "ok"  # killed before the store was created
        with sqlite3.connect(store) as connection:
            return connection.execute("PRAGMA integrity_check").fetchone()[0]

    def _drain_and_stop(self) -> None:
        """A last, clean run: let the uplink send everything, then SIGTERM."""
        gateway = self._start_gateway()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = self._status()
                store = status.get("store", {})
                if store and store.get("cursors", {}).get("hes") == store.get("last_seq"):
                    break
                time.sleep(0.2)
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)

    def _status(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    async def _stored(self) -> dict[int, dict[str, Any]]:
        from gateway.config import StoreSection
        from gateway.payload import record_json
        from gateway.store import Store

        async with Store(self.state_dir / "store.sqlite", StoreSection(), read_only=True) as store:
            return {r.seq: record_json(r) for r in await store.read_after(0, 10_000_000)}

    @staticmethod
    def _wait_for_all(hes: HesSubscriber, stored: dict[int, Any], timeout_s: float = 30) -> list[Message]:
        """The HES's messages once every stored seq is among them (or the bound passed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            messages = hes.snapshot()
            if time.monotonic() > deadline:
                return messages
            seqs = set()
            for message in messages:
                if message.topic.rsplit("/", 1)[-1] in ("readings", "events"):
                    seqs.update(r["seq"] for r in _payload(message)["records"])
            if set(stored) <= seqs:
                return messages
            time.sleep(0.2)


def _payload(message: Message) -> dict[str, Any]:
    """The batch of a message without checking its signature (for counting only; the
    contents compared are the verified ones from tests.hes)."""
    import base64

    encoded = json.loads(message.payload)["payload"]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
