"""Benchmark: the wireless M-Bus receiver. Prints one JSON line.

* ``pipeline``: telegrams per second through the receiver's handling of one telegram (link
  layer, duplicate check, mode 5 decryption, records, Readings, commit to a list sink), and
  the CPU time per telegram; every telegram distinct, from 50 encrypted meters;
* ``pty``: a simulated iM871A on a pseudo-terminal offering 50 meters every 0.1 s (500
  telegrams/s, each sent twice): telegrams received, decoded and stored per second, and the
  CPU time of the whole process (simulator included) per telegram received.

    .venv/bin/python tests/bench/bench_wmbus_receiver.py [--telegrams 5000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).parents[2]))

from gateway.codecs.mbus.dongles import ReceivedTelegram  # noqa: E402
from gateway.codecs.mbus.wmbus_security import AesKey  # noqa: E402
from gateway.collectors.wmbus import WMBusReceiver  # noqa: E402
from gateway.config import WMBusDongle, WMBusMeter  # noqa: E402
from gateway.simulators.wmbus import Faults, ImstDongle, WirelessMeterModel, serve_dongle  # noqa: E402

KEY = "000102030405060708090A0B0C0D0E0F"
METERS = 50


class CountingSink:
    def __init__(self) -> None:
        self.records = 0

    async def commit(self, records, *, state=None) -> None:
        self.records += len(records)


def setup(port: str, key_path: str, interval_s: float) -> tuple[list[WirelessMeterModel], WMBusReceiver, CountingSink]:
    models = [WirelessMeterModel(identification=f"{30_000_000 + n:08d}", key=AesKey.from_hex(KEY), interval_s=interval_s)
              for n in range(METERS)]
    config = [WMBusMeter(name=f"m{n}", protocol="wmbus", bus="radio", id=m.identification, key_file=key_path,
                         expected_interval_s=3600) for n, m in enumerate(models)]
    sink = CountingSink()
    bus = WMBusDongle(name="radio", protocol="wmbus", port=port, dongle="imst")
    return models, WMBusReceiver(bus, config, sink, ZoneInfo("Europe/Berlin")), sink


async def pipeline(key_path: str, count: int) -> dict[str, float]:
    models, receiver, sink = setup("/dev/null", key_path, 1.0)
    receiver._load_keys()  # noqa: SLF001 - the benchmark drives the receiver's steps itself
    telegrams = [ReceivedTelegram(models[n % METERS].next_telegram(), rssi_dbm=-60) for n in range(count)]
    wall, cpu = time.perf_counter(), time.process_time()
    for telegram in telegrams:
        await receiver._handle(telegram)  # noqa: SLF001
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert receiver.counters["decoded"] == count and sink.records == 4 * count
    return {"telegrams_per_s": round(count / wall), "cpu_us_per_telegram": round(cpu / count * 1e6, 1)}


async def over_pty(key_path: str, seconds: float) -> dict[str, float]:
    async with serve_dongle(ImstDongle(), [], Faults(repeat=True)) as server:
        models, receiver, sink = setup(server.path, key_path, 0.1)
        server.meters.extend(models)
        task = asyncio.ensure_future(receiver.run())
        try:
            await asyncio.sleep(1.0)  # initialised and running
            frames, decoded, records = (receiver.counters[k] for k in ("frames", "decoded", "readings"))
            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.sleep(seconds)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            frames = receiver.counters["frames"] - frames
            decoded = receiver.counters["decoded"] - decoded
            records = receiver.counters["readings"] - records
        finally:
            receiver.stop()
            await asyncio.wait_for(task, 10)
    return {"frames_per_s": round(frames / wall), "decoded_per_s": round(decoded / wall),
            "readings_per_s": round(records / wall), "duplicates": receiver.counters["duplicates"],
            "cpu_us_per_frame": round(cpu / max(1, frames) * 1e6, 1), "offered_per_s": METERS * 10 * 2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--telegrams", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        key_path = os.path.join(directory, "meter.key")
        Path(key_path).write_text(KEY)
        os.chmod(key_path, 0o600)
        result = {"bench": "wmbus_receiver", "python": platform.python_version(),
                  "pipeline": asyncio.run(pipeline(key_path, args.telegrams)),
                  "pty": asyncio.run(over_pty(key_path, args.seconds))}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
