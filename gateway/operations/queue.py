"""The durable operations queue: a table in the gateway's store, beside the records.

Every change of an operation is one durable transaction of the store (``synchronous=FULL``
for it whatever the store's setting), and an operation that ends writes its
``operation.result`` event in the same transaction as its outcome: the HES hears of every
outcome exactly as the queue records it, and a crash never leaves one without the other.

Concurrency: only one process writes the store (the daemon, or ``gateway op`` while no
daemon runs); the state changes are guarded in SQL (``WHERE state = 'queued'``), so a cancel
and a start that race settle on one of them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from gateway.model import Event
from gateway.operations.model import Operation, Outcome, Request, State, Step, compact_json
from gateway.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,    -- never reused: ids are quoted to the HES
    meter TEXT NOT NULL,                     -- configured meter name
    name TEXT NOT NULL,                      -- named operation, or get/set/action
    steps TEXT NOT NULL,                     -- JSON list of steps
    params TEXT NOT NULL,                    -- JSON object
    identity TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,                     -- queued, started, done
    outcome TEXT,
    results TEXT,                            -- JSON list, one entry per step answered
    error TEXT,
    progress TEXT,                           -- JSON object (image transfers)
    attempts INTEGER NOT NULL DEFAULT 0,
    submitted_at TEXT NOT NULL,
    deadline TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    event_seq INTEGER
);
CREATE INDEX IF NOT EXISTS operations_open ON operations(meter, id) WHERE state != 'done';
"""
_COLUMNS = ("id, meter, name, steps, params, identity, source, state, outcome, results, error, progress, attempts,"
            " submitted_at, deadline, started_at, finished_at, event_seq")
_SELECT = f"SELECT {_COLUMNS} FROM operations"

#: Builds the ``operation.result`` event of an operation that just ended.
EventOf = Callable[[Operation], Event]


def _text(moment: datetime | None) -> str | None:
    """UTC with microseconds always: the stored texts sort as the times they stand for."""
    return None if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _row(row: Sequence[Any]) -> Operation:
    (id_, meter, name, steps, params, identity, source, state, outcome, results, error, progress, attempts,
     submitted_at, deadline, started_at, finished_at, event_seq) = row
    request = Request(meter, name, tuple(Step.from_json(s) for s in json.loads(steps)), _time(deadline), identity,
                      source, json.loads(params))
    return Operation(id_, request, State(state), _time(submitted_at), None if outcome is None else Outcome(outcome),
                     tuple(json.loads(results)) if results else (), error, json.loads(progress) if progress else None,
                     attempts, _time(started_at), _time(finished_at), event_seq)


def _table_missing(exc: sqlite3.Error) -> bool:
    return "no such table" in str(exc)


class OperationQueue:
    """The queue on a store (``store`` is a callable: the gateway's store may be replaced by a
    reconfiguration). ``event_of`` makes the ``operation.result`` event of an ended
    operation; ``clock`` stamps the changes."""

    def __init__(self, store: Callable[[], Store], event_of: EventOf, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._event_of = event_of
        self._clock = clock
        self._prepared: Store | None = None

    async def prepare(self) -> None:
        """Create the table (once per store; every change does it first if need be)."""
        store = self._store()
        if self._prepared is not store:
            await store.transact(lambda conn, _seq: (_create(conn), ()), "creating the operations table")
            self._prepared = store

    # --- changes ---------------------------------------------------------------------------

    async def submit(self, request: Request, *, refused: str | None = None,
                     extra_events: Sequence[Event] = ()) -> Operation:
        """Queue ``request``; with ``refused`` it is stored as done (refused, with that reason)
        and its result event goes out at once, with ``extra_events`` (``security.refused``)."""
        now = self._clock()

        def work(conn: sqlite3.Connection, next_seq: int) -> tuple[Operation, Sequence[Event]]:
            cursor = conn.execute(
                "INSERT INTO operations (meter, name, steps, params, identity, source, state, submitted_at, deadline)"
                " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                (request.meter, request.name, compact_json([s.to_json() for s in request.steps]),
                 compact_json(request.params), request.identity, request.source, _text(now),
                 _text(request.deadline)))
            operation = _row(conn.execute(f"{_SELECT} WHERE id = ?", (cursor.lastrowid,)).fetchone())
            if refused is None:
                return operation, ()
            ended = self._end(conn, operation, Outcome.REFUSED, (), refused, now, next_seq)
            return ended, [self._event_of(ended), *extra_events]

        return (await self._transact(work, "queueing an operation"))[0]

    async def mark_started(self, operation: Operation) -> bool:
        """``queued`` → ``started``, durably, before anything is sent; False when the operation
        is no longer queued (cancelled meanwhile)."""
        def work(conn: sqlite3.Connection, _seq: int) -> tuple[bool, Sequence[Event]]:
            changed = conn.execute(
                "UPDATE operations SET state = 'started', started_at = ?, attempts = attempts + 1"
                " WHERE id = ? AND state = 'queued'", (_text(self._clock()), operation.id)).rowcount
            return changed == 1, ()

        return (await self._transact(work, f"starting operation {operation.id}"))[0]

    async def requeue(self, operation: Operation, *, progress: dict[str, Any] | None = None,
                      error: str | None = None) -> None:
        """Back to ``queued`` (a GET that timed out, an image transfer interrupted)."""
        def work(conn: sqlite3.Connection, _seq: int) -> tuple[None, Sequence[Event]]:
            conn.execute("UPDATE operations SET state = 'queued', progress = COALESCE(?, progress), error = ?"
                         " WHERE id = ? AND state = 'started'",
                         (None if progress is None else compact_json(progress), error, operation.id))
            return None, ()

        await self._transact(work, f"queueing operation {operation.id} again")

    async def save_progress(self, operation: Operation, progress: dict[str, Any]) -> None:
        def work(conn: sqlite3.Connection, _seq: int) -> tuple[None, Sequence[Event]]:
            conn.execute("UPDATE operations SET progress = ? WHERE id = ?", (compact_json(progress), operation.id))
            return None, ()

        await self._transact(work, f"saving the progress of operation {operation.id}")

    async def finish(self, operation: Operation, outcome: Outcome, results: Sequence[dict[str, Any]] = (),
                     error: str | None = None, *, progress: dict[str, Any] | None = None,
                     only_if: State | None = None) -> Operation | None:
        """End ``operation`` with ``outcome`` and write its result event, in one transaction.
        ``only_if``: only when it is still in that state (None when it was not)."""
        now = self._clock()

        def work(conn: sqlite3.Connection, next_seq: int) -> tuple[Operation | None, Sequence[Event]]:
            row = conn.execute(f"{_SELECT} WHERE id = ?", (operation.id,)).fetchone()
            current = _row(row) if row else None
            if current is None or current.state is State.DONE or (only_if is not None and current.state is not only_if):
                return None, ()
            if progress is not None:
                current = current.with_state(progress=progress)
            ended = self._end(conn, current, outcome, results, error, now, next_seq)
            return ended, [self._event_of(ended)]

        return (await self._transact(work, f"ending operation {operation.id}"))[0]

    def _end(self, conn: sqlite3.Connection, operation: Operation, outcome: Outcome,
             results: Sequence[dict[str, Any]], error: str | None, now: datetime, event_seq: int) -> Operation:
        """Mark ``operation`` done; its result event is the next record, ``event_seq``."""
        conn.execute("UPDATE operations SET state = 'done', outcome = ?, results = ?, error = ?, progress = ?,"
                     " finished_at = ?, event_seq = ? WHERE id = ?",
                     (outcome.value, compact_json(list(results)), error,
                      None if operation.progress is None else compact_json(operation.progress), _text(now),
                      event_seq, operation.id))
        return operation.with_state(state=State.DONE, outcome=outcome, results=tuple(results), error=error,
                                    finished_at=now, event_seq=event_seq)

    async def recover(self, resumable: Callable[[Operation], bool]) -> list[Operation]:
        """After a start: every operation found ``started`` was interrupted by a crash. Those
        that may run again (``resumable``: reads, image transfers in a resumable phase) are
        queued again; every other one ends as ``unknown``. Returns the ones that ended."""
        ended = []
        for operation in await self.list(state=State.STARTED):
            if resumable(operation):
                await self.requeue(operation, error="interrupted by a gateway restart")
                continue
            done = await self.finish(operation, Outcome.UNKNOWN, (), "the gateway stopped while the operation was "
                                     "in progress: it may or may not have been carried out, and is not repeated",
                                     only_if=State.STARTED)
            if done is not None:
                ended.append(done)
        return ended

    # --- queries ---------------------------------------------------------------------------

    async def get(self, id_: int) -> Operation | None:
        rows = await self._query(f"{_SELECT} WHERE id = ?", (id_,))
        return _row(rows[0]) if rows else None

    async def head(self, meter: str) -> Operation | None:
        """The meter's next operation (oldest first): operations run in order per meter."""
        rows = await self._query(f"{_SELECT} WHERE meter = ? AND state != 'done' ORDER BY id LIMIT 1", (meter,))
        return _row(rows[0]) if rows else None

    async def overdue(self, now: datetime) -> list[Operation]:
        """Queued operations whose deadline has passed."""
        return [_row(row) for row in await self._query(
            f"{_SELECT} WHERE state = 'queued' AND deadline <= ? ORDER BY id", (_text(now),))]

    async def meters_with_work(self) -> list[str]:
        return [row[0] for row in await self._query(
            "SELECT DISTINCT meter FROM operations WHERE state != 'done' ORDER BY meter", ())]

    async def list(self, *, meter: str | None = None, state: State | None = None,
                   limit: int = 1000) -> list[Operation]:
        """Operations, newest first."""
        where, args = [], []
        if meter is not None:
            where.append("meter = ?")
            args.append(meter)
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        sql = f"{_SELECT}{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY id DESC LIMIT ?"
        return [_row(row) for row in await self._query(sql, (*args, limit))]

    # --- plumbing --------------------------------------------------------------------------

    async def _transact(self, work, doing: str):
        await self.prepare()
        return await self._store().transact(work, doing)

    async def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if _table_missing(exc):  # a store no operation was ever queued in (read-only)
                    return []
                raise

        return await self._store().query(work)


def _create(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
