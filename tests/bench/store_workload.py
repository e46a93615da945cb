"""Readings as collectors produce them, for the store benchmarks: meters read in turn, each
readout a telegram of ten values sharing one raw frame and one capture time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from gateway.model import Reading

START = datetime(2024, 5, 1, tzinfo=timezone.utc)
QUANTITIES = tuple(f"quantity {n}" for n in range(10))


def readouts(count: int, *, meters: int = 100, first: int = 0) -> list[Reading]:
    """``count`` readings (a multiple of ten), starting with readout number ``first``."""
    out: list[Reading] = []
    for readout in range(first, first + count // len(QUANTITIES)):
        meter = readout % meters
        at = START + timedelta(seconds=readout)
        raw = b"\x68\x3c\x3c\x68\x08" + readout.to_bytes(8, "big") + bytes(50)
        device = f"KAM-{meter:08d}-1b-04"
        out.extend(
            Reading(device, quantity, Decimal(readout * 10 + n).scaleb(-3), "Wh", at, meter_time=at, obis="1-0:1.8.0*255", status="00", raw=raw)
            for n, quantity in enumerate(QUANTITIES)
        )
    return out
