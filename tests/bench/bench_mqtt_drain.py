"""Backlog drain through the MQTT uplink, beside a raw paho-mqtt publisher.

A real Store is filled with ``--readings`` readings (default 1,000,000); the uplink then
drains it to a local Mosquitto at QoS 1, signed, ``--batch-size`` readings per message,
and the time until its cursor reaches the last seq is measured. Beside it, in the same
run, a plain paho-mqtt client publishes the same payloads (the same batches, built and
signed beforehand) at QoS 1 with the same number of messages in flight, and the time until
the last PUBACK is measured. Goals: >= 50,000 readings/s and >= 0.8 of the raw publisher.

The raw publisher sends bytes made beforehand, so the ratio also charges the uplink with
reading, encoding and signing every record. A second baseline, ``paho_same_work``, is a
plain paho client that does that work in its own loop (read a batch from the store, build
the same payload, sign it, publish at QoS 1): ``ratio_same_work`` is what the uplink's own
machinery (cursor, delivery contract, asyncio) costs beside it.

Each round runs the raw publisher and the uplink in turn (``--rounds``, default 3); the
CPU is shared with other work, so the best run of each is compared and the medians given.

    .venv/bin/python tests/bench/bench_mqtt_drain.py [--readings N] [--batch-size B] [--rounds R]
    .venv/bin/python tests/bench/bench_mqtt_drain.py --readings 100000 --profile   # cProfile of the uplink

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import platform
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from gateway.config import MqttUplink, StoreSection  # noqa: E402
from gateway.payload import batch_payload  # noqa: E402
from gateway.signing import SigningKey  # noqa: E402
from gateway.store import Store  # noqa: E402
from gateway.uplinks import mqtt as uplink_mqtt  # noqa: E402
from gateway.uplinks.mqtt import MqttPublisher  # noqa: E402
from tests.bench.store_workload import readouts  # noqa: E402
from tests.mqtt_broker import running_broker  # noqa: E402

GATEWAY = "bench-gw"
FILL_CHUNK = 10_000


async def fill(store: Store, count: int) -> None:
    for first in range(0, count, FILL_CHUNK):
        size = min(FILL_CHUNK, count - first)
        await store.append(readouts(size, first=first // 10))


async def no_status() -> dict:
    return {}


async def uplink_drain(url: str, store: Store, key: SigningKey, name: str, batch_size: int,
                       profile: cProfile.Profile | None = None, lags: list[float] | None = None) -> float:
    """Seconds from run() until the uplink's cursor reaches the store's last seq; ``lags``
    gets how late each 1 ms sleep of the event loop woke up meanwhile (what a bus's serial
    timing would suffer)."""
    publisher = MqttPublisher(MqttUplink(url=url, name=name, batch_size=batch_size), gateway_id=GATEWAY,
                              store=store, signer=key, status=no_status)
    target = store.last_seq
    done = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        if profile:
            profile.enable()
        started = time.perf_counter()
        task = group.create_task(publisher.run())
        group.create_task(watch_cursor(publisher, target, done))
        group.create_task(loop_lag(done, lags if lags is not None else []))
        await done.wait()
        elapsed = time.perf_counter() - started
        if profile:
            profile.disable()
        task.cancel()
    if publisher.counters.connects != 1:
        raise SystemExit(f"the uplink reconnected during the benchmark: {publisher.counters}")
    return elapsed


async def loop_lag(done: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not done.is_set():
        before = loop.time()
        await asyncio.sleep(0.001)
        lags.append(loop.time() - before - 0.001)


async def watch_cursor(publisher: MqttPublisher, target: int, done: asyncio.Event) -> None:
    while publisher.counters.cursor < target:
        await asyncio.sleep(0.005)
    done.set()


async def build_payloads(store: Store, key: SigningKey, batch_size: int) -> list[bytes]:
    """The uplink's messages, built and signed before the raw publisher's clock starts."""
    payloads = []
    after = 0
    while batch := await store.read_after(after, batch_size):
        payloads.append(json.dumps(key.sign(batch_payload(GATEWAY, batch)), separators=(",", ":")).encode())
        after = batch[-1].seq
    return payloads


class PahoPublisher:
    """A plain paho client (its own network thread) publishing at QoS 1 with ``in_flight``
    messages outstanding, counting PUBACKs."""

    def __init__(self, host: str, port: int, client_id: str, in_flight: int, *, queue_limit: int = 0) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(in_flight)
        self.client.max_queued_messages_set(queue_limit)  # 0: unlimited; else publish() refuses beyond it
        self.client.on_publish = self._acked
        self.host, self.port = host, port
        self.sent = self.acked = 0
        self._lock = threading.Lock()
        self._all_acked = threading.Event()
        self._finished = False
        self.topic = f"metering/{GATEWAY}/readings"

    def _acked(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.acked += 1
            if self._finished and self.acked == self.sent:
                self._all_acked.set()

    def publish(self, payload: bytes) -> bool:
        """False when the queue is full (try again)."""
        if self.client.publish(self.topic, payload, qos=1).rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            return False
        self.sent += 1
        return True

    def finish(self) -> bool:
        """Wait for the PUBACK of every message sent; False after 600 s."""
        with self._lock:
            self._finished = True
            if self.acked == self.sent:
                self._all_acked.set()
        return self._all_acked.wait(timeout=600)

    def __enter__(self) -> PahoPublisher:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def raw_publish(host: str, port: int, payloads: list[bytes], in_flight: int) -> float:
    """Seconds for a plain paho client to publish the payloads made beforehand and receive
    every PUBACK."""
    with PahoPublisher(host, port, "bench-raw", in_flight) as paho:
        started = time.perf_counter()
        for payload in payloads:
            paho.publish(payload)
        if not paho.finish():
            raise SystemExit(f"raw publisher: only {paho.acked} of {paho.sent} PUBACKs arrived")
        return time.perf_counter() - started


async def same_work_publish(host: str, port: int, store: Store, key: SigningKey, batch_size: int,
                            in_flight: int) -> float:
    """Seconds for a plain paho client fed by a loop that reads, encodes and signs each
    batch as the uplink does, until every PUBACK arrived."""
    with PahoPublisher(host, port, "bench-same-work", in_flight, queue_limit=in_flight) as paho:
        started = time.perf_counter()
        after = 0
        while batch := await store.read_after(after, batch_size):
            payload = json.dumps(key.sign(batch_payload(GATEWAY, batch)), separators=(",", ":")).encode()
            while not paho.publish(payload):
                await asyncio.sleep(0.0005)
            after = batch[-1].seq
        if not await asyncio.to_thread(paho.finish):
            raise SystemExit(f"same-work publisher: only {paho.acked} of {paho.sent} PUBACKs arrived")
        return time.perf_counter() - started


async def main(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        directory = Path(tmp)
        with running_broker(directory / "broker") as broker:
            async with Store(directory / "store.sqlite", StoreSection()) as store:
                key = SigningKey.load_or_create(directory / "keys" / "signing-key.pem")
                started = time.perf_counter()
                await fill(store, args.readings)
                fill_s = time.perf_counter() - started
                payloads = await build_payloads(store, key, args.batch_size)
                profile = cProfile.Profile() if args.profile else None
                raw_rates, same_rates, uplink_rates, lags = [], [], [], []
                for round_number in range(args.rounds):
                    raw_s = raw_publish(broker.host, broker.port, payloads, uplink_mqtt.MAX_IN_FLIGHT)
                    raw_rates.append(args.readings / raw_s)
                    same_s = await same_work_publish(broker.host, broker.port, store, key, args.batch_size,
                                                     uplink_mqtt.MAX_IN_FLIGHT)
                    same_rates.append(args.readings / same_s)
                    uplink_s = await uplink_drain(broker.url, store, key, f"bench{round_number}", args.batch_size,
                                                  profile if round_number == 0 else None, lags)
                    uplink_rates.append(args.readings / uplink_s)
    if profile:
        stats = pstats.Stats(profile, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
    best_uplink, best_raw, best_same = max(uplink_rates), max(raw_rates), max(same_rates)
    return {
        "benchmark": "mqtt_drain",
        "readings": args.readings,
        "batch_size": args.batch_size,
        "messages": len(payloads),
        "message_bytes_avg": round(sum(map(len, payloads)) / len(payloads)),
        "in_flight": uplink_mqtt.MAX_IN_FLIGHT,
        "fill_readings_per_s": round(args.readings / fill_s),
        "uplink_readings_per_s": round(best_uplink),
        "raw_paho_readings_per_s": round(best_raw),
        "ratio": round(best_uplink / best_raw, 3),
        "paho_same_work_readings_per_s": round(best_same),
        "ratio_same_work": round(best_uplink / best_same, 3),
        "uplink_median_readings_per_s": round(statistics.median(uplink_rates)),
        "loop_lag_max_ms": round(max(lags) * 1000, 1),
        "loop_lag_p99_ms": round(statistics.quantiles(lags, n=100, method="inclusive")[98] * 1000, 1),
        "raw_paho_median_readings_per_s": round(statistics.median(raw_rates)),
        "goal_readings_per_s": 50_000,
        "goal_ratio": 0.8,
        "meets_goals": best_uplink >= 50_000 and best_uplink / best_raw >= 0.8,
        "rounds": args.rounds,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the first uplink drain (to stderr)")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
