"""Retention of a store flooded by transmitters that invent identities (``store_unknown``):
every telegram a new device with its own series. The store holds ``--devices`` invented
devices (one reading each) and then the readings of ``--meters`` real meters; retention by
age drops the flood, and forgets the devices and series left without records.

Reports the time of that retention run (dropping and forgetting), the devices and series
before and after, and the used bytes before and after. Goal: the names go with their
records, and a run over 100,000 invented devices takes seconds, not minutes.

    .venv/bin/python tests/bench/bench_store_flood.py [--devices N] [--meters M]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.config import StoreSection  # noqa: E402
from gateway.model import Reading  # noqa: E402
from gateway.store import Store  # noqa: E402
from tests.store_helpers import START, Clock  # noqa: E402


def names(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        return (conn.execute("SELECT COUNT(*) FROM devices").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM series").fetchone()[0])
    finally:
        conn.close()


async def run(devices: int, meters: int, directory: Path) -> dict:
    path = directory / "store.sqlite"
    clock = Clock()
    async with Store(path, StoreSection(max_age_days=1, max_bytes=1 << 30), clock=clock) as store:
        for start in range(0, devices, 1000):
            await store.append([Reading(f"FLD-{n:08d}-01-07", f"volume;storage={n % 4}", Decimal(n), "m3", START)
                                for n in range(start, min(devices, start + 1000))])
        clock.advance(days=2)
        await store.append([Reading(f"KAM-{n:08d}-01-04", "energy", Decimal(n), "Wh", clock.now) for n in range(meters)])
        before = await store.stats()
        devices_before, series_before = names(path)
        began = time.perf_counter()
        dropped = await store.enforce_retention()
        seconds = time.perf_counter() - began
        after = await store.stats()
    devices_after, series_after = names(path)
    return {
        "bench": "store_flood", "invented_devices": devices, "meters": meters, "dropped": dropped,
        "retention_s": round(seconds, 3),
        "devices_before": devices_before, "devices_after": devices_after,
        "series_before": series_before, "series_after": series_after,
        "used_bytes_before": before.bytes - before.free_bytes, "used_bytes_after": after.bytes - after.free_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000, help="invented devices (default 100000)")
    parser.add_argument("--meters", type=int, default=50, help="real meters kept (default 50)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        print(json.dumps(asyncio.run(run(args.devices, args.meters, Path(directory)))))


if __name__ == "__main__":
    main()
