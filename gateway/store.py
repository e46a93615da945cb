"""The SQLite store-and-forward outbox: what was collected is committed here before anyone
is told about it, and uplinks read it back in sequence order.

Contract (see DESIGN.md, "Delivery"):

- :meth:`Store.append` commits a batch of records in one transaction (WAL, ``synchronous``
  per the configuration) and gives every record a gateway-wide sequence number. Sequence
  numbers are never reused: not after drops, not after a restart, not after a corrupt file
  was quarantined (see "Sequence numbers" below). State values given with the batch
  (``state=``: how far a profile was read, a meter's last message counter) commit in the
  same transaction, so a crash keeps both or neither.
- Text SQLite cannot encode (lone surrogates) or an integer beyond 64 bits is a
  :class:`StoreError` naming the record (device and quantity, or event code); nothing of
  the batch is stored.
- Each uplink keeps its own cursor (:meth:`Store.cursor`, :meth:`Store.advance_cursor`),
  moved only when the far side acknowledged. Records stay after acknowledgement until
  retention removes them, so an HES can ask for a replay from any stored sequence number.
- The stored records are always one contiguous range of sequence numbers: retention and
  disk-full handling drop the *oldest* records (a prefix), and say so with a
  ``store.dropped`` event that counts what was dropped of which devices and whether unsent
  records were among them.
- A corrupt file is moved aside (``store.sqlite.corrupt-<time>``, never deleted) and a fresh
  store started, with a ``store.quarantined`` event.
- A full disk never stops the process: the write is rolled back, :class:`StoreFullError`
  raised, the oldest records are dropped to make room (``store.disk_full`` and
  ``store.dropped`` events) and the caller retries; the first write that succeeds again adds
  a ``store.recovered`` event saying how long the store was full.
- Retention (:meth:`Store.enforce_retention`, to be called periodically) drops the prefix
  of records committed more than ``max_age_days`` ago (by the gateway clock at commit time,
  ``stored_at``; a clock that jumps forward ages records early) and the prefix that makes
  the used pages exceed ``max_bytes`` (down to 90 % of it). Freed pages are reused, so the
  file stops growing at about ``max_bytes``. Devices and series no stored record refers to
  any more are forgotten then too (the newest row of each table stays, so ids are never
  reused), so transmitters inventing identities cannot grow the store past its bound.
  :meth:`Store.reconfigure` applies new bounds to the open store.

Durability: ``synchronous=full`` makes every commit survive power loss. With ``normal`` the
last commits may be lost in a power cut (never in a process crash); so that no record whose
seq could be handed out again ever leaves the gateway, :meth:`Store.read_after` fsyncs the
WAL before it returns records that are not yet known to be on disk (one fsync per uplink
batch instead of one per commit).

Sequence numbers: the next number is one above the highest of (the highest stored seq, the
``last_seq`` kept in the ``meta`` table whenever records are deleted). Besides, a small side
file ``<store>.seq`` holds a *reservation*: no seq above it has been used. It is written
(fsync'd, atomically replaced) before a commit would go past it, a block of
:data:`SEQ_RESERVATION` at a time. When a corrupt file is quarantined, the new store starts
above the highest seq that can still be read from the corrupt file and above the
reservation, so numbers are never reused (the HES sees a gap, explained by the event). Only
if both the store file and its side file are lost does numbering start again at 1.

Counters (:meth:`Store.increment_state`, used for DLMS invocation counter reservations) never
go back either: every incremented value is also written to a high-water side file
(``high_water_file``; by default ``<store>.high-water``, the daemon keeps it in its state
directory so that it survives a change of the store's path), fsync'd and atomically
replaced *before* the new value is committed, and so before anything below it is handed
out. On open (a fresh store after a quarantine, a store at a new path, a store that lost its
last commit) every state value below its mark is raised to it. Other state values (the last
incoming invocation counters, profile positions) are carried over from a quarantined file
where they can be read; when they cannot, they start afresh, logged and said in the
``store.quarantined`` event (``state_readable: no``).

Disk full: SQLite cannot checkpoint a WAL into a database file that must grow when the disk
is full, and then not even deletions can be written (tried on a 2 MiB tmpfs). So the store
keeps a *reserve* file (``<store>.reserve``, 256 KiB to 8 MiB: ``max_bytes``/64) and keeps
the WAL well below that size (``wal_autocheckpoint``). On a full disk it deletes the
reserve, checkpoints, caps the file at its current size (``PRAGMA max_page_count``: from
then on SQLite answers SQLITE_FULL before it writes to the WAL), drops the oldest records
(the freed pages take the new ones) and checkpoints again. While capped the store keeps
working at that size, dropping the oldest whenever a write does not fit. Once the disk has
room again (twice the reserve free) the cap is lifted and the reserve recreated, at the next
append or retention run. If the disk fills while the reserve is gone and the store holds
nothing to drop, appends keep failing with :class:`StoreFullError` until space returns.

Threading: all SQL runs on one dedicated writer thread (a single-worker executor); the
async methods never block the event loop.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from gateway.config import StoreSection
from gateway.errors import StoreError, StoreFullError
from gateway.model import Event, Reading, Record, Severity, StoredRecord, utc_now

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: What each schema version adds to the one before: run in order on an older store when it
#: is opened for writing (one transaction per step), so existing stores open and keep
#: their records. A store opened read-only is not migrated: it reads the columns it has.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2: the device lifecycle's tags of a reading (gateway/lifecycle): the metering point,
    # whether it is metrological (legally relevant), how its frame was protected, flags
    2: tuple(f"ALTER TABLE records ADD COLUMN {column}" for column in
             ("point TEXT", "metrological INTEGER", "protection TEXT", "flags TEXT")),
}
#: Columns of ``records`` added by migrations, and what a store without them reads instead.
_LIFECYCLE_COLUMNS = ("point", "metrological", "protection", "flags")
#: ``records.kind``
READING, EVENT = 0, 1
#: Sequence numbers reserved in the side file at a time (one small fsync'd write per block).
SEQ_RESERVATION = 100_000
#: Records deleted per transaction when dropping (keeps the WAL of one drop bounded).
DROP_CHUNK = 50_000
#: Records fetched per round trip to the writer thread by :meth:`Store.query_readings`.
QUERY_PAGE = 1000
#: Retention by size drops down to this fraction of ``max_bytes`` (so it does not run on
#: every call once the store is at its limit).
SIZE_HYSTERESIS = 0.9
BUSY_TIMEOUT_MS = 5000
MAX_PAGE_COUNT = 0xFFFFFFFE  # SQLite's own ceiling
CACHE_KIB = 4096

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
-- what a reading measures; records refer to it so rows stay small
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL,
    quantity TEXT NOT NULL,
    obis TEXT,
    unit TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0        -- newest reading, as of meta.newest_mark
);
-- raw frames kept for audit, deduplicated by content
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    sha256 BLOB NOT NULL UNIQUE,
    raw BLOB NOT NULL,
    last_seq INTEGER NOT NULL                  -- no record above this refers to the frame
);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,                   -- gateway-wide sequence number
    kind INTEGER NOT NULL,                     -- 0 reading, 1 event
    device INTEGER,                            -- devices.id
    series INTEGER,                            -- series.id (readings)
    value,                                     -- no affinity: exact text, blob or 0/1 as stored
    vtype TEXT,                                -- value type tag (_VALUE_TYPES)
    meter_time TEXT,                           -- ISO 8601 with the offset it came with
    captured_at TEXT NOT NULL,                 -- ISO 8601 in UTC; an event's occurred_at
    stored_ms INTEGER NOT NULL,                -- commit time, ms since 1970 UTC
    status TEXT,
    frame INTEGER,                             -- frames.id
    code TEXT,                                 -- event columns
    severity TEXT,
    message TEXT,
    source TEXT,
    details TEXT,                              -- JSON object
    point TEXT,                                -- reading tags (schema 2): metering point,
    metrological INTEGER,                      -- 1/0 (NULL: undeclared),
    protection TEXT,                           -- protection of the frame as received,
    flags TEXT                                 -- comma-separated lifecycle flags
);
-- every index entry carries the rowid (seq): this orders entries by (device, seq)
CREATE INDEX IF NOT EXISTS records_device ON records(device);
-- events are few: this partial index lets stats count them without reading every row
CREATE INDEX IF NOT EXISTS records_events ON records(kind) WHERE kind = 1;
CREATE TABLE IF NOT EXISTS cursors (uplink TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- the append-only audit log of security-relevant actions, hash-chained (gateway/audit.py);
-- retention never touches it
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    details TEXT NOT NULL,                     -- JSON object
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""

_INSERT_RECORD = "INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_RECORD_COLUMNS = (
    "r.seq, r.kind, r.device, r.series, r.value, r.vtype, r.meter_time, r.captured_at,"
    " r.stored_ms, r.status, r.frame, f.raw, r.code, r.severity, r.message, r.source, r.details,"
    " r.point, r.metrological, r.protection, r.flags"
)
_SELECT_RECORDS = f"SELECT {_RECORD_COLUMNS} FROM records r LEFT JOIN frames f ON f.id = r.frame"
#: The same from a store of schema 1 opened read-only (not migrated): no tags.
_SELECT_RECORDS_V1 = _SELECT_RECORDS.replace(
    ", r.point, r.metrological, r.protection, r.flags", ", NULL, NULL, NULL, NULL")
# series.last_seq is brought up to date lazily (retention, close), not on every append: the
# readings after meta.newest_mark are few and scanned in seq order
_NEWEST_SINCE = (
    f"SELECT series, MAX(seq) AS seq FROM records NOT INDEXED WHERE seq > ? AND kind = {READING} GROUP BY series"
)

# For the DLMS server's profiles (gateway/uplinks/dlms_server): captured_at as a key that
# sorts as time (the stored text has no fraction when the microseconds are 0, and "Z" sorts
# after "."), and the decimal exponent of a stored number (a Decimal's text, or an int).
_TIME_KEY = (
    "(CASE WHEN length(captured_at) = 20 THEN substr(captured_at, 1, 19) || '.000000'"
    " ELSE substr(captured_at, 1, 26) END)"
)
_EXPONENT = (
    "(CASE WHEN instr(value, 'E') > 0 THEN CAST(substr(value, instr(value, 'E') + 1) AS INTEGER)"
    " - (CASE WHEN instr(value, '.') > 0 THEN instr(value, 'E') - instr(value, '.') - 1 ELSE 0 END)"
    " WHEN instr(value, '.') > 0 THEN instr(value, '.') - length(value) ELSE 0 END)"
)
# The first reading of each capture: readings of a device in seq order, a new capture
# whenever captured_at changes (the readings of one telegram share their capture time).
_CAPTURES = (
    f"SELECT seq, captured_at, LAG(captured_at) OVER (ORDER BY seq) AS previous FROM records"
    f" WHERE device = ? AND kind = {READING} AND seq <= ?{{window}}"
)
_NEW_CAPTURE = "previous IS NULL OR previous != captured_at"


# -- exact values -------------------------------------------------------------------------

#: Value types in the order they are tried (bool before int, datetime before date), each
#: with its tag, how it is stored and how it is rebuilt. The stored form is exact.
_VALUE_TYPES: tuple[tuple[type, str, Callable[[Any], Any], Callable[[Any], Any]], ...] = (
    (Decimal, "d", str, Decimal),
    (bool, "b", int, bool),
    (str, "s", str, str),
    (bytes, "x", bytes, bytes),
    (bytearray, "x", bytes, bytes),
    (datetime, "t", datetime.isoformat, datetime.fromisoformat),
    (date, "D", date.isoformat, date.fromisoformat),
    (time, "T", time.isoformat, time.fromisoformat),
    (int, "i", int, int),
)
_ENCODE = {kind: (tag, encode) for kind, tag, encode, _ in _VALUE_TYPES}
_DECODE = {tag: decode for _, tag, _, decode in _VALUE_TYPES}


def encode_value(value: Any) -> tuple[Any, str | None]:
    """A reading value as ``(stored value, type tag)``; ``None`` is ``(None, None)``."""
    if value is None:
        return None, None
    entry = _ENCODE.get(type(value))
    if entry is None:
        entry = next(((tag, encode) for kind, tag, encode, _ in _VALUE_TYPES if isinstance(value, kind)), None)
        if entry is None:
            raise StoreError(f"cannot store a reading value of type {type(value).__name__}")
    tag, encode = entry
    return encode(value), tag


def decode_value(stored: Any, tag: str | None) -> Any:
    return None if tag is None else _DECODE[tag](stored)


def utc_text(moment: datetime) -> str:
    """An aware time as ISO 8601 in UTC: ``2024-05-01T12:00:00Z`` (microseconds when set)."""
    return iso_text(moment.astimezone(timezone.utc))


def iso_text(moment: datetime) -> str:
    """ISO 8601 with the time's own offset, ``Z`` for UTC (five bytes less per row)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def time_key(moment: datetime) -> str:
    """The sortable form of a capture time the profile queries compare with
    (``2024-05-01T12:00:00.000000``, UTC)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _window(start: str | None, end: str | None) -> tuple[str, list[str]]:
    """SQL and arguments restricting captured_at to [start, end] (time keys; None: open)."""
    sql, args = "", []
    if start is not None:
        sql, args = f" AND {_TIME_KEY} >= ?", [start]
    if end is not None:
        sql, args = sql + f" AND {_TIME_KEY} <= ?", [*args, end]
    return sql, args


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


# -- public results -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What :meth:`Store.stats` reports. ``backlog`` is, per uplink, how many stored records
    lie beyond its cursor; ``bytes`` is the database file (page_count × page_size) and
    ``free_bytes`` the part of it that is free for reuse."""

    records: int
    readings: int
    events: int
    bytes: int
    free_bytes: int
    wal_bytes: int
    first_seq: int | None
    last_seq: int
    cursors: dict[str, int]
    backlog: dict[str, int]
    dropped_total: int
    quarantined: tuple[Path, ...]
    disk_full: bool
    full_since: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: paths and times as text."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["quarantined"] = [str(path) for path in self.quarantined]
        out["full_since"] = None if self.full_since is None else utc_text(self.full_since)
        return out


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """What one device measures (:meth:`Store.device_series`): ``exponent`` is the smallest
    decimal exponent among its stored numeric values (``None`` when it has none)."""

    id: int
    quantity: str
    obis: str | None
    unit: str | None
    exponent: int | None


class _Corrupt(Exception):
    """The store file is damaged (raised while opening; leads to quarantine)."""


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def _is_corrupt(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return isinstance(exc, sqlite3.DatabaseError) and code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


@dataclass
class _Transaction:
    next_seq: int
    stored_ms: int
    stored: list[int] = field(default_factory=list)


T = TypeVar("T")


class _Rows:
    """The rows of one insert. Readings of one telegram share their capture time, meter
    time and raw frame, so each is converted (and each frame stored) once."""

    def __init__(self, store: _SyncStore, stored_ms: int, last_seq: int) -> None:
        self.store = store
        self.stored_ms = stored_ms
        self.last_seq = last_seq  # frames are kept while records up to here refer to them
        self.rows: list[tuple[Any, ...]] = []
        self.frame_ids: dict[bytes, int] = {}
        self.captured: datetime | None = None
        self.captured_text = ""
        self.meter_time: datetime | None = None
        self.meter_text: str | None = None

    def reading(self, seq: int, reading: Reading) -> None:
        store = self.store
        device = store._device_ids.get(reading.device) or store._device_id(reading.device)
        key = (device, reading.quantity, reading.obis, reading.unit)
        series = store._series_ids.get(key) or store._series_id(key)
        if reading.captured_at is not self.captured:
            self.captured, self.captured_text = reading.captured_at, utc_text(reading.captured_at)
        if reading.meter_time is not self.meter_time:
            self.meter_time = reading.meter_time
            self.meter_text = None if reading.meter_time is None else iso_text(reading.meter_time)
        value = reading.value
        if type(value) is Decimal:  # the common case, without the table lookup
            value, tag = str(value), "d"
        else:
            value, tag = encode_value(value)
        frame = None
        if reading.raw is not None:
            raw = bytes(reading.raw)
            frame = self.frame_ids.get(raw) or self._frame_id(raw)
        flags = ",".join(reading.flags) if reading.flags else None
        metrological = None if reading.metrological is None else int(reading.metrological)
        self.rows.append(
            (seq, READING, device, series, value, tag, self.meter_text, self.captured_text, self.stored_ms,
             reading.status, frame, None, None, None, None, None, reading.point, metrological, reading.protection,
             flags)
        )  # fmt: skip

    def event(self, seq: int, event: Event) -> None:
        store = self.store
        device = None if event.device is None else (store._device_ids.get(event.device) or store._device_id(event.device))
        details = json.dumps(event.details, ensure_ascii=False, separators=(",", ":")) if event.details else None
        self.rows.append(
            (seq, EVENT, device, None, None, None, None, utc_text(event.occurred_at), self.stored_ms, None, None,
             event.code, Severity(event.severity).value, event.message, event.source, details, None, None, None,
             None)
        )  # fmt: skip

    def _frame_id(self, raw: bytes) -> int:
        id_ = self.store.conn.execute(
            "INSERT INTO frames (sha256, raw, last_seq) VALUES (?, ?, ?)"
            " ON CONFLICT (sha256) DO UPDATE SET last_seq = excluded.last_seq RETURNING id",
            (hashlib.sha256(raw).digest(), raw, self.last_seq),
        ).fetchone()[0]
        self.frame_ids[raw] = id_
        return id_


# -- the writer thread's side -------------------------------------------------------------


class _SyncStore:
    """The store as plain blocking calls. Lives on the writer thread: every method runs
    there, one at a time. :class:`Store` is its asynchronous face."""

    def __init__(self, path: Path, config: StoreSection, clock: Callable[[], datetime], read_only: bool,
                 high_water_file: Path | None = None) -> None:
        self.path = path
        self.config = config
        self.high_water_file = high_water_file or path.with_name(path.name + ".high-water")
        self._high_water: dict[str, int] = {}  # what the side file holds
        self.clock = clock
        self.read_only = read_only
        self.last_seq = 0
        self.on_commit: Callable[[int], None] | None = None
        self.full_since: datetime | None = None
        self.capped = False  # the disk was full: the file may not grow (see _cap_growth)
        self._conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._reserved = 0  # no seq above this has been used (side file)
        self._durable_seq = 0  # with synchronous=NORMAL: every seq up to this is on disk
        self._pending: list[Event] = []  # the store's own events not yet written
        self._carry: tuple[int, dict[str, str]] | None = None  # from a quarantined file
        self._device_ids: dict[str, int] = {}
        self._device_names: dict[int, str] = {}
        self._series_ids: dict[tuple[int, str, str | None, str | None], int] = {}
        self._series: dict[int, tuple[int, str, str | None, str | None]] = {}
        self._tagged: bool | None = None  # whether records has the tag columns (schema 2)
        self._names_stale = True  # records were dropped since devices and series were last pruned
        self.reserve_bytes = min(8 << 20, max(256 << 10, config.max_bytes // 64))

    # files next to the store
    @property
    def seq_file(self) -> Path:
        return self.path.with_name(self.path.name + ".seq")

    @property
    def lock_file(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def reserve_file(self) -> Path:
        return self.path.with_name(self.path.name + ".reserve")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is not open (use `async with Store(...)`)")
        return self._conn

    # -- opening and closing --

    def open(self) -> None:
        if self.read_only:
            self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path.parent}: cannot create the state directory: {exc.strerror}") from None
        self._take_writer_lock()
        try:
            with self._errors("opening the store"):
                self._reserved = self._read_seq_file()
                self._high_water = self._read_high_water()
                try:
                    self._open_file()
                except _Corrupt as exc:
                    self._quarantine(str(exc))
                    try:
                        self._open_file()
                    except _Corrupt as again:
                        raise StoreError(f"{self.path}: a fresh store cannot be created: {again}") from None
                self._flush_pending()
                self._ensure_reserve()
        except BaseException:
            self._release_writer_lock()
            raise

    def _take_writer_lock(self) -> None:
        """One writing process per store: seqs are handed out from memory."""
        try:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"{self.lock_file}: cannot open the store's lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.path}: another process is writing to this store (it holds {self.lock_file})") from None
        self._lock_fd = fd

    def _release_writer_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the lock
            self._lock_fd = None

    def _open_file(self) -> None:
        existed = self.path.exists()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            if existed:
                problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
                if problems != ["ok"]:
                    raise _Corrupt("; ".join(problems[:3]))
            self._configure(conn)
            self._conn = conn
            self._check_schema_version()  # before touching the schema of a newer gateway's store
            self._migrate()
            conn.executescript(SCHEMA)
            if self._meta("schema_version") is None:
                self._set_meta("schema_version", SCHEMA_VERSION)
            self._take_carry_over()
            self._merge_high_water()
            self._load()
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._conn = None
            if _is_corrupt(exc):
                raise _Corrupt(str(exc)) from None
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _configure(self, conn: sqlite3.Connection) -> None:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        # Keep the WAL far below the reserve: on a full disk a checkpoint may have to grow
        # the database file by up to the WAL's size.
        wal_pages = max(16, self.reserve_bytes // page_size // 4)
        for pragma in (
            f"busy_timeout = {BUSY_TIMEOUT_MS}",
            "journal_mode = WAL",
            f"synchronous = {self.config.synchronous.upper()}",
            f"wal_autocheckpoint = {wal_pages}",
            f"journal_size_limit = {2 * wal_pages * page_size}",
            f"cache_size = -{CACHE_KIB}",
        ):
            conn.execute(f"PRAGMA {pragma}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{self.path}: the file system does not support SQLite's WAL mode (journal_mode={mode})")

    def reconfigure(self, config: StoreSection) -> None:
        """New retention bounds and durability for the open store (the path stays)."""
        self._writable()
        if Path(config.path or self.path) != self.path:
            raise StoreError(f"{self.path}: an open store cannot move to {config.path}")
        with self._errors("applying new store settings"):
            self.config = config
            self.reserve_bytes = min(8 << 20, max(256 << 10, config.max_bytes // 64))
            self._configure(self.conn)
            if self.reserve_file.exists() and self.reserve_file.stat().st_size != self.reserve_bytes:
                self._release_reserve()
                self._ensure_reserve()
        log.info("store %s: max_bytes %d, max_age_days %g, synchronous %s", self.path, config.max_bytes,
                 config.max_age_days, config.synchronous)

    def _check_schema_version(self) -> None:
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            return  # a new store
        version = self._meta("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {version} is newer than this gateway understands "
                f"({SCHEMA_VERSION}); upgrade the gateway"
            )

    def _migrate(self) -> None:
        """Bring an older store's schema up to :data:`SCHEMA_VERSION` (:data:`MIGRATIONS`),
        one version per transaction: a crash in between leaves a store of the step before,
        migrated again at the next open."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone() is None:
            return  # a new store: the schema is created whole
        version = int(self._meta("schema_version") or 1)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                for statement in MIGRATIONS.get(target, ()):
                    self.conn.execute(statement)
                self._set_meta("schema_version", target)
            log.info("store %s: schema migrated to version %d", self.path, target)

    @property
    def _select_records(self) -> str:
        """The records query this store's schema answers (a read-only store of schema 1
        has no tag columns)."""
        if self._tagged is None:
            columns = {row[1] for row in self.conn.execute("PRAGMA table_info(records)")}
            self._tagged = set(_LIFECYCLE_COLUMNS) <= columns
        return _SELECT_RECORDS if self._tagged else _SELECT_RECORDS_V1

    def _open_read_only(self) -> None:
        if not self.path.exists():
            raise StoreError(f"{self.path}: no store here")
        conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA query_only = 1")
            self._conn = conn
            self._load()
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise StoreError(f"{self.path}: cannot read the store: {exc}") from None

    def _load(self) -> None:
        conn = self.conn
        highest = conn.execute("SELECT MAX(seq) FROM records").fetchone()[0] or 0
        kept = self._meta("last_seq") or 0
        self.last_seq = max(highest, int(kept))
        self._load_names()

    def _load_names(self) -> None:
        self._device_names = dict(self.conn.execute("SELECT id, name FROM devices"))
        self._device_ids = {name: id_ for id_, name in self._device_names.items()}
        self._series = {row[0]: tuple(row[1:]) for row in self.conn.execute("SELECT id, device, quantity, obis, unit FROM series")}
        self._series_ids = {key: id_ for id_, key in self._series.items()}

    def _persist_newest(self) -> None:
        """Bring series.last_seq up to date (last_readings then scans fewer records)."""
        mark = int(self._meta("newest_mark") or 0)
        if mark >= self.last_seq:
            return
        with self._transaction():
            self.conn.execute(
                f"UPDATE series SET last_seq = newest.seq FROM ({_NEWEST_SINCE})"
                " AS newest WHERE series.id = newest.series",
                (mark,),
            )
            self._set_meta("newest_mark", self.last_seq)

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            if not self.read_only:
                try:
                    self._persist_newest()
                except sqlite3.Error as exc:
                    log.warning("store %s: cannot save the newest readings: %s", self.path, exc)
                self._checkpoint_quietly()
        finally:
            self._conn.close()
            self._conn = None
            self._release_writer_lock()

    # -- quarantine --

    def _quarantine(self, reason: str) -> None:
        stamp = self.clock().astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        number = 1
        while target.exists():
            number += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{number}")
        for suffix in ("-wal", "-shm", ""):
            source = Path(str(self.path) + suffix)
            if source.exists():
                os.replace(source, Path(str(target) + suffix))
        salvaged_seq, state, state_read = _salvage(target)
        carried = max(salvaged_seq, self._reserved)
        self._carry = (carried, state)
        log.error("store %s is corrupt (%s); moved it to %s and started a fresh store at seq %d", self.path, reason, target, carried + 1)
        if not state_read:
            log.error("store %s: the durable state of the corrupt file cannot be read: outgoing invocation counters "
                      "go on above %s, but the last incoming counters and profile positions are lost (an old "
                      "meter answer replayed now is not refused; profiles are read again from their backfill)",
                      self.path, self.high_water_file)
        self._pending.append(
            Event(
                code="store.quarantined",
                severity=Severity.ERROR,
                message=f"the store file was corrupt ({reason}); it was moved to {target.name} and a fresh store started",
                occurred_at=self.clock(),
                source="store",
                details={
                    "file": str(target),
                    "reason": reason[:500],
                    "readable_last_seq": salvaged_seq,
                    "reserved_seq": self._reserved,
                    "next_seq": carried + 1,
                    "state_keys_salvaged": len(state),
                    "state_readable": "yes" if state_read else "no",
                    "high_water_keys": len(self._high_water),
                },
            )
        )

    def _take_carry_over(self) -> None:
        """Into a fresh store after quarantine: the seq high-water mark and what could be
        read of the durable state (invocation counters must not go back)."""
        if self._carry is None:
            return
        carried, state = self._carry
        with self._transaction():
            self._set_meta("last_seq", carried)
            self.conn.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", state.items())
        self._carry = None

    # -- sequence reservation (side file) --

    def _read_seq_file(self) -> int:
        try:
            text = self.seq_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"{self.seq_file}: cannot read the sequence reservation: {exc.strerror}") from None
        try:
            return int(text)
        except ValueError:
            log.error("%s does not hold a number (%r); ignoring it", self.seq_file, text[:40])
            return 0

    def _reserve_seqs(self, through: int) -> None:
        if through <= self._reserved:
            return
        reserved = through + SEQ_RESERVATION
        _write_durably(self.seq_file, f"{reserved}\n".encode("ascii"))
        self._reserved = reserved

    # -- high-water marks of incremented state (side file) --

    def _read_high_water(self) -> dict[str, int]:
        try:
            text = self.high_water_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StoreError(f"{self.high_water_file}: cannot read the counters' high-water marks: {exc.strerror}") from None
        try:
            marks = json.loads(text)
            return {str(key): int(value) for key, value in marks.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            # the state table holds the same values unless it was lost too; the file is
            # written again, from the state, at the next increment
            log.error("%s is damaged (%s); the counters go on from the store's state", self.high_water_file, exc)
            return {}

    def _merge_high_water(self) -> None:
        """Raise every incremented state value to its mark in the side file (a fresh store
        after a quarantine, or a store that lost its last commit in a power cut)."""
        behind = []
        for key, mark in self._high_water.items():
            current = self.get_state(key)
            try:
                if current is not None and int(current) >= mark:
                    continue
            except ValueError:
                pass
            behind.append((key, str(mark)))
        if behind:
            log.warning("store %s: %d counters raised to their high-water marks in %s", self.path, len(behind),
                        self.high_water_file)
            with self._transaction():
                self.conn.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", behind)

    def _raise_high_water(self, key: str, value: int) -> None:
        """Record ``value`` as the mark of ``key`` in the side file, durably, before the
        value is committed (and so before the caller hands out anything below it)."""
        if value <= self._high_water.get(key, 0):
            return
        marks = {**self._high_water, key: value}
        _write_durably(self.high_water_file, json.dumps(marks, sort_keys=True, indent=0).encode("utf-8"))
        self._high_water = marks

    # -- disk-full reserve --

    def _cap_growth(self) -> None:
        """On a full disk the database file must not grow any more: new records reuse the
        pages that dropping the oldest frees (SQLite then reports SQLITE_FULL *before* it
        writes to the WAL, so the WAL keeps the room it has)."""
        try:
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            self.conn.execute(f"PRAGMA max_page_count = {pages}")
        except sqlite3.Error as exc:
            log.debug("store %s: cannot cap the file size: %s", self.path, exc)
            return
        self.capped = True

    def _lift_cap_when_there_is_room(self) -> None:
        if not self.capped or shutil.disk_usage(self.path.parent).free < 2 * self.reserve_bytes:
            return
        self.conn.execute(f"PRAGMA max_page_count = {MAX_PAGE_COUNT}")
        self.capped = False
        log.warning("store %s: the disk has room again; the store may grow up to max_bytes", self.path)
        self._ensure_reserve()

    def _ensure_reserve(self) -> None:
        if self.read_only or self.capped or self.reserve_file.exists():
            return
        try:
            _write_reserve(self.reserve_file, self.reserve_bytes)
        except OSError as exc:
            log.warning("cannot create the disk-full reserve %s: %s", self.reserve_file, exc.strerror)

    def _release_reserve(self) -> bool:
        try:
            self.reserve_file.unlink()
        except FileNotFoundError:
            return False
        return True

    # -- transactions --

    @contextmanager
    def _transaction(self) -> Iterator[_Transaction]:
        conn = self.conn
        tx = _Transaction(next_seq=self.last_seq + 1, stored_ms=to_ms(self.clock()))
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield tx
            self._reserve_seqs(tx.next_seq - 1)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if tx.next_seq - 1 != self.last_seq:
            self.last_seq = tx.next_seq - 1
            if self.on_commit is not None:
                self.on_commit(self.last_seq)

    def _rollback(self) -> None:
        """Roll back, and forget the ids handed out in the rolled-back transaction."""
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._load_names()
        except sqlite3.Error as exc:
            log.error("store %s: rollback failed: %s", self.path, exc)
            for names in (self._device_ids, self._device_names, self._series_ids, self._series):
                names.clear()

    @contextmanager
    def _durable(self) -> Iterator[None]:
        """Commits inside survive power loss even when the store runs synchronous=NORMAL."""
        if self.config.synchronous == "full":
            yield
            return
        self.conn.execute("PRAGMA synchronous = FULL")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA synchronous = NORMAL")

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """SQLite and OS errors as the gateway's: StoreFullError for a full disk."""
        self._writable()
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if _is_full(exc):
                raise StoreFullError(f"{self.path}: the disk is full while {doing}") from exc
            raise StoreError(f"{self.path}: {doing} failed: {exc}") from exc

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.path}: the store was opened read-only")

    # -- inserting --

    def _insert(self, tx: _Transaction, records: Sequence[Record]) -> range:
        """Insert records with the next seqs of the transaction; returns their seqs."""
        first = tx.next_seq
        if not records:
            return range(first, first)
        rows = _Rows(self, tx.stored_ms, last_seq=first + len(records) - 1)
        for seq, record in enumerate(records, first):
            if type(record) is Reading or isinstance(record, Reading):
                rows.reading(seq, record)
            elif isinstance(record, Event):
                rows.event(seq, record)
            else:
                raise StoreError(f"not a record: {type(record).__name__}")
        self.conn.executemany(_INSERT_RECORD, rows.rows)
        tx.next_seq = first + len(records)
        return range(first, tx.next_seq)

    def _device_id(self, name: str) -> int:
        id_ = self.conn.execute(
            "INSERT INTO devices (name) VALUES (?) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id", (name,)
        ).fetchone()[0]
        self._device_ids[name] = id_
        self._device_names[id_] = name
        return id_

    def _series_id(self, key: tuple[int, str, str | None, str | None]) -> int:
        row = self.conn.execute(
            "SELECT id FROM series WHERE device = ? AND quantity = ? AND obis IS ? AND unit IS ?", key
        ).fetchone() or self.conn.execute(
            "INSERT INTO series (device, quantity, obis, unit) VALUES (?, ?, ?, ?) RETURNING id", key
        ).fetchone()
        id_ = row[0]
        self._series_ids[key] = id_
        self._series[id_] = key
        return id_

    # -- appending --

    def append(self, records: Sequence[Record], state: Mapping[str, str] | None = None) -> list[int]:
        self._writable()
        if self.capped:
            self._lift_cap_when_there_is_room()
        internal = list(self._pending)
        if self.full_since is not None:
            internal.append(self._recovered_event())
        try:
            with self._transaction() as tx:
                self._insert(tx, internal)
                seqs = self._insert(tx, records)
                if state:
                    self.conn.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)",
                                          [(key, str(value)) for key, value in state.items()])
        except (sqlite3.Error, OSError) as exc:
            if _is_full(exc):
                self._make_room(len(records))
            raise StoreError(f"{self.path}: appending {len(records)} records failed: {exc}") from exc
        except (UnicodeEncodeError, ValueError, OverflowError) as exc:
            # SQLite takes UTF-8 text and 64-bit integers only: nothing was stored
            raise StoreError(f"{self.path}: cannot store {_unstorable(records)}: {exc}") from exc
        self._pending.clear()
        if self.full_since is not None:
            log.warning("store %s: writes succeed again", self.path)
            self.full_since = None
        return list(seqs)

    def append_audit(self, entry: dict[str, Any], make_event: Callable[[dict[str, Any]], Event]) -> dict[str, Any]:
        """Append ``entry`` (at, action, actor, details) to the audit chain and its event to
        the records, in one transaction; returns the entry with its id, prev and hash."""
        from gateway.audit import chain_hash

        with self._errors("appending to the audit log"), self._durable(), self._transaction() as tx:
            row = self.conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            number, prev = (row[0] + 1, row[1]) if row else (1, "")
            entry = {**entry, "id": number, "prev": prev}
            entry["hash"] = chain_hash(entry)
            self.conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?)",
                              (number, entry["at"], entry["action"], entry["actor"],
                               json.dumps(entry["details"], sort_keys=True), prev, entry["hash"]))
            self._insert(tx, [make_event(entry)])
        return entry

    def audit_log(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT id, at, action, actor, details, prev, hash FROM audit ORDER BY id")
        return [{"id": i, "at": at, "action": action, "actor": actor, "details": json.loads(details), "prev": prev,
                 "hash": digest} for i, at, action, actor, details, prev, digest in rows]

    def transact(self, work: Callable[[sqlite3.Connection, int], tuple[T, Sequence[Record]]],
                 doing: str) -> tuple[T, list[int]]:
        """Run ``work(connection, next seq)`` and append the records it returns, in one
        durable transaction (tables of other modules: the operations queue)."""
        with self._errors(doing), self._durable(), self._transaction() as tx:
            result, records = work(self.conn, tx.next_seq)
            seqs = self._insert(tx, records)
        return result, list(seqs)

    def query(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` for reading (a read-only store too)."""
        try:
            return work(self.conn)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: reading failed: {exc}") from exc

    def _recovered_event(self) -> Event:
        now = self.clock()
        assert self.full_since is not None
        seconds = max(0, round((now - self.full_since).total_seconds()))
        return Event(
            code="store.recovered",
            severity=Severity.INFO,
            message=f"the store accepts writes again after the disk was full for {seconds} s",
            occurred_at=now,
            source="store",
            details={"full_since": utc_text(self.full_since), "full_s": seconds},
        )

    def _make_room(self, wanted: int) -> NoReturn:
        """After a write failed on a full disk: free the reserve, drop the oldest records
        (acknowledged ones come first: they are the oldest), then tell the caller to retry."""
        now = self.clock()
        if self.full_since is None:
            self.full_since = now
            log.error("store %s: the disk is full; dropping the oldest records to make room", self.path)
            self._pending.append(
                Event(
                    code="store.disk_full",
                    severity=Severity.ERROR,
                    message="the disk holding the store is full; the oldest records are dropped to make room",
                    occurred_at=now,
                    source="store",
                    details={"path": str(self.path)},
                )
            )
        self._release_reserve()
        self._checkpoint_quietly()
        self._cap_growth()
        dropped = 0
        first = self._first_seq()
        if first is not None:
            stored = self.last_seq - first + 1
            count = max(2 * wanted, math.ceil(stored / 100), 1)
            try:
                dropped = self._drop_through(min(first + count - 1, self.last_seq), "disk_full")
            except (sqlite3.Error, OSError) as exc:
                if not _is_full(exc):
                    raise StoreError(f"{self.path}: dropping records on a full disk failed: {exc}") from exc
                log.error("store %s: the disk is too full even to drop records", self.path)
            self._checkpoint_quietly()
        freed = f"the {dropped} oldest records were dropped to make room; retry" if dropped else "nothing could be freed"
        raise StoreFullError(f"{self.path}: the disk is full; the batch was rolled back and {freed}")

    def _flush_pending(self) -> None:
        if not self._pending:
            return
        try:
            with self._transaction() as tx:
                self._insert(tx, self._pending)
            self._pending.clear()
        except (sqlite3.Error, OSError) as exc:
            if not _is_full(exc):
                raise StoreError(f"{self.path}: cannot write the store's events: {exc}") from exc
            log.error("store %s: the disk is full; the store's events wait for the next write", self.path)

    # -- dropping --

    def _first_seq(self) -> int | None:
        return self.conn.execute("SELECT MIN(seq) FROM records").fetchone()[0]

    def _drop_through(self, upto: int, reason: str) -> int:
        """Delete every record with seq <= upto in one transaction that also stores the
        ``store.dropped`` event (and any of the store's events still waiting). The delete
        comes first: on a full disk the new events need the pages it frees."""
        conn = self.conn
        with self._transaction() as tx:
            first = self._first_seq()
            per_device = conn.execute(
                "SELECT d.name, COUNT(*) FROM records r NOT INDEXED LEFT JOIN devices d ON d.id = r.device"
                " WHERE r.seq <= ? GROUP BY r.device",
                (upto,),
            ).fetchall()
            count = sum(n for _, n in per_device)
            events = list(self._pending)
            if count:
                slowest = conn.execute("SELECT MIN(seq) FROM cursors").fetchone()[0] or 0
                unsent = conn.execute("SELECT COUNT(*) FROM records WHERE seq > ? AND seq <= ?", (slowest, upto)).fetchone()[0]
                conn.execute("DELETE FROM records WHERE seq <= ?", (upto,))
                conn.execute("DELETE FROM frames WHERE last_seq <= ?", (upto,))
                self._names_stale = True
                self._set_meta("dropped_total", int(self._meta("dropped_total") or 0) + count)
                events.append(_dropped_event(self.clock(), reason, count, first, upto, unsent, per_device))
            self._insert(tx, events)
            self._set_meta("last_seq", tx.next_seq - 1)
        self._pending.clear()
        if count:
            log.warning("store %s: dropped %d records (seq %s..%d, %s)", self.path, count, first, upto, reason)
        return count

    def _prune_names(self) -> None:
        """Forget the series and devices no stored record refers to any more (a radio
        neighbourhood full of transmitters, or one inventing identities, must not grow the
        store past ``max_bytes``). Runs after :meth:`_persist_newest`: a series whose newest
        reading lies before the first stored seq has none left. The row with the highest id
        of each table stays, so SQLite (which hands out max + 1) never reuses an id: a
        reader holding names from before cannot mistake a new device for an old one."""
        first = self._first_seq()
        below = self.last_seq + 1 if first is None else first
        with self._transaction():
            series = self.conn.execute(
                "DELETE FROM series WHERE last_seq < ? AND id < (SELECT MAX(id) FROM series)", (below,)).rowcount
            devices = self.conn.execute(
                "DELETE FROM devices WHERE id < (SELECT MAX(id) FROM devices)"
                " AND NOT EXISTS (SELECT 1 FROM records WHERE records.device = devices.id)"
                " AND id NOT IN (SELECT device FROM series)").rowcount
        self._names_stale = False
        if series or devices:
            self._load_names()
            log.info("store %s: forgot %d devices and %d series without stored records", self.path, devices, series)

    def _drop_in_chunks(self, upto: int, reason: str) -> int:
        dropped = 0
        first = self._first_seq()
        while first is not None and first <= upto:
            dropped += self._drop_through(min(upto, first + DROP_CHUNK - 1), reason)
            first = self._first_seq()
        return dropped

    def _age_limit(self) -> int | None:
        """The highest seq older than max_age_days (records are dropped as a prefix)."""
        cutoff = to_ms(self.clock() - timedelta(days=self.config.max_age_days))
        young = self.conn.execute("SELECT seq FROM records WHERE stored_ms >= ? ORDER BY seq LIMIT 1", (cutoff,)).fetchone()
        if young is not None:
            return young[0] - 1
        return self.conn.execute("SELECT MAX(seq) FROM records").fetchone()[0]

    def _size_limit(self) -> int | None:
        """The highest seq to drop so the used pages fall to SIZE_HYSTERESIS × max_bytes."""
        used = self._used_bytes()
        if used <= self.config.max_bytes:
            return None
        first = self._first_seq()
        if first is None:
            return None
        per_record = used / (self.last_seq - first + 1)
        count = math.ceil((used - self.config.max_bytes * SIZE_HYSTERESIS) / per_record)
        return first + count - 1

    def _used_bytes(self) -> int:
        conn = self.conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * conn.execute("PRAGMA page_size").fetchone()[0]

    def enforce_retention(self) -> int:
        with self._errors("enforcing retention"):
            dropped = 0
            for limit, reason in ((self._age_limit, "max_age"), (self._size_limit, "max_bytes")):
                upto = limit()
                if upto is not None:
                    dropped += self._drop_in_chunks(upto, reason)
            self._flush_pending()
            self._persist_newest()
            if self._names_stale:
                self._prune_names()
            self._checkpoint_quietly()
            self._lift_cap_when_there_is_room()
            self._ensure_reserve()
            return dropped

    def _checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _checkpoint_quietly(self) -> None:
        try:
            self._checkpoint()
        except sqlite3.Error as exc:
            log.debug("store %s: checkpoint failed: %s", self.path, exc)

    # -- meta, cursors, state --

    def _meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def cursor(self, uplink: str) -> int:
        row = self.conn.execute("SELECT seq FROM cursors WHERE uplink = ?", (uplink,)).fetchone()
        if row is not None:
            return row[0]
        if not self.read_only:  # a new uplink counts from now on when deciding what is unsent
            with self._errors(f"registering uplink {uplink!r}"), self._transaction():
                self.conn.execute("INSERT OR IGNORE INTO cursors VALUES (?, 0)", (uplink,))
        return 0

    def advance_cursor(self, uplink: str, seq: int) -> None:
        if seq < 0 or seq > self.last_seq:
            raise StoreError(f"cursor of {uplink!r} cannot move to {seq}: the last stored seq is {self.last_seq}")
        with self._errors(f"moving the cursor of {uplink!r}"), self._transaction():
            self.conn.execute(
                "INSERT INTO cursors VALUES (?, ?) ON CONFLICT (uplink) DO UPDATE SET seq = MAX(seq, excluded.seq)", (uplink, seq)
            )

    def get_state(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_state(self, key: str, value: str) -> None:
        with self._errors(f"saving state {key!r}"), self._durable(), self._transaction():
            self.conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, str(value)))

    def increment_state(self, key: str, by: int) -> int:
        with self._errors(f"incrementing state {key!r}"), self._durable(), self._transaction():
            current = self.get_state(key)
            try:
                value = max(0 if current is None else int(current), self._high_water.get(key, 0)) + by
            except ValueError:
                raise StoreError(f"state {key!r} holds {current!r}, not an integer") from None
            self._raise_high_water(key, value)
            self.conn.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (key, str(value)))
        return value

    # -- reading --

    def read_after(self, seq: int, limit: int) -> list[StoredRecord]:
        rows = self.conn.execute(f"{self._select_records} WHERE r.seq > ? ORDER BY r.seq LIMIT ?", (seq, limit)).fetchall()
        if rows:
            self._make_durable(rows[-1][0])
        return self._rebuild(rows)

    def _make_durable(self, seq: int) -> None:
        """With synchronous=NORMAL a commit may still be only in the page cache. Records
        handed to an uplink must survive a power cut, or their seqs could be given to other
        records after it: fsync the WAL (any descriptor flushes the file) before they leave."""
        if self.read_only or self.config.synchronous == "full" or seq <= self._durable_seq:
            return
        target = self.last_seq
        try:
            fd = os.open(str(self.path) + "-wal", os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and truncated: on disk already
            self._durable_seq = target
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._durable_seq = target

    def readings_page(self, after: int, device: str | None, limit: int, point: str | None = None) -> list[StoredRecord]:
        if point is not None:
            select = self._select_records
            if not self._tagged:
                return []  # a store of schema 1 has no points
            rows = self.conn.execute(
                f"{select} WHERE r.seq > ? AND r.kind = {READING} AND r.point = ? ORDER BY r.seq LIMIT ?",
                (after, point, limit)).fetchall()
        elif device is None:
            rows = self.conn.execute(
                f"{self._select_records} WHERE r.seq > ? AND r.kind = {READING} ORDER BY r.seq LIMIT ?", (after, limit)
            ).fetchall()
        else:
            device_id = self._device_ids.get(device)
            if device_id is None:
                self._load_names()
                device_id = self._device_ids.get(device)
                if device_id is None:
                    return []
            rows = self.conn.execute(
                f"{self._select_records} WHERE r.device = ? AND r.seq > ? AND r.kind = {READING} ORDER BY r.seq LIMIT ?",
                (device_id, after, limit),
            ).fetchall()
        return self._rebuild(rows)

    # -- profiles for the DLMS server: rows streamed by seq, never a whole table --

    def _known_device(self, device: str) -> int | None:
        device_id = self._device_ids.get(device)
        if device_id is None:
            self._load_names()
            device_id = self._device_ids.get(device)
        return device_id

    def device_names(self) -> list[str]:
        return [name for (name,) in self.conn.execute("SELECT name FROM devices ORDER BY id")]

    def device_series(self, device: str, exponents: bool) -> list[SeriesInfo]:
        device_id = self._known_device(device)
        if device_id is None:
            return []
        smallest = {} if not exponents else dict(self.conn.execute(
            f"SELECT series, MIN({_EXPONENT}) FROM records WHERE device = ? AND kind = {READING}"
            " AND vtype IN ('d', 'i') AND value NOT GLOB '*[IN]*' GROUP BY series", (device_id,)))
        rows = self.conn.execute("SELECT id, quantity, obis, unit FROM series WHERE device = ? ORDER BY id", (device_id,))
        return [SeriesInfo(id_, quantity, obis, unit, smallest.get(id_)) for id_, quantity, obis, unit in rows]

    def capture_count(self, device: str, upto: int, start: str | None, end: str | None) -> int:
        device_id = self._known_device(device)
        if device_id is None:
            return 0
        window, args = _window(start, end)
        query = f"SELECT COUNT(*) FROM ({_CAPTURES.format(window=window)}) WHERE {_NEW_CAPTURE}"
        return self.conn.execute(query, (device_id, upto, *args)).fetchone()[0]

    def capture_start(self, device: str, upto: int, start: str | None, end: str | None, entry: int) -> int | None:
        """The seq of the first reading of capture number ``entry`` (1-based), or None."""
        device_id = self._known_device(device)
        if device_id is None:
            return None
        window, args = _window(start, end)
        query = f"SELECT seq FROM ({_CAPTURES.format(window=window)}) WHERE {_NEW_CAPTURE} LIMIT 1 OFFSET ?"
        row = self.conn.execute(query, (device_id, upto, *args, entry - 1)).fetchone()
        return None if row is None else row[0]

    def capture_rows(self, device: str, after: int, upto: int, start: str | None, end: str | None,
                     limit: int) -> list[tuple[int, str, int, Any, str | None]]:
        """Up to ``limit`` readings ``(seq, captured_at, series, value, vtype)`` of a device
        with after < seq <= upto, ascending; values as stored (see :func:`decode_value`)."""
        device_id = self._known_device(device)
        if device_id is None:
            return []
        window, args = _window(start, end)
        return self.conn.execute(
            f"SELECT seq, captured_at, series, value, vtype FROM records WHERE device = ? AND kind = {READING}"
            f" AND seq > ? AND seq <= ?{window} ORDER BY seq LIMIT ?", (device_id, after, upto, *args, limit)).fetchall()

    def event_count(self, upto: int, start: str | None, end: str | None) -> int:
        window, args = _window(start, end)
        return self.conn.execute(f"SELECT COUNT(*) FROM records WHERE kind = {EVENT} AND seq <= ?{window}",
                                 (upto, *args)).fetchone()[0]

    def event_start(self, upto: int, start: str | None, end: str | None, entry: int) -> int | None:
        window, args = _window(start, end)
        row = self.conn.execute(f"SELECT seq FROM records WHERE kind = {EVENT} AND seq <= ?{window}"
                                " ORDER BY seq LIMIT 1 OFFSET ?", (upto, *args, entry - 1)).fetchone()
        return None if row is None else row[0]

    def event_rows(self, after: int, upto: int, start: str | None, end: str | None,
                   limit: int) -> list[tuple[int, str, str | None, str, str, str]]:
        """Up to ``limit`` events ``(seq, occurred_at, device, code, severity, message)``."""
        window, args = _window(start, end)
        return self.conn.execute(
            f"SELECT r.seq, r.captured_at, d.name, r.code, r.severity, r.message FROM records r"
            f" LEFT JOIN devices d ON d.id = r.device WHERE r.kind = {EVENT} AND r.seq > ? AND r.seq <= ?{window}"
            " ORDER BY r.seq LIMIT ?", (after, upto, *args, limit)).fetchall()

    def has_events_after(self, seq: int) -> bool:
        return self.conn.execute(f"SELECT 1 FROM records WHERE kind = {EVENT} AND seq > ? LIMIT 1",
                                 (seq,)).fetchone() is not None

    def state_items(self, prefix: str) -> dict[str, str]:
        # a range of the primary key (LIKE would ignore case): every key that starts with prefix
        return dict(self.conn.execute("SELECT key, value FROM state WHERE key >= ? AND key < ?",
                                      (prefix, prefix + "\U0010ffff")))

    def last_readings(self) -> list[StoredRecord]:
        """The newest reading per (device, quantity) (a quantity whose unit or OBIS code
        changed has several series; the newest wins)."""
        conn = self.conn
        mark = int(self._meta("newest_mark") or 0)
        seqs = dict(conn.execute("SELECT id, last_seq FROM series WHERE last_seq > 0"))
        seqs.update(conn.execute(_NEWEST_SINCE, (mark,)))
        wanted = sorted(seqs.values())
        rows = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += conn.execute(f"{self._select_records} WHERE r.seq IN ({marks}) ORDER BY r.seq", chunk).fetchall()
        newest: dict[tuple[str, str], StoredRecord] = {}
        for stored in self._rebuild(rows):
            reading = stored.record
            assert isinstance(reading, Reading)
            newest[(reading.device, reading.quantity)] = stored
        return sorted(newest.values(), key=lambda s: (s.record.device, s.record.quantity))  # type: ignore[union-attr]

    def _rebuild(self, rows: list[tuple[Any, ...]]) -> list[StoredRecord]:
        out: list[StoredRecord] = []
        frames: dict[int, bytes] = {}
        # The readings of one read share their capture time: parsed once, one object (the
        # uplink prints it once per run of them, see payload._TimeTexts).
        captured_text, captured_at = None, None
        meter_text, meter_at = None, None
        for seq, kind, device, series, value, vtype, meter_time, captured, stored_ms, status, frame, raw, code, severity, message, source, details, point, metrological, protection, flags in rows:  # fmt: skip
            if kind == READING:
                device_id, quantity, obis, unit = self._series.get(series) or self._reload_series(series)
                if frame is not None:
                    raw = frames.setdefault(frame, raw)
                if captured != captured_text:
                    captured_text, captured_at = captured, datetime.fromisoformat(captured)
                if meter_time != meter_text:
                    meter_text, meter_at = meter_time, None if meter_time is None else datetime.fromisoformat(meter_time)
                record: Record = Reading(
                    device=self._device_names[device_id],
                    quantity=quantity,
                    value=decode_value(value, vtype),
                    unit=unit,
                    captured_at=captured_at,
                    meter_time=meter_at,
                    obis=obis,
                    status=status,
                    raw=raw,
                    point=point,
                    metrological=None if metrological is None else bool(metrological),
                    protection=protection,
                    flags=tuple(flags.split(",")) if flags else (),
                )
            else:
                if device is not None and device not in self._device_names:
                    self._load_names()
                record = Event(
                    code=code,
                    severity=Severity(severity),
                    message=message,
                    occurred_at=datetime.fromisoformat(captured),
                    device=None if device is None else self._device_names[device],
                    source=source,
                    details={} if details is None else json.loads(details),
                )
            out.append(StoredRecord(seq=seq, record=record, stored_at=from_ms(stored_ms)))
        return out

    def _reload_series(self, series: int) -> tuple[int, str, str | None, str | None]:
        """A reader sees series the writer process added after it loaded its names."""
        self._load_names()
        try:
            return self._series[series]
        except KeyError:
            raise StoreError(f"{self.path}: record refers to unknown series {series}") from None

    # -- statistics --

    def stats(self) -> StoreStats:
        conn = self.conn
        if self.read_only:
            self._load()
        # the stored seqs are one contiguous range, so no row needs to be read to count them
        first = conn.execute("SELECT MIN(seq) FROM records").fetchone()[0]
        highest = conn.execute("SELECT MAX(seq) FROM records").fetchone()[0]
        records = 0 if first is None else highest - first + 1
        events = conn.execute(f"SELECT COUNT(*) FROM records WHERE kind = {EVENT}").fetchone()[0]
        cursors = dict(conn.execute("SELECT uplink, seq FROM cursors ORDER BY uplink"))
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        wal = Path(str(self.path) + "-wal")
        return StoreStats(
            records=records,
            readings=records - events,
            events=events,
            bytes=pages * page_size,
            free_bytes=free * page_size,
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
            first_seq=first,
            last_seq=self.last_seq,
            cursors=cursors,
            backlog={uplink: self.last_seq - max(seq, (first or self.last_seq + 1) - 1) for uplink, seq in cursors.items()},
            dropped_total=int(self._meta("dropped_total") or 0),
            quarantined=tuple(quarantined_files(self.path)),
            disk_full=self.full_since is not None or self.capped,
            full_since=self.full_since,
        )


def writer_running(path: Path) -> bool:
    """Whether a process (the daemon) holds the store's writer lock right now."""
    lock_file = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def quarantined_files(path: Path) -> list[Path]:
    """The quarantined copies of the store at ``path`` (not their -wal/-shm companions)."""
    return sorted(
        p for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm"))
    )


def _salvage(path: Path) -> tuple[int, dict[str, str], bool]:
    """What can still be read of a corrupt store: its highest seq, its state rows, and
    whether the state table could be read to its end."""
    highest = 0
    state: dict[str, str] = {}
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return highest, state, False
    complete = False
    try:
        for query in ("SELECT MAX(seq) FROM records", "SELECT value FROM meta WHERE key = 'last_seq'"):
            try:
                highest = max(highest, int(conn.execute(query).fetchone()[0] or 0))
            except (sqlite3.Error, TypeError, ValueError):
                pass
        try:
            for key, value in conn.execute("SELECT key, value FROM state"):
                state[key] = value
            complete = True
        except sqlite3.Error:
            pass
    finally:
        conn.close()
    return highest, state, complete


def _unstorable(records: Sequence[Record]) -> str:
    """Which record SQLite cannot take (text that is not valid UTF-8, an integer beyond 64
    bits), named by device and quantity (or event code)."""
    for record in records:
        if isinstance(record, Reading):
            fields: tuple[Any, ...] = (record.device, record.quantity, record.value, record.unit, record.obis,
                                       record.status)
            name = f"the reading of device {record.device!r}, quantity {record.quantity!r}"
        else:
            fields = (record.code, record.message, record.device, record.source,
                      json.dumps(record.details, ensure_ascii=False, default=str))
            name = f"the event {record.code!r} of device {record.device!r}"
        if any(not _storable(field) for field in fields):
            return name
    return f"a batch of {len(records)} records"


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    elif isinstance(value, int) and not isinstance(value, bool):
        return -(1 << 63) <= value < (1 << 63)
    return True


def _dropped_event(
    now: datetime, reason: str, count: int, first: int, upto: int, unsent: int, per_device: list[tuple[str | None, int]]
) -> Event:
    why = {"max_age": "older than max_age_days", "max_bytes": "the store reached max_bytes", "disk_full": "the disk is full"}
    details: dict[str, str | int] = {"reason": reason, "count": count, "first_seq": first, "last_seq": upto, "unsent": unsent}
    for device, n in sorted(per_device, key=lambda item: item[0] or ""):
        details[f"device:{device}" if device is not None else "no_device"] = n
    unsent_text = f"{unsent} of them had not been sent to every uplink" if unsent else "all had been sent"
    return Event(
        code="store.dropped",
        severity=Severity.ERROR if unsent else Severity.WARNING,
        message=f"dropped the {count} oldest records (seq {first} to {upto}) because {why[reason]}; {unsent_text}",
        occurred_at=now,
        source="store",
        details=details,
    )


def _write_durably(path: Path, data: bytes) -> None:
    """Replace a small file atomically and durably (write, fsync, rename, fsync directory)."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_reserve(path: Path, size: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.write(fd, bytes(size))  # the file system cannot preallocate: write zeros
        os.fsync(fd)
    except OSError:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, path)


# -- the asynchronous face ------------------------------------------------------------------


class Store:
    """The outbox, used as ``async with Store(path, config) as store: ...``.

    ``read_only=True`` opens an existing store for reading next to a running daemon (WAL
    allows it): no integrity check, no quarantine, no writes.
    """

    def __init__(
        self, path: Path, config: StoreSection, *, clock: Callable[[], datetime] = utc_now, read_only: bool = False,
        high_water_file: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config
        self._sync = _SyncStore(self.path, config, clock, read_only, high_water_file)
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_seq = 0
        self._grown = asyncio.Event()

    async def __aenter__(self) -> Store:
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._sync.on_commit = self._committed_from_thread
        try:
            await self._call(self._sync.open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._call(self._sync.close)
        finally:
            self._executor = None
            executor.shutdown(wait=True)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        if self._executor is None or self._loop is None:
            raise StoreError("the store is not open (use `async with Store(...)`)")
        try:
            return await self._loop.run_in_executor(self._executor, functools.partial(function, *args))
        finally:
            self._committed(self._sync.last_seq)

    def _committed_from_thread(self, seq: int) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, seq)

    def _committed(self, seq: int) -> None:
        if seq > self._last_seq:
            self._last_seq = seq
            grown, self._grown = self._grown, asyncio.Event()
            grown.set()

    # -- writing --

    async def append(self, records: Sequence[Record], *, state: Mapping[str, str] | None = None) -> list[int]:
        """Commit ``records`` in one transaction; durable when this returns (per the
        ``synchronous`` setting). Returns their seqs, in order. ``state``: durable state
        values (:meth:`set_state`) written in the same transaction, so that what records
        were collected and how far collecting got never disagree after a crash (a profile's
        last entry read, a meter's last message counter). Raises :class:`StoreFullError`
        when the disk is full: nothing was stored, the oldest records were dropped to make
        room, retry."""
        return await self._call(self._sync.append, list(records), dict(state) if state else None)

    async def advance_cursor(self, uplink: str, seq: int) -> None:
        """Move an uplink's cursor to ``seq`` (everything up to it was acknowledged).
        Never moves backwards; a seq beyond :attr:`last_seq` is an error."""
        await self._call(self._sync.advance_cursor, uplink, seq)

    async def reconfigure(self, config: StoreSection) -> None:
        """Apply new ``max_bytes``, ``max_age_days`` and ``synchronous`` to the open store
        (the next :meth:`enforce_retention` uses the new bounds). The path cannot change."""
        await self._call(self._sync.reconfigure, config)
        self.config = config

    async def enforce_retention(self) -> int:
        """Drop the oldest records beyond ``max_age_days`` and ``max_bytes`` (a
        ``store.dropped`` event per drop), checkpoint and truncate the WAL, recreate the
        disk-full reserve. Returns how many records were dropped. Call it periodically."""
        return await self._call(self._sync.enforce_retention)

    async def append_audit(self, entry: dict[str, Any], make_event: Callable[[dict[str, Any]], Event]) -> dict[str, Any]:
        """Append to the audit log and store its event (see :mod:`gateway.audit`)."""
        return await self._call(self._sync.append_audit, entry, make_event)

    async def audit_log(self) -> list[dict[str, Any]]:
        return await self._call(self._sync.audit_log)

    async def transact(self, work: Callable[[sqlite3.Connection, int], tuple[T, Sequence[Record]]],
                       doing: str = "writing") -> tuple[T, list[int]]:
        """Run ``work(connection, next_seq)`` on the writer thread and append the records it
        returns, in one durable transaction: ``(its result, the records' seqs)``; the first
        record gets ``next_seq``. For modules that keep a table of their own beside the
        records (the operations queue)."""
        return await self._call(self._sync.transact, work, doing)

    async def query(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` on the store's thread for reading (read-only stores too)."""
        return await self._call(self._sync.query, work)

    async def set_state(self, key: str, value: str) -> None:
        """Durable small key-value state (survives power loss even with synchronous=normal)."""
        await self._call(self._sync.set_state, key, value)

    async def increment_state(self, key: str, by: int = 1) -> int:
        """Add ``by`` to an integer state value (0 when missing) and return the new value,
        which is on disk before this returns: a crash can never hand it out again. The
        value never goes back, not even when the store file is quarantined or replaced:
        it is also kept in the high-water side file (see the module docstring)."""
        return await self._call(self._sync.increment_state, key, by)

    # -- reading --

    @property
    def last_seq(self) -> int:
        """The highest seq committed (0 for an empty new store)."""
        return self._last_seq

    async def wait_for_records(self, after_seq: int) -> None:
        """Return as soon as :attr:`last_seq` > ``after_seq`` (at once if it already is).
        Wrap it in ``asyncio.timeout`` where a bounded wait is wanted."""
        while self._last_seq <= after_seq:
            await self._grown.wait()

    async def read_after(self, seq: int, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` records with a seq above ``seq``, ascending."""
        return await self._call(self._sync.read_after, seq, limit)

    async def cursor(self, uplink: str) -> int:
        """The uplink's cursor: the highest seq it had acknowledged; 0 for a new uplink
        (which is registered, so retention counts what it has not yet been sent)."""
        return await self._call(self._sync.cursor, uplink)

    async def get_state(self, key: str) -> str | None:
        return await self._call(self._sync.get_state, key)

    async def query_readings(
        self, *, since_seq: int = 0, device: str | None = None, limit: int | None = None, point: str | None = None
    ) -> AsyncIterator[StoredRecord]:
        """Readings (not events) with a seq above ``since_seq``, ascending, optionally of
        one device or of one metering point (whichever devices served it); fetched a page
        at a time, never all at once."""
        after = since_seq
        remaining = limit
        while remaining is None or remaining > 0:
            size = QUERY_PAGE if remaining is None else min(QUERY_PAGE, remaining)
            page = await self._call(self._sync.readings_page, after, device, size, point)
            for stored in page:
                yield stored
            if len(page) < size:
                return
            after = page[-1].seq
            if remaining is not None:
                remaining -= len(page)

    async def last_readings(self) -> list[StoredRecord]:
        """The newest stored reading per (device, quantity), sorted by device and quantity."""
        return await self._call(self._sync.last_readings)

    async def state_items(self, prefix: str) -> dict[str, str]:
        """Every durable state value whose key starts with ``prefix``."""
        return await self._call(self._sync.state_items, prefix)

    # -- profiles for the DLMS server: counted and streamed page by page --
    # Readings of a device form captures (consecutive readings sharing captured_at); times
    # are :func:`time_key` strings, inclusive, None for open; ``upto`` is the highest seq
    # considered, so that a count and the rows read after it agree.

    async def device_names(self) -> list[str]:
        """Every device the store has had a record of, in the order they first came."""
        return await self._call(self._sync.device_names)

    async def device_series(self, device: str, *, exponents: bool = True) -> list[SeriesInfo]:
        """The series of ``device``, with the smallest exponent of their numeric values
        (which reads every reading of the device) unless ``exponents`` is False."""
        return await self._call(self._sync.device_series, device, exponents)

    async def capture_count(self, device: str, upto: int, start: str | None = None, end: str | None = None) -> int:
        return await self._call(self._sync.capture_count, device, upto, start, end)

    async def capture_start(self, device: str, upto: int, start: str | None, end: str | None,
                            entry: int) -> int | None:
        """The seq of the first reading of capture number ``entry`` (1-based), or None."""
        return await self._call(self._sync.capture_start, device, upto, start, end, entry)

    async def capture_rows(self, device: str, after: int, upto: int, start: str | None, end: str | None,
                           limit: int) -> list[tuple[int, str, int, Any, str | None]]:
        """Up to ``limit`` readings ``(seq, captured_at, series, value, vtype)`` after ``after``."""
        return await self._call(self._sync.capture_rows, device, after, upto, start, end, limit)

    async def event_count(self, upto: int, start: str | None = None, end: str | None = None) -> int:
        return await self._call(self._sync.event_count, upto, start, end)

    async def event_start(self, upto: int, start: str | None, end: str | None, entry: int) -> int | None:
        return await self._call(self._sync.event_start, upto, start, end, entry)

    async def event_rows(self, after: int, upto: int, start: str | None, end: str | None,
                         limit: int) -> list[tuple[int, str, str | None, str, str, str]]:
        """Up to ``limit`` events ``(seq, occurred_at, device, code, severity, message)``."""
        return await self._call(self._sync.event_rows, after, upto, start, end, limit)

    async def has_events_after(self, seq: int) -> bool:
        return await self._call(self._sync.has_events_after, seq)

    async def stats(self) -> StoreStats:
        return await self._call(self._sync.stats)
