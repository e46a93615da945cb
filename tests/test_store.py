"""The SQLite outbox: sequence numbers, exact round trips, cursors, retention, state."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import StoreSection
from gateway.errors import StoreError
from gateway.model import Event, Reading, Severity, StoredRecord
from gateway.store import SEQ_RESERVATION, Store
from tests.store_helpers import START, Clock, event, events_of, integrity, reading, readings


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "store.sqlite"


def open_store(path, clock=None, **settings_) -> Store:
    return Store(path, StoreSection(**settings_), clock=clock or Clock())


# -- sequence numbers --


async def test_append_gives_gapless_increasing_seqs_that_continue_after_a_restart(path):
    async with open_store(path) as store:
        assert store.last_seq == 0
        assert await store.append(readings(3)) == [1, 2, 3]
        assert await store.append([event()]) == [4]
        assert store.last_seq == 4
    async with open_store(path) as store:
        assert store.last_seq == 4
        assert await store.append(readings(2)) == [5, 6]
        assert [s.seq for s in await store.read_after(0, 100)] == [1, 2, 3, 4, 5, 6]


async def test_an_empty_batch_stores_nothing_and_returns_no_seqs(path):
    async with open_store(path) as store:
        assert await store.append([]) == []
        assert store.last_seq == 0


async def test_seqs_are_never_reused_after_every_record_was_dropped_and_the_store_reopened(path, clock):
    async with open_store(path, clock, max_age_days=1) as store:
        await store.append(readings(5))
        clock.advance(days=2)
        assert await store.enforce_retention() == 5
        # the store.dropped event is the only record left
        last = store.last_seq
        assert last == 6
        clock.advance(days=2)
        assert await store.enforce_retention() == 1
        assert (await store.stats()).records == 1  # the second drop's event
    async with open_store(path, clock) as store:
        assert store.last_seq == last + 1
        assert await store.append(readings(1)) == [last + 2]


async def test_the_sequence_reservation_file_stays_ahead_of_every_committed_seq(path):
    async with open_store(path) as store:
        await store.append(readings(10))
        reserved = int(path.with_name(path.name + ".seq").read_text())
        assert reserved >= store.last_seq
        assert reserved == 10 + SEQ_RESERVATION


# -- exact round trips --

exponent_decimals = st.builds(
    lambda sign, digits, exponent: Decimal((sign, digits, exponent)),
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=40).map(tuple),
    st.integers(-40, 40),
)
fixed_offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
values = st.one_of(
    st.none(),
    st.booleans(),
    exponent_decimals,
    st.decimals(allow_nan=False),
    st.text(),
    st.binary(),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.times(timezones=st.none() | fixed_offsets),
)


def same_value(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple() or (a.is_nan() and str(a) == str(b))
    if not isinstance(a, (datetime, time)) or a.tzinfo is None:
        return a == b and str(a) == str(b)
    # The same wall clock and the same offset: that is the same instant. (== across zones is
    # not enough: PEP 495 makes a time in a DST gap unequal to every other zone's.)
    return a.replace(tzinfo=None) == b.replace(tzinfo=None) and a.utcoffset() == b.utcoffset()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(values, min_size=1, max_size=30))
def test_every_value_type_comes_back_exactly(tmp_path_factory, batch):
    path = tmp_path_factory.mktemp("values") / "store.sqlite"

    async def round_trip():
        async with open_store(path) as store:
            await store.append([Reading("dev", f"q{n}", value, None, START) for n, value in enumerate(batch)])
            return await store.read_after(0, len(batch))

    stored = asyncio.run(round_trip())
    assert [s.record.quantity for s in stored] == [f"q{n}" for n in range(len(batch))]
    for original, back in zip(batch, (s.record.value for s in stored)):
        assert same_value(original, back), (original, back)


@pytest.mark.parametrize(
    "text", ["123.4560", "-0.0010", "1.2E+3", "-7E-12", "0E-9", "-0", "12345678901234567890.123456789012345678901234", "Infinity"]
)
async def test_decimal_forms_keep_their_digits_and_exponent(path, text):
    async with open_store(path) as store:
        await store.append([Reading("dev", "q", Decimal(text), "Wh", START)])
        (stored,) = await store.read_after(0, 1)
    assert str(stored.record.value) == text
    assert stored.record.value.as_tuple() == Decimal(text).as_tuple()


async def test_a_reading_comes_back_equal_with_aware_times_status_and_raw_frame(path):
    local = timezone(timedelta(hours=2))
    original = Reading(
        device="ELS-00112233-02-07",
        quantity="volume, storage 1",
        value=Decimal("1234.567"),
        unit="m3",
        captured_at=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=local),
        meter_time=datetime(2024, 5, 1, 13, 59, tzinfo=local),
        obis="8-0:1.0.0*255",
        status="04",
        raw=bytes(range(256)),
    )
    async with open_store(path) as store:
        await store.append([original])
        (stored,) = await store.read_after(0, 1)
    assert stored.record == original
    assert stored.record.captured_at.utcoffset() == timedelta(0)  # kept in UTC
    assert stored.record.meter_time.utcoffset() == timedelta(hours=2)  # as the meter gave it
    assert stored.stored_at == START


async def test_an_event_comes_back_equal_with_details_device_and_source(path):
    original = Event(
        code="comm.timeout",
        severity=Severity.ERROR,
        message="meter did not answer – 3 tries",
        occurred_at=START,
        device="KAM-1",
        source="bus-basement",
        details={"tries": 3, "last_error": "no E5"},
    )
    bare = Event(code="gateway.start", severity=Severity.INFO, message="started", occurred_at=START)
    async with open_store(path) as store:
        await store.append([original, bare])
        stored = await store.read_after(0, 10)
    assert [s.record for s in stored] == [original, bare]


async def test_a_raw_frame_shared_by_several_readings_is_stored_once(path):
    async with open_store(path) as store:
        await store.append(readings(20))  # frames 0 and 1
        await store.append(readings(5, start=15))  # frame 1 again
        stored = await store.read_after(0, 100)
    assert {s.record.raw for s in stored} == {b"\x68frame0", b"\x68frame1"}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM frames").fetchone()[0] == 2


async def test_a_value_of_an_unknown_type_is_refused_and_the_store_stays_usable(path):
    async with open_store(path) as store:
        with pytest.raises(StoreError, match="list"):
            await store.append([reading(), Reading("dev", "q", [1, 2], None, START)])
        assert store.last_seq == 0
        assert await store.append([reading()]) == [1]


# -- reading --


async def test_read_after_returns_records_above_the_seq_in_order_up_to_the_limit(path):
    async with open_store(path) as store:
        await store.append(readings(10))
        assert [s.seq for s in await store.read_after(3, 4)] == [4, 5, 6, 7]
        assert [s.seq for s in await store.read_after(8, 100)] == [9, 10]
        assert await store.read_after(10, 100) == []


async def test_wait_for_records_returns_once_a_later_append_commits(path):
    async with open_store(path) as store:
        await store.append(readings(1))
        await asyncio.wait_for(store.wait_for_records(0), 1)  # already there
        waiter = asyncio.ensure_future(store.wait_for_records(1))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await store.append(readings(1))
        async with asyncio.timeout(5):
            await waiter
        assert store.last_seq == 2


async def test_query_readings_streams_one_devices_readings_without_events(path, monkeypatch):
    monkeypatch.setattr("gateway.store.QUERY_PAGE", 3)
    async with open_store(path) as store:
        await store.append(readings(4, device="A") + [event(device="A")] + readings(4, device="B") + readings(4, device="A", start=4))
        a = [s async for s in store.query_readings(device="A")]
        assert [s.seq for s in a] == [1, 2, 3, 4, 10, 11, 12, 13]
        assert all(isinstance(s.record, Reading) and s.record.device == "A" for s in a)
        assert [s.seq async for s in store.query_readings(since_seq=3, limit=4)] == [4, 6, 7, 8]
        assert [s async for s in store.query_readings(device="nobody")] == []


async def test_last_readings_gives_the_newest_reading_of_each_device_and_quantity(path):
    async with open_store(path) as store:
        await store.append(readings(3, device="A") + readings(2, device="B"))
    async with open_store(path) as store:  # closing saved the newest seqs; what follows is newer
        await store.append(readings(1, device="A", start=7) + [event(device="A")])
        newest = await store.last_readings()
        await store.enforce_retention()
        assert await store.last_readings() == newest
    assert [(s.seq, s.record.device, s.record.value) for s in newest] == [(6, "A", Decimal("0.007")), (5, "B", Decimal("0.001"))]


async def test_a_read_only_store_reads_what_a_running_writer_commits(path):
    async with open_store(path) as writer:
        await writer.append(readings(2, device="A"))
        async with Store(path, StoreSection(), read_only=True) as reader:
            assert [s.seq for s in await reader.read_after(0, 10)] == [1, 2]
            await writer.append(readings(2, device="new-device"))
            assert [s.record.device for s in await reader.read_after(2, 10)] == ["new-device"] * 2
            assert [s.seq async for s in reader.query_readings(device="new-device")] == [3, 4]
            assert (await reader.stats()).last_seq == 4
            with pytest.raises(StoreError, match="read-only"):
                await reader.append(readings(1))


async def test_opening_a_missing_store_read_only_says_so(path):
    with pytest.raises(StoreError, match="no store"):
        async with Store(path, StoreSection(), read_only=True):
            pass


# -- cursors --


async def test_a_new_uplinks_cursor_is_zero_and_it_never_moves_backwards(path):
    async with open_store(path) as store:
        await store.append(readings(10))
        assert await store.cursor("mqtt") == 0
        await store.advance_cursor("mqtt", 7)
        await store.advance_cursor("mqtt", 3)
        assert await store.cursor("mqtt") == 7
        assert await store.cursor("other") == 0
    async with open_store(path) as store:
        assert await store.cursor("mqtt") == 7


async def test_a_cursor_beyond_the_last_stored_seq_is_refused(path):
    async with open_store(path) as store:
        await store.append(readings(2))
        with pytest.raises(StoreError, match="last stored seq is 2"):
            await store.advance_cursor("mqtt", 3)


# -- retention --


async def test_retention_by_age_drops_the_oldest_and_counts_them_per_device(path, clock):
    async with open_store(path, clock, max_age_days=30) as store:
        await store.append(readings(3, device="A") + readings(2, device="B"))
        clock.advance(days=20)
        await store.append(readings(4, device="A", start=10))
        await store.advance_cursor("mqtt", 4)
        clock.advance(days=11)
        assert await store.enforce_retention() == 5
        stored = await store.read_after(0, 100)
    assert [s.seq for s in stored] == [6, 7, 8, 9, 10]
    (dropped,) = events_of(stored, "store.dropped")
    assert dropped.severity is Severity.ERROR  # seq 5 had not been sent
    assert dropped.details == {
        "reason": "max_age",
        "count": 5,
        "first_seq": 1,
        "last_seq": 5,
        "unsent": 1,
        "device:A": 3,
        "device:B": 2,
    }


async def test_retention_of_records_every_uplink_acknowledged_is_a_warning(path, clock):
    async with open_store(path, clock, max_age_days=1) as store:
        await store.append(readings(3))
        await store.advance_cursor("mqtt", 3)
        clock.advance(days=2)
        await store.append(readings(1))
        assert await store.enforce_retention() == 3
        (dropped,) = events_of(await store.read_after(0, 10), "store.dropped")
    assert dropped.severity is Severity.WARNING and dropped.details["unsent"] == 0


async def test_retention_counts_records_beyond_the_slowest_cursor_as_unsent(path, clock):
    async with open_store(path, clock, max_age_days=1) as store:
        await store.append(readings(4))
        await store.advance_cursor("fast", 4)
        assert await store.cursor("slow") == 0
        clock.advance(days=2)
        await store.enforce_retention()
        (dropped,) = events_of(await store.read_after(0, 10), "store.dropped")
    assert dropped.details["unsent"] == 4


async def test_retention_by_size_drops_the_oldest_until_the_store_is_below_max_bytes(path, clock):
    limit = 1024 * 1024
    async with open_store(path, clock, max_bytes=limit) as store:
        for batch in range(40):
            await store.append(readings(500, device=f"dev-{batch % 3}", start=batch * 500))
        before = await store.stats()
        assert before.bytes - before.free_bytes > limit
        dropped = await store.enforce_retention()
        after = await store.stats()
        stored = await store.read_after(0, 1)
    assert dropped > 0
    assert after.bytes - after.free_bytes <= limit
    assert after.first_seq == dropped + 1  # a prefix went
    assert after.dropped_total == dropped
    assert stored[0].seq == dropped + 1
    events = events_of(await _all(path), "store.dropped")
    assert sum(e.details["count"] for e in events) == dropped
    assert all(e.details["reason"] == "max_bytes" for e in events)
    assert sum(v for e in events for k, v in e.details.items() if k.startswith("device:")) == dropped
    assert integrity(path) == ["ok"]


async def _all(path) -> list[StoredRecord]:
    async with Store(path, StoreSection(), read_only=True) as store:
        return await store.read_after(0, 1_000_000)


async def test_freed_pages_are_reused_so_the_file_stops_growing_at_the_limit(path, clock):
    limit = 1024 * 1024
    async with open_store(path, clock, max_bytes=limit) as store:
        sizes = []
        for batch in range(60):
            await store.append(readings(500, start=batch * 500))
            await store.enforce_retention()
            sizes.append((await store.stats()).bytes)
    assert max(sizes[30:]) <= limit * 1.2


async def test_enforce_retention_truncates_the_wal(path):
    async with open_store(path) as store:
        await store.append(readings(2000))
        await store.enforce_retention()
        assert (await store.stats()).wal_bytes == 0


# -- state --


async def test_state_values_and_counters_survive_a_restart(path):
    async with open_store(path, synchronous="normal") as store:
        assert await store.get_state("meter:A:ic") is None
        assert await store.increment_state("meter:A:ic") == 1
        assert await store.increment_state("meter:A:ic", 10) == 11
        await store.set_state("registry:A", '{"secondary": "12345678"}')
    async with open_store(path) as store:
        assert await store.get_state("meter:A:ic") == "11"
        assert await store.get_state("registry:A") == '{"secondary": "12345678"}'
        assert await store.increment_state("meter:A:ic") == 12


async def test_incrementing_a_state_value_that_is_not_a_number_is_refused(path):
    async with open_store(path) as store:
        await store.set_state("name", "abc")
        with pytest.raises(StoreError, match="not an integer"):
            await store.increment_state("name")
        assert await store.get_state("name") == "abc"


async def test_records_and_state_committed_together_are_stored_together_or_not_at_all(path):
    async with open_store(path) as store:
        await store.append(readings(2), state={"dlms.profile.m1.1.0.99.1.0.255": "2024-05-01T12:00:00+00:00"})
        assert store.last_seq == 2
        assert await store.get_state("dlms.profile.m1.1.0.99.1.0.255") == "2024-05-01T12:00:00+00:00"
        # a batch the store cannot take leaves the state as it was
        with pytest.raises(StoreError):
            await store.append([reading(), Reading("dev", "q", object(), None, START)],  # type: ignore[arg-type]
                               state={"dlms.profile.m1.1.0.99.1.0.255": "2024-05-01T13:00:00+00:00"})
        assert await store.get_state("dlms.profile.m1.1.0.99.1.0.255") == "2024-05-01T12:00:00+00:00"
        assert store.last_seq == 2
        # state alone (no records) is a plain state write
        assert await store.append([], state={"wmbus.mcr.X": "7"}) == []
        assert await store.get_state("wmbus.mcr.X") == "7"


async def test_a_string_sqlite_cannot_encode_is_a_store_error_naming_the_record(path):
    async with open_store(path) as store:
        bad = Event(code="meter.event", severity=Severity.INFO, message="firmware A\udcffB",
                    occurred_at=START, device="dlms-X", details={"text": "A\udcffB"})
        with pytest.raises(StoreError, match="'meter.event' of device 'dlms-X'"):
            await store.append([reading(), bad])
        assert store.last_seq == 0
        assert await store.append(readings(1)) == [1]  # the store stays usable


def test_a_reading_with_text_that_is_not_valid_utf8_is_refused_where_it_is_made():
    for field in ("value", "quantity", "device", "unit", "status", "obis"):
        values = {"device": "dlms-X", "quantity": "firmware", "value": "A", "unit": None, "status": None,
                  "obis": None, field: "A\udcffB"}
        with pytest.raises(ValueError, match=f"Reading.{field} is not valid UTF-8"):
            Reading(captured_at=START, **values)
    assert Reading("dlms-X", "firmware", "Zähler ✓", None, START).value == "Zähler ✓"


async def test_devices_and_series_without_records_are_forgotten_by_retention(path, clock):
    async with open_store(path, clock, max_age_days=1) as store:
        await store.append([reading("kept"), *(reading(f"invented-{n}") for n in range(50))])
        clock.advance(days=2)
        await store.append(readings(3, device="kept"))
        assert await store.enforce_retention() == 51
        names = await store.device_names()
        # the newest row of each table stays (ids are never reused), every other empty one goes
        assert names == ["kept", "invented-49"]
        assert [s.quantity for s in await store.device_series("kept")] == ["energy"]
        assert await store.device_series("invented-3") == []
        # a forgotten device that is heard again comes back under a new id, with its readings
        await store.append([reading("invented-3", 9)])
        assert [s.record.device for s in await store.read_after(store.last_seq - 1, 10)] == ["invented-3"]
    async with open_store(path, clock) as store:
        assert await store.device_names() == ["kept", "invented-49", "invented-3"]
        assert [s.record.value for s in await store.read_after(0, 100) if isinstance(s.record, Reading)
                and s.record.device == "invented-3"] == [Decimal("0.009")]
    conn = sqlite3.connect(path)
    try:
        ids = [row[0] for row in conn.execute("SELECT id FROM devices ORDER BY id")]
    finally:
        conn.close()
    assert ids == [1, 51, 52]  # invented-3 was 5 before: no id is handed out twice


async def test_a_store_flooded_with_invented_devices_stays_within_max_bytes_after_retention(path, clock):
    limit = 1024 * 1024
    async with open_store(path, clock, max_bytes=limit) as store:
        for batch in range(40):
            # a transmitter inventing identities: every telegram a new device, each its own quantities
            await store.append([Reading(f"FLD-{batch:03d}{n:05d}-01-07", f"volume;storage={n % 3}", Decimal(n),
                                        "m3", START) for n in range(600)])
            await store.enforce_retention()
        stats = await store.stats()
        devices = len(await store.device_names())
    assert stats.bytes - stats.free_bytes <= limit
    # the devices left are those with stored records (and the newest row kept for its id)
    assert devices <= stats.readings + 1
    assert integrity(path) == ["ok"]


# -- statistics and schema --


async def test_stats_count_records_bytes_cursors_and_backlog(path):
    async with open_store(path) as store:
        await store.append(readings(8) + [event(), event()])
        await store.advance_cursor("mqtt", 6)
        stats = await store.stats()
    assert (stats.records, stats.readings, stats.events) == (10, 8, 2)
    assert (stats.first_seq, stats.last_seq) == (1, 10)
    assert stats.cursors == {"mqtt": 6} and stats.backlog == {"mqtt": 4}
    assert stats.bytes > 0 and stats.dropped_total == 0
    assert stats.quarantined == () and stats.disk_full is False
    assert json.loads(json.dumps(stats.as_dict()))["backlog"] == {"mqtt": 4}


async def test_the_store_runs_in_wal_mode_with_the_configured_synchronous_setting(path):
    async with open_store(path, synchronous="normal") as store:
        await store.append(readings(1))
        assert path.with_name(path.name + "-wal").exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_store_written_by_a_newer_gateway_is_refused(path):
    async with open_store(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        async with open_store(path):
            pass


async def test_a_second_writer_on_the_same_store_is_refused_but_readers_are_welcome(path):
    async with open_store(path) as store:
        await store.append(readings(1))
        with pytest.raises(StoreError, match="another process is writing"):
            async with open_store(path):
                pass
        async with Store(path, StoreSection(), read_only=True) as reader:
            assert reader.last_seq == 1
    async with open_store(path) as store:  # the lock went with the first writer
        assert store.last_seq == 1


async def test_the_wal_stays_bounded_while_batches_keep_coming(path):
    async with open_store(path, max_bytes=16 << 20) as store:
        sizes = []
        for batch in range(100):
            await store.append(readings(200, start=batch * 200))
            sizes.append((await store.stats()).wal_bytes)
    # wal_autocheckpoint is reserve/4 (64 KiB here) and journal_size_limit twice that;
    # one batch of 200 readings adds about 30 KiB on top
    assert max(sizes) < 256 * 1024


async def test_using_a_store_that_is_not_open_is_an_error(path):
    store = open_store(path)
    with pytest.raises(StoreError, match="not open"):
        await store.append(readings(1))
