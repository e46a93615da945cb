"""The store under faults: a corrupt file, a full disk, and SIGKILL in the middle of writing."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.config import StoreSection
from gateway.errors import StoreFullError
from gateway.model import Severity
from gateway.store import SEQ_RESERVATION, Store, _SyncStore
from tests.environment import small_tmpfs
from tests.store_helpers import Clock, events_of, integrity, readings

PAGE = 4096


@pytest.fixture
def path(tmp_path):
    return tmp_path / "store.sqlite"


async def fill(path: Path, count: int = 300, *, state: dict[str, str] | None = None) -> int:
    async with Store(path, StoreSection()) as store:
        for start in range(0, count, 100):
            await store.append(readings(100, start=start, device=f"dev-{start % 3}"))
        for key, value in (state or {}).items():
            await store.set_state(key, value)
        return store.last_seq


def scribble(path: Path, offset: int, length: int) -> None:
    noise = random.Random(offset).randbytes(length)
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(noise)


def root_page(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
    finally:
        conn.close()


# -- corruption --


async def test_a_file_that_is_not_a_database_is_quarantined_and_numbering_continues_above_the_reservation(path):
    last = await fill(path)
    reserved = int(path.with_name(path.name + ".seq").read_text())
    assert last < reserved <= last + SEQ_RESERVATION
    scribble(path, 0, 100)  # the header
    clock = Clock()
    async with Store(path, StoreSection(), clock=clock) as store:
        stored = await store.read_after(0, 10)
        assert await store.append(readings(1)) == [reserved + 2]
        stats = await store.stats()
    (event,) = events_of(stored, "store.quarantined")
    assert stored[0].seq == reserved + 1
    assert event.severity is Severity.ERROR
    assert "not a database" in event.details["reason"]
    assert event.details["next_seq"] == reserved + 1
    (kept,) = stats.quarantined
    assert kept.name == "store.sqlite.corrupt-20240501T120000Z"
    assert kept.stat().st_size > 300 * 20  # moved aside, not deleted
    assert integrity(path) == ["ok"]


async def test_garbage_over_pages_of_a_real_store_is_detected_and_the_file_quarantined(path):
    last = await fill(path, 2000)
    scribble(path, 4 * PAGE, 6 * PAGE)
    async with Store(path, StoreSection()) as store:
        stored = await store.read_after(0, 10)
        assert store.last_seq > last
        assert (await store.append(readings(1)))[0] > last
        stats = await store.stats()
    assert [s.record.code for s in stored] == ["store.quarantined"]
    assert len(stats.quarantined) == 1 and stats.records == 2


async def test_what_can_be_read_of_a_corrupt_store_is_carried_over(path):
    last = await fill(path, 1000, state={"dlms:meter-1:invocation_counter": "41"})
    scribble(path, (root_page(path, "records_device") - 1) * PAGE + 8, 200)  # an index page only
    path.with_name(path.name + ".seq").unlink()  # so the store's own highest seq must be read
    async with Store(path, StoreSection()) as store:
        (stored,) = await store.read_after(0, 10)
        assert await store.get_state("dlms:meter-1:invocation_counter") == "41"
    assert stored.seq == last + 1
    assert stored.record.details["readable_last_seq"] == last
    assert stored.record.details["state_keys_salvaged"] == 1


async def test_a_corrupt_store_without_its_side_file_restarts_numbering_at_one(path):
    """The documented limit: when neither the file nor the reservation can be read, no
    high-water mark survives. The quarantine event says so (next_seq 1)."""
    await fill(path)
    scribble(path, 0, 100)
    path.with_name(path.name + ".seq").unlink()
    async with Store(path, StoreSection()) as store:
        (stored,) = await store.read_after(0, 10)
    assert stored.seq == 1 and stored.record.details["next_seq"] == 1


async def test_incremented_state_never_goes_back_after_a_quarantine_even_when_its_rows_are_lost(path):
    async with Store(path, StoreSection()) as store:
        for _ in range(3):
            await store.increment_state("dlms.ic.out.475759", 1000)
        await store.increment_state("other", 5)
    scribble(path, 0, 100)  # nothing of the state table can be read any more
    async with Store(path, StoreSection()) as store:
        (stored,) = await store.read_after(0, 10)
        assert await store.get_state("dlms.ic.out.475759") == "3000"  # raised to the mark on open
        assert await store.increment_state("dlms.ic.out.475759", 1000) == 4000
        assert await store.increment_state("other") == 6
    assert stored.record.details["state_readable"] == "no" and stored.record.details["high_water_keys"] == 2


async def test_incremented_state_goes_on_above_its_mark_in_a_new_store_sharing_the_high_water_file(tmp_path):
    marks = tmp_path / "counters.high-water"
    async with Store(tmp_path / "one.sqlite", StoreSection(), high_water_file=marks) as store:
        assert await store.increment_state("dlms.ic.out.475759", 1000) == 1000
    async with Store(tmp_path / "two.sqlite", StoreSection(), high_water_file=marks) as store:
        assert await store.increment_state("dlms.ic.out.475759", 1000) == 2000
    assert json.loads(marks.read_text()) == {"dlms.ic.out.475759": 2000}


async def test_a_damaged_high_water_file_is_rewritten_from_the_state_at_the_next_increment(path):
    marks = path.with_name(path.name + ".high-water")
    async with Store(path, StoreSection()) as store:
        await store.increment_state("k", 10)
    marks.write_text("{garbage")
    async with Store(path, StoreSection()) as store:
        assert await store.increment_state("k", 10) == 20
    assert json.loads(marks.read_text()) == {"k": 20}


async def test_a_store_quarantined_twice_keeps_both_files(path):
    for _ in range(2):
        await fill(path)
        scribble(path, 0, 100)
        async with Store(path, StoreSection()) as store:
            quarantined = (await store.stats()).quarantined
    assert len(quarantined) == 2


# -- disk full on a real small file system --


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root; the max_page_count test below covers the logic without)."""
    with small_tmpfs(tmp_path / "disk", "2m") as mount:
        yield mount


def fill_to_the_brim(directory: Path, name: str) -> Path:
    filler = directory / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 16, PAGE):
            try:
                while os.write(fd, bytes(chunk)):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def append_retrying(store: Store, batch, attempts: int = 5) -> tuple[list[int], int]:
    for failures in range(attempts):
        try:
            return await store.append(batch), failures
        except StoreFullError:
            continue
    raise AssertionError("the store never made room")


async def test_a_store_that_fills_its_disk_drops_the_oldest_and_keeps_accepting_batches(small_disk):
    path = small_disk / "store.sqlite"
    clock = Clock()
    async with Store(path, StoreSection(max_bytes=64 << 20), clock=clock) as store:
        failures = 0
        for batch in range(200):
            clock.advance(seconds=10)
            seqs, failed = await append_retrying(store, readings(100, start=batch * 100))
            failures += failed
            assert seqs[0] > store.last_seq - 110 and len(seqs) == 100
        stats = await store.stats()
        stored = await store.read_after(0, 100_000)
    assert failures > 0  # 20 000 readings do not fit in 2 MiB
    assert stats.first_seq > 1 and stats.dropped_total > 0
    assert stats.disk_full  # the file no longer grows on this disk: new records reuse freed pages
    assert len(events_of(stored, "store.disk_full")) >= 1
    assert len(events_of(stored, "store.recovered")) >= 1
    dropped = events_of(stored, "store.dropped")
    assert dropped and all(e.details["reason"] == "disk_full" for e in dropped)
    seqs = [s.seq for s in stored]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # one contiguous range: only a prefix went
    assert integrity(path) == ["ok"]


async def test_a_disk_filled_by_someone_else_is_survived_and_recovery_is_reported(small_disk):
    path = small_disk / "store.sqlite"
    clock = Clock()
    async with Store(path, StoreSection(max_bytes=1 << 20), clock=clock) as store:
        await store.append(readings(10))
        fillers = [fill_to_the_brim(small_disk, "filler-1")]
        with pytest.raises(StoreFullError):
            await store.append(readings(100))  # frees the reserve and drops the 10 oldest
        fillers.append(fill_to_the_brim(small_disk, "filler-2"))
        clock.advance(seconds=90)
        for _ in range(3):
            with pytest.raises(StoreFullError, match="disk is full"):
                await store.append(readings(100))
        assert (await store.stats()).disk_full
        for filler in fillers:
            filler.unlink()  # space returns
        clock.advance(seconds=30)
        seqs = await store.append(readings(100))
        stored = await store.read_after(0, 1000)
        await store.enforce_retention()
        assert not (await store.stats()).disk_full
        assert path.with_name(path.name + ".reserve").exists()  # recreated once there is room
    (full,) = events_of(stored, "store.disk_full")
    (recovered,) = events_of(stored, "store.recovered")
    assert recovered.details["full_s"] == 120
    assert full.occurred_at < recovered.occurred_at
    assert [s.seq for s in stored if s.record.__class__.__name__ == "Reading"] == seqs
    assert integrity(path) == ["ok"]


async def test_a_page_limit_gives_the_same_full_disk_behaviour_without_root(path, monkeypatch):
    """PRAGMA max_page_count makes SQLite answer SQLITE_FULL as a full disk would."""
    configure = _SyncStore._configure

    def limited(self, conn):
        configure(self, conn)
        conn.execute("PRAGMA max_page_count = 200")

    monkeypatch.setattr(_SyncStore, "_configure", limited)
    async with Store(path, StoreSection()) as store:
        failures = 0
        for batch in range(100):
            _, failed = await append_retrying(store, readings(100, start=batch * 100))
            failures += failed
        stored = await store.read_after(0, 100_000)
    assert failures > 0
    assert events_of(stored, "store.disk_full") and events_of(stored, "store.dropped") and events_of(stored, "store.recovered")
    assert integrity(path) == ["ok"]


# -- SIGKILL while appending --


def _appender(path: str, report: int, first_batch: int, synchronous: str) -> None:
    """Child process: append numbered batches forever, reporting each committed batch."""
    import asyncio

    async def run() -> None:
        async with Store(Path(path), StoreSection(synchronous=synchronous)) as store:
            batch = first_batch
            while True:
                seqs = await store.append(readings(50, device=f"dev-{batch % 5}", start=batch * 50))
                os.write(report, f"{batch} {seqs[0]} {seqs[-1]}\n".encode())
                batch += 1

    asyncio.run(run())


def test_every_batch_reported_committed_survives_sigkill_and_the_file_stays_intact(tmp_path):
    path = tmp_path / "store.sqlite"
    context = multiprocessing.get_context("fork")
    committed: dict[int, tuple[int, int]] = {}
    rng = random.Random(7)
    reader = None
    for kill in range(60):
        read_end, write_end = os.pipe()
        first_batch = max(committed, default=-1) + 1
        child = context.Process(target=_appender, args=(str(path), write_end, first_batch, ("full", "normal")[kill % 2]))
        child.start()
        os.close(write_end)
        os.set_blocking(read_end, False)
        buffer = b""
        seen = 0
        for _ in range(rng.randint(3, 25)):  # read along while the child writes
            child.join(0.01)
            buffer += _drain(read_end)
            reports = _complete_lines(buffer)
            if reports[seen:] and reader is None:
                reader = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
            for _batch, first, last in reports[seen:]:
                count = reader.execute("SELECT COUNT(*) FROM records WHERE seq BETWEEN ? AND ?", (first, last)).fetchone()[0]
                assert count == 50
            seen = len(reports)
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        buffer += _drain(read_end)
        os.close(read_end)
        previous_last = max((last for _, last in committed.values()), default=0)
        new = {batch: (first, last) for batch, first, last in _complete_lines(buffer)}
        assert min(new, default=first_batch) == first_batch
        assert all(first > previous_last for first, _ in new.values())  # seqs are never handed out twice
        committed.update(new)
        assert integrity(path) == ["ok"], f"after kill {kill}"
        _check_batches(path, new)
    if reader is not None:
        reader.close()
    _check_batches(path, committed)
    assert len(committed) > 60


def _drain(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def _complete_lines(buffer: bytes) -> list[tuple[int, int, int]]:
    lines = buffer.split(b"\n")[:-1]  # a line cut by the kill is no report
    return [tuple(int(part) for part in line.split()) for line in lines]  # type: ignore[misc]


def _check_batches(path: Path, committed: dict[int, tuple[int, int]]) -> None:
    conn = sqlite3.connect(path)
    try:
        for batch, (first, last) in committed.items():
            rows = conn.execute(
                "SELECT r.value, d.name FROM records r JOIN devices d ON d.id = r.device WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (first, last),
            ).fetchall()
            assert rows == [(str(Decimal(batch * 50 + n).scaleb(-3)), f"dev-{batch % 5}") for n in range(50)], batch
    finally:
        conn.close()
