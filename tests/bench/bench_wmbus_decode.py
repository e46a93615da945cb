"""Benchmark: wireless M-Bus telegrams decoded (link layer, ELL/AFL/TPL, decryption, compact
frames, EN 13757-3 records) per second over the wmbusmeters corpus, and the CPU time per
telegram at a realistic load of 50 telegrams per second. Prints one JSON line.

    .venv/bin/python tests/bench/bench_wmbus_decode.py [--rounds 20] [--paced-seconds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from gateway.codecs.mbus.errors import MBusError  # noqa: E402
from gateway.codecs.mbus.wireless import WMBusDecoder  # noqa: E402
from gateway.codecs.mbus.wmbus_security import AesKey  # noqa: E402
from tests.codecs.mbus.wmbus_corpus import ELL_CIPHERTEXT, MODE5_CIPHERTEXT, STORED_DECRYPTED, wireless  # noqa: E402


def workload() -> list[tuple[bytes, AesKey | None, bool]]:
    """Every wireless corpus telegram with how a receiver would be told to take it."""
    out = []
    for telegram in wireless():
        key = AesKey.from_hex(telegram.key_hex) if telegram.crypto in (MODE5_CIPHERTEXT, ELL_CIPHERTEXT) else None
        out.append((telegram.data, key, telegram.crypto in STORED_DECRYPTED))
    return out


def decode_all(decoder: WMBusDecoder, items) -> tuple[int, int, int]:
    decoded = refused = records = 0
    for data, key, decrypted in items:
        try:
            result = decoder.decode(data, key=key, decrypted=decrypted, frame_format="auto", keep_trailing=True)
        except MBusError:
            refused += 1
            continue
        decoded += 1
        records += len(result.records)
    return decoded, refused, records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    args = parser.parse_args()
    items = workload()
    decoder = WMBusDecoder()
    decode_all(decoder, items)  # warm up caches and the format cache

    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.rounds):
        decoded, refused, records = decode_all(decoder, items)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = len(items) * args.rounds

    encrypted = [item for item in items if item[1] is not None]
    t0 = time.perf_counter()
    for _ in range(args.rounds * 10):
        decode_all(decoder, encrypted)
    decrypt_rate = len(encrypted) * args.rounds * 10 / (time.perf_counter() - t0)

    # Paced: one telegram every 20 ms, as a busy receiver hears them; CPU time per telegram.
    period = 1 / 50
    count = int(args.paced_seconds * 50)
    cpu_paced = time.process_time()
    start = time.perf_counter()
    for i in range(count):
        decode_all(decoder, [items[i % len(items)]])
        delay = start + (i + 1) * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    cpu_paced = time.process_time() - cpu_paced

    print(
        json.dumps(
            {
                "bench": "wmbus_decode",
                "python": platform.python_version(),
                "corpus_telegrams": len(items),
                "decoded_per_round": decoded,
                "refused_per_round": refused,
                "records_per_round": records,
                "telegrams_per_second": round(total / wall),
                "cpu_us_per_telegram": round(cpu / total * 1e6, 1),
                "encrypted_telegrams": len(encrypted),
                "encrypted_telegrams_per_second": round(decrypt_rate),
                "paced_load_telegrams_per_second": 50,
                "paced_telegrams": count,
                "paced_cpu_us_per_telegram": round(cpu_paced / count * 1e6, 1),
                "paced_cpu_percent": round(cpu_paced / args.paced_seconds * 100, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
