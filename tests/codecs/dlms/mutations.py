"""Seeded mutations of the DLMS vectors, for the fuzz test and tests/bench/fuzz_dlms_apdu.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

VECTORS_FILE = Path(__file__).parents[2] / "data" / "dlms-vectors" / "vectors.json"


def seeds() -> list[bytes]:
    """Every APDU and A-XDR value of the vectors file (I-frame information fields included)."""
    out = []
    for vector in json.loads(VECTORS_FILE.read_text())["vectors"]:
        for name in ("apdu", "full_apdu", "full_aarq", "glo_get_request_apdu", "aare_with_stoc", "aarq_with_ctos",
                     "plaintext"):
            if name in vector:
                out.append(bytes.fromhex(vector[name]))
        if vector["id"].startswith("hdlc_iframe"):
            frame = bytes.fromhex(vector["frame"])
            out.append(frame[frame.index(b"\xe6") + 3 : -3])
        if "data" in vector:
            out.append(bytes.fromhex(vector["data"])[1:])
    return out


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """One to three random edits: bit flips, byte changes, insertions, deletions, truncation,
    splices with another seed, and lengths turned large or long-form."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        at = rng.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[at] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xFF, rng.randrange(256)))
        elif op == 2:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 3 and buf:
            del buf[at : at + rng.randint(1, 4)]
        elif op == 4:
            del buf[rng.randint(0, len(buf)) :]
        elif op == 5:
            other = rng.choice(others)
            cut = rng.randint(0, len(other))
            buf[at:] = other[cut:]
        elif op == 6 and buf:
            buf[at : at + 1] = bytes((0x82, rng.randrange(256), rng.randrange(256)))
        elif op == 7 and len(buf) > 2:
            start = rng.randrange(len(buf) - 1)
            buf[at:at] = buf[start : start + rng.randint(1, 8)]
    return bytes(buf)


def mutations(count: int, seed: int = 0):
    rng = random.Random(seed)
    pool = seeds()
    for _ in range(count):
        yield mutate(rng, rng.choice(pool), pool)
