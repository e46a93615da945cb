"""Resident memory of a process that holds a store with 1,000,000 buffered readings and
reads them all back through ``read_after`` in batches (as an uplink draining a backlog).

A first process fills the store (batches of 1000); a fresh second process opens it (with
its integrity check) and reads every record in batches of 500, then reports its peak
resident set (VmHWM). Goal: under 60 MB.

    .venv/bin/python tests/bench/bench_store_memory.py [--readings N] [--keep DIR]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.config import StoreSection  # noqa: E402
from gateway.store import Store  # noqa: E402
from tests.bench.store_workload import readouts  # noqa: E402

BATCH_IN = 1000
BATCH_OUT = 500


def memory_kib() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def fill(path: Path, count: int) -> dict:
    started = time.perf_counter()
    async with Store(path, StoreSection(synchronous="normal", max_bytes=4 << 30)) as store:
        for first in range(0, count, BATCH_IN):
            await store.append(readouts(BATCH_IN, first=first // 10))
    return {"fill_s": round(time.perf_counter() - started, 1), "fill_peak_rss_mb": round(memory_kib()["VmHWM"] / 1024, 1)}


async def drain(path: Path) -> dict:
    before = memory_kib()["VmRSS"]
    started = time.perf_counter()
    async with Store(path, StoreSection(max_bytes=4 << 30)) as store:
        opened = time.perf_counter() - started
        seq = 0
        records = 0
        rss_while_reading = []
        while True:
            batch = await store.read_after(seq, BATCH_OUT)
            if not batch:
                break
            records += len(batch)
            seq = batch[-1].seq
            if records % 100_000 < BATCH_OUT:
                rss_while_reading.append(memory_kib()["VmRSS"])
        stats = await store.stats()
    memory = memory_kib()
    return {
        "records_read": records,
        "store_file_mb": round(stats.bytes / 2**20, 1),
        "bytes_per_reading": round(stats.bytes / max(1, stats.readings)),
        "open_with_integrity_check_s": round(opened, 2),
        "read_s": round(time.perf_counter() - started - opened, 1),
        "rss_before_open_mb": round(before / 1024, 1),
        "rss_max_while_reading_mb": round(max(rss_while_reading) / 1024, 1),
        "peak_rss_mb": round(memory["VmHWM"] / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="use (and keep) the store in this directory")
    parser.add_argument("--phase", choices=("fill", "drain"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "fill":
        print(json.dumps(asyncio.run(fill(args.path, args.readings))))
        return
    if args.phase == "drain":
        print(json.dumps(asyncio.run(drain(args.path))))
        return
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as scratch:
        path = (args.keep or Path(scratch)) / "store.sqlite"
        result = {"bench": "store_memory", "readings": args.readings, "goal_peak_rss_mb": 60}
        if not path.exists():
            result.update(_phase("fill", path, args.readings))
        result.update(_phase("drain", path, args.readings))
        print(json.dumps(result))


def _phase(phase: str, path: Path, readings: int) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--path", str(path), "--readings", str(readings)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


if __name__ == "__main__":
    main()
