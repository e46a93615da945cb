"""Durable ingest into the store, beside raw sqlite3.executemany with the same pragmas.

For synchronous=FULL and NORMAL and batches of 100 and 1000 readings: readings/s through
``Store.append`` (one transaction per batch, from the event loop via the writer thread), and
readings/s of the same rows (prebuilt tuples, the same schema, indexes and pragmas, the same
frames) inserted with ``executemany`` in one transaction per batch. Goal: ratio >= 0.5.
``--tagged`` gives every reading the device lifecycle's tags (point, metrological,
protection). Each configuration runs ``--rounds`` times, store and baseline alternating; the CPU and
disk are shared with other work, so the best run of each (the least disturbed) is compared,
and the median is given too.

    .venv/bin/python tests/bench/bench_store_ingest.py [--readings N] [--rounds R] [--tagged]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.config import StoreSection  # noqa: E402
from gateway.store import SCHEMA, Store, _SyncStore, encode_value, iso_text, to_ms, utc_text  # noqa: E402
from tests.bench.store_workload import readouts  # noqa: E402


async def store_rate(path: Path, synchronous: str, batches: list[list]) -> float:
    async with Store(path, StoreSection(synchronous=synchronous)) as store:
        await store.append(batches[0])  # warm: names and frames tables exist
        started = time.perf_counter()
        for batch in batches[1:]:
            await store.append(batch)
        elapsed = time.perf_counter() - started
    return sum(map(len, batches[1:])) / elapsed


def baseline_rate(path: Path, synchronous: str, batches: list[list]) -> float:
    """The same rows, prebuilt, through executemany with the store's own pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    probe = _SyncStore(path, StoreSection(synchronous=synchronous), lambda: None, False)
    probe._configure(conn)
    conn.executescript(SCHEMA)
    devices = {name: n for n, name in enumerate(sorted({r.device for b in batches for r in b}), 1)}
    series = {key: n for n, key in enumerate(sorted({(r.device, r.quantity) for b in batches for r in b}), 1)}
    stored_ms = to_ms(batches[0][0].captured_at)
    prepared = []
    seq = 0
    frame_id = 0
    for batch in batches:
        frames, rows = [], []
        ids: dict[bytes, int] = {}
        for r in batch:
            seq += 1
            if r.raw not in ids:
                frame_id += 1
                ids[r.raw] = frame_id
                frames.append((frame_id, hashlib.sha256(r.raw).digest(), r.raw, seq))
            value, tag = encode_value(r.value)
            rows.append((seq, 0, devices[r.device], series[(r.device, r.quantity)], value, tag, iso_text(r.meter_time),
                         utc_text(r.captured_at), stored_ms, r.status, ids[r.raw], None, None, None, None, None,
                         r.point, r.metrological, r.protection, ",".join(r.flags) or None))
        prepared.append((frames, rows))
    insert = f"INSERT INTO records VALUES ({','.join('?' * 20)})"

    def commit(frames, rows):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO frames (id, sha256, raw, last_seq) VALUES (?,?,?,?)", frames)
        conn.executemany(insert, rows)
        conn.execute("COMMIT")

    commit(*prepared[0])
    started = time.perf_counter()
    for frames, rows in prepared[1:]:
        commit(frames, rows)
    elapsed = time.perf_counter() - started
    conn.close()
    return sum(len(rows) for _, rows in prepared[1:]) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=50_000, help="readings per configuration (default 50000)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each configuration (default 5)")
    parser.add_argument("--tagged", action="store_true", help="readings with the lifecycle's tags (point, "
                                                              "metrological, protection)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as scratch:
        for synchronous in ("full", "normal"):
            for size in (100, 1000):
                data = readouts(args.readings + size)
                if args.tagged:
                    data = [replace(r, point="MP-0042", metrological=True, protection="encrypted:wmbus-mode5")
                            for r in data]
                batches = [data[i : i + size] for i in range(0, len(data), size)]
                ours_runs, raw_runs = [], []
                for round_ in range(args.rounds):
                    directory = Path(scratch) / f"{synchronous}-{size}-{round_}"
                    directory.mkdir()
                    ours_runs.append(asyncio.run(store_rate(directory / "store.sqlite", synchronous, batches)))
                    raw_runs.append(baseline_rate(directory / "baseline.sqlite", synchronous, batches))
                ours, raw = max(ours_runs), max(raw_runs)
                results.append(
                    {"synchronous": synchronous, "batch": size, "store_readings_per_s": round(ours),
                     "executemany_readings_per_s": round(raw), "ratio": round(ours / raw, 2),
                     "median_ratio": round(statistics.median(ours_runs) / statistics.median(raw_runs), 2)}
                )
    print(json.dumps({
        "bench": "store_ingest", "readings_per_configuration": args.readings, "tagged": args.tagged, "goal_ratio": 0.5,
        "results": results, "sqlite": sqlite3.sqlite_version, "python": platform.python_version(),
        "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
