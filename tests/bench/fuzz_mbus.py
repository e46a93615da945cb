"""A longer fuzz run of the M-Bus decoder than the test suite's: mutated corpus frames with
L fields and checksum made right, so the application layer is reached. Prints one JSON
line with counts; any exception other than an M-Bus error is a bug and is counted (and the
first few printed to stderr).

    .venv/bin/python tests/bench/fuzz_mbus.py [--iterations 200000] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.codecs.mbus.application import decode_response, response_to_json  # noqa: E402
from gateway.codecs.mbus.errors import MBusError  # noqa: E402


def _corpus() -> list[bytes]:
    frames = sorted((ROOT / "tests/data/mbus-libmbus/test-frames").glob("*.hex"))
    return [bytes.fromhex(p.read_text()) for p in frames]


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    frame = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(7, max(8, len(frame) - 2))
        action = rng.random()
        if action < 0.4:
            frame[position] ^= 1 << rng.randrange(8)
        elif action < 0.7:
            frame[position] = rng.randrange(256)
        elif action < 0.85 and len(frame) < 261:
            frame.insert(position, rng.randrange(256))
        elif len(frame) > 10:
            del frame[position]
    frame[1] = frame[2] = len(frame) - 6
    frame[-2] = sum(frame[4:-2]) & 0xFF
    return bytes(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    corpus = _corpus()
    reasons: collections.Counter[str] = collections.Counter()
    decoded = unexpected = 0
    start = time.perf_counter()
    for _ in range(args.iterations):
        frame = _mutate(rng, rng.choice(corpus))
        try:
            result = decode_response(frame)
            json.dumps(response_to_json(result.response, result.frame))
            decoded += 1
        except MBusError as exc:
            reasons[re.sub(r"0x[0-9A-F]{2}|\d+", "N", exc.reason)] += 1
        except Exception:  # noqa: BLE001 - that is what we are looking for
            unexpected += 1
            if unexpected <= 5:
                print(frame.hex(" "), file=sys.stderr)
                traceback.print_exc()
    print(json.dumps({
        "benchmark": "fuzz_mbus",
        "iterations": args.iterations,
        "seed": args.seed,
        "decoded": decoded,
        "rejected": sum(reasons.values()),
        "unexpected_exceptions": unexpected,
        "seconds": round(time.perf_counter() - start, 1),
        "rejections_by_reason": dict(reasons.most_common()),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
