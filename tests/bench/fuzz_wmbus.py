"""Longer fuzz run of the wireless M-Bus codec: random and mutated telegrams through the link
layer, ELL/AFL/TPL, security and compact frames, random streams through the dongle adapters.
Anything but an MBusError is a finding. Prints one JSON line.

    .venv/bin/python tests/bench/fuzz_wmbus.py [--seconds 60] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from gateway.codecs.mbus import three_of_six  # noqa: E402
from gateway.codecs.mbus.compact import FormatCache, split_compact  # noqa: E402
from gateway.codecs.mbus.dongles.amber import AmberAdapter  # noqa: E402
from gateway.codecs.mbus.dongles.cul import CulAdapter  # noqa: E402
from gateway.codecs.mbus.dongles.imst import ImstHci, ImstSlipHci  # noqa: E402
from gateway.codecs.mbus.errors import MBusError  # noqa: E402
from gateway.codecs.mbus.telegram import decode_telegram  # noqa: E402
from gateway.codecs.mbus.wireless_link import LinkMode, frame_from_radio  # noqa: E402
from gateway.codecs.mbus.wmbus_security import AesKey  # noqa: E402
from tests.codecs.mbus import wmbus_builders as build  # noqa: E402
from tests.codecs.mbus.wmbus_corpus import wireless  # noqa: E402

KEY = AesKey(bytes(16))


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        action = rng.random()
        if action < 0.5 and out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif action < 0.65 and out:
            del out[rng.randrange(len(out)) :]
        elif action < 0.8:
            out.insert(rng.randrange(len(out) + 1), rng.randrange(256))
        elif out:
            out[0] = (len(out) - 1) & 0xFF
    return bytes(out)


def one_telegram(rng: random.Random, seeds: list[bytes], cache: FormatCache) -> None:
    data = mutate(rng, rng.choice(seeds)) if rng.random() < 0.8 else rng.randbytes(rng.randrange(300))
    options = rng.choice([{}, {"key": KEY}, {"decrypted": True}])
    fmt = rng.choice(["stripped", "a", "b", "auto"])
    try:
        decoded = decode_telegram(data, frame_format=fmt, keep_trailing=True, **options)
        if decoded.content == "compact":
            cache.expand(split_compact(decoded.application_data))
    except MBusError:
        pass
    try:
        frame_from_radio(rng.choice(list(LinkMode)), data)
        three_of_six.decode(data)
    except MBusError:
        pass


def one_stream(rng: random.Random) -> None:
    adapter = rng.choice([ImstHci, ImstSlipHci, AmberAdapter, CulAdapter, lambda: AmberAdapter(transparent=True)])()
    for _ in range(rng.randint(1, 8)):
        adapter.receive_data(rng.randbytes(rng.randrange(200)))
        for _ in range(100_000):
            try:
                if adapter.next_event() is None:
                    break
            except MBusError:
                pass
        else:
            raise AssertionError(f"{type(adapter).__name__} did not settle")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seeds = [t.data for t in wireless()] + [
        build.mode5_telegram(bytes(16)),
        build.mode7_telegram(bytes(16)),
        build.ell_ctr_telegram(bytes(16)),
    ]
    cache = FormatCache()
    telegrams = streams = 0
    findings: list[str] = []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        try:
            for _ in range(200):
                one_telegram(rng, seeds, cache)
                telegrams += 1
            one_stream(rng)
            streams += 1
        except Exception:  # a finding: anything but the codec's own errors
            findings.append(traceback.format_exc(limit=3))
    print(
        json.dumps(
            {
                "bench": "fuzz_wmbus",
                "seconds": args.seconds,
                "seed": args.seed,
                "telegram_cases": telegrams,
                "stream_cases": streams,
                "unexpected_exceptions": len(findings),
                "first_finding": findings[0] if findings else None,
            }
        )
    )
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
