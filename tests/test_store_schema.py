"""Schema version 2 (the lifecycle's reading tags): a store of version 1 opens and keeps its
records, read-only as it is and migrated when opened for writing; tags round-trip and
readings are found by metering point."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from gateway.config import StoreSection
from gateway.model import Reading
from gateway.store import SCHEMA_VERSION, Store

AT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

#: The records table as schema version 1 made it.
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE series (id INTEGER PRIMARY KEY, device INTEGER NOT NULL, quantity TEXT NOT NULL, obis TEXT, unit TEXT,
                     last_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE frames (id INTEGER PRIMARY KEY, sha256 BLOB NOT NULL UNIQUE, raw BLOB NOT NULL, last_seq INTEGER NOT NULL);
CREATE TABLE records (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, device INTEGER, series INTEGER, value, vtype TEXT,
                      meter_time TEXT, captured_at TEXT NOT NULL, stored_ms INTEGER NOT NULL, status TEXT,
                      frame INTEGER, code TEXT, severity TEXT, message TEXT, source TEXT, details TEXT);
INSERT INTO meta VALUES ('schema_version', 1);
INSERT INTO devices VALUES (1, 'KAM-12345678-01-04');
INSERT INTO series VALUES (1, 1, 'energy', NULL, 'Wh', 0);
INSERT INTO records VALUES (1, 0, 1, 1, '12.5', 'd', NULL, '2024-05-01T12:00:00Z', 1714564800000, '00', NULL,
                            NULL, NULL, NULL, NULL, NULL);
"""


@pytest.fixture
def old_store(tmp_path):
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_1)
    return path


async def test_a_version_1_store_reads_without_tags_when_opened_read_only(old_store):
    async with Store(old_store, StoreSection(), read_only=True) as store:
        (stored,) = await store.read_after(0, 10)
        assert [r async for r in store.query_readings(point="MP-1")] == []
    assert (stored.record.value, stored.record.point, stored.record.flags) == (Decimal("12.5"), None, ())
    with sqlite3.connect(old_store) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (1,)


async def test_a_version_1_store_is_migrated_when_opened_for_writing_and_keeps_its_records(old_store):
    tagged = Reading("GWY-1-01-07", "volume", Decimal("1.5"), "m^3", AT, point="MP-1", metrological=True,
                     protection="encrypted:wmbus-mode5", flags=("calibration", "previous_key"), raw=b"\x44")
    async with Store(old_store, StoreSection()) as store:
        assert await store.append([tagged]) == [2]
        first, second = await store.read_after(0, 10)
        by_point = [s.seq async for s in store.query_readings(point="MP-1")]
    assert first.record.value == Decimal("12.5") and first.record.metrological is None
    assert second.record == tagged
    assert by_point == [2]
    with sqlite3.connect(old_store) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (SCHEMA_VERSION,)


async def test_an_undeclared_reading_keeps_null_tags_and_a_false_one_stays_false(tmp_path):
    plain = Reading("d", "q", Decimal(1), None, AT)
    declared = Reading("d", "clock", Decimal(2), None, AT, point="MP-2", metrological=False)
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        await store.append([plain, declared])
        back = [s.record for s in await store.read_after(0, 10)]
    assert back == [plain, declared]
