#!/usr/bin/env python3
"""Long fuzz run of the DLMS lower layers (HDLC parser and connections, wrapper, mode E).

    .venv/bin/python tests/bench/fuzz_dlms_link.py [--examples N] [--seed S]

Random inputs (noise, mutated valid frames, spliced frames) in random chunk sizes go through
every target of tests/codecs/dlms/link_fuzz_targets.py; anything but a DLMSError, or a
decoder that loops, stops the run with the input that did it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.codecs.dlms.link_fuzz_targets import SEEDS, TARGETS, mutate  # noqa: E402

CHUNKS = (1, 2, 3, 7, 16, 64, 4096)


def random_input(rng: random.Random) -> bytes:
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(rng.randrange(400))
    if kind == 1:
        edits = [(rng.randrange(4), rng.randrange(4096), rng.randrange(256)) for _ in range(rng.randrange(1, 7))]
        return mutate(rng.choice(SEEDS), edits)
    parts = [rng.choice(SEEDS) if rng.random() < 0.7 else rng.randbytes(rng.randrange(20)) for _ in range(rng.randrange(1, 6))]
    return b"".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20000, help="inputs per target")
    ap.add_argument("--seed", type=int, default=62056)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    figures: dict[str, object] = {"bench": "fuzz_dlms_link", "seed": args.seed, "examples_per_target": args.examples}
    started = time.perf_counter()
    for name, target in TARGETS.items():
        errors = 0
        t0 = time.perf_counter()
        for _ in range(args.examples):
            data, chunk = random_input(rng), rng.choice(CHUNKS)
            try:
                errors += target(data, chunk)
            except Exception:
                print(json.dumps({"bench": "fuzz_dlms_link", "target": name, "failed_on": data.hex(), "chunk": chunk}))
                raise
        figures[f"{name}_dlms_errors"] = errors
        figures[f"{name}_inputs_per_s"] = round(args.examples / (time.perf_counter() - t0))
    figures["seconds"] = round(time.perf_counter() - started, 1)
    figures["unexpected_exceptions"] = 0
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
