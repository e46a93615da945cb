"""Shared by the store's tests: a clock the test moves, and records to store."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from gateway.model import Event, Reading, Severity

START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class Clock:
    """A gateway clock that only moves when the test says so."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def reading(device: str = "KAM-12345678-01-04", number: int = 0, *, at: datetime = START, raw: bytes | None = None) -> Reading:
    return Reading(
        device=device,
        quantity="energy",
        value=Decimal(number).scaleb(-3),
        unit="Wh",
        captured_at=at,
        meter_time=at.astimezone(timezone(timedelta(hours=1))),
        obis="1-0:1.8.0*255",
        status="00",
        raw=raw,
    )


def readings(count: int, *, device: str = "KAM-12345678-01-04", start: int = 0, at: datetime = START) -> list[Reading]:
    """``count`` readings; every ten share one raw frame, as the records of one telegram do."""
    return [reading(device, start + n, at=at, raw=b"\x68frame%d" % ((start + n) // 10)) for n in range(count)]


def event(code: str = "comm.timeout", *, at: datetime = START, device: str | None = "KAM-12345678-01-04") -> Event:
    return Event(code=code, severity=Severity.WARNING, message="no answer", occurred_at=at, device=device, source="bus1", details={"tries": 3})


def integrity(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def events_of(stored: list, code: str) -> list[Event]:
    return [s.record for s in stored if isinstance(s.record, Event) and s.record.code == code]
