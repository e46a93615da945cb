"""The device lifecycle's cost on the way into the store: readings/s through
``Tagger.tag`` for registered devices (point, metrological by the declaration, flags) and
for devices that are not registered (the status flags are looked at all the same), in
batches of one telegram's readings.

    .venv/bin/python tests/bench/bench_lifecycle_tag.py [--readings N]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.lifecycle.declaration import Declaration  # noqa: E402
from gateway.lifecycle.tagger import DeviceTags, Tagger  # noqa: E402
from gateway.model import Reading  # noqa: E402

QUANTITIES = ("volume", "volume;storage=1", "volume_flow", "time_point_date_and_time", "flow_temperature",
              "return_temperature", "energy", "energy;storage=1")
DEVICES = 100


def telegrams(count: int) -> list[list[Reading]]:
    at = datetime(2026, 3, 1, 10, 30, tzinfo=timezone.utc)
    out = []
    for n in range(count):
        device = f"GWY-{31000000 + n % DEVICES:08d}-01-07"
        out.append([Reading(device, q, Decimal(n).scaleb(-3), "m^3", at, meter_time=at, status="00",
                            protection="encrypted:wmbus-mode5") for q in QUANTITIES])
    return out


async def rate(tagger: Tagger, batches: list[list[Reading]]) -> float:
    await tagger.tag(batches[0])
    started = time.perf_counter()
    for batch in batches:
        await tagger.tag(batch)
    return sum(map(len, batches)) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    args = parser.parse_args()
    batches = telegrams(args.readings // len(QUANTITIES))
    registered = Tagger()
    declaration = Declaration(metrological=["volume*", "energy*"])
    for n in range(DEVICES):
        device = f"GWY-{31000000 + n:08d}-01-07"
        registered.devices[device] = DeviceTags(f"w{n}", f"e{n}", "in service", f"MP-{n}", declaration, 60, True)
    print(json.dumps({
        "bench": "lifecycle_tag", "readings": sum(map(len, batches)), "readings_per_telegram": len(QUANTITIES),
        "registered_readings_per_s": round(asyncio.run(rate(registered, batches))),
        "unregistered_readings_per_s": round(asyncio.run(rate(Tagger(), batches))),
        "python": platform.python_version(), "machine": platform.machine(),
    }))


if __name__ == "__main__":
    main()
