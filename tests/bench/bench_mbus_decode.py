"""Decode throughput over the libmbus corpus: ours (link + application layer) and
pyMeterBus 0.8.5 side by side, in one run. Prints one JSON line.

    .venv/bin/python tests/bench/bench_mbus_decode.py [--seconds 3]

Both decode every frame to values and units (pyMeterBus computes values lazily, so the
loop reads ``value`` and ``unit`` of every record). Frames pyMeterBus cannot decode (the
two fixed-structure frames and the reserved VIF 0x7B) are left out of both loops, so both
decode the same 73 frames. The rates are the best of a few alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.codecs.mbus.application import decode_response  # noqa: E402


ROUNDS = 4


def _frames() -> list[bytes]:
    return [bytes.fromhex(p.read_text()) for p in sorted((ROOT / "tests/data/mbus-libmbus/test-frames").glob("*.hex"))]


def _ours(frame: bytes) -> None:
    for record in decode_response(frame).response.records:
        record.value, record.unit


def _pymeterbus(frame: bytes) -> None:
    import meterbus

    for record in meterbus.load(frame).records:
        record.value, record.unit


def _rate(decode, frames: list[bytes], seconds: float) -> tuple[float, int]:
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for frame in frames:
            decode(frame)
        done += len(frames)
    return done / (time.perf_counter() - start), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per decoder (default 3)")
    args = parser.parse_args()
    import meterbus

    frames = []
    for frame in _frames():
        try:
            _pymeterbus(frame)
        except Exception:  # noqa: BLE001 - pyMeterBus cannot decode it; leave it out of both
            continue
        frames.append(frame)
    for frame in frames:
        _ours(frame)
    # Alternate short rounds and keep each decoder's best, so a burst of load from another
    # process on the machine does not favour one side.
    ours = theirs = 0.0
    ours_count = theirs_count = 0
    for _ in range(ROUNDS):
        rate, count = _rate(_ours, frames, args.seconds / ROUNDS)
        ours, ours_count = max(ours, rate), ours_count + count
        rate, count = _rate(_pymeterbus, frames, args.seconds / ROUNDS)
        theirs, theirs_count = max(theirs, rate), theirs_count + count
    print(json.dumps({
        "benchmark": "mbus_decode",
        "frames_in_corpus": len(frames),
        "ours_frames_per_s": round(ours),
        "pymeterbus_frames_per_s": round(theirs),
        "speedup": round(ours / theirs, 1),
        "ours_frames_decoded": ours_count,
        "pymeterbus_frames_decoded": theirs_count,
        "pymeterbus_version": getattr(meterbus, "__version__", "0.8.5"),
        "python": platform.python_version(),
        "seconds_each": args.seconds,
        "rounds": ROUNDS,
    }))


if __name__ == "__main__":
    main()
