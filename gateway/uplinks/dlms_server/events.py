"""``security.refused`` events, rate-limited: a client hammering the server with bad keys
must not fill the store.

One event per reason at most every :data:`INTERVAL_S`, and at most :data:`BURST` events of
any reason in that time; what is held back is counted and reported in the next event of the
reason (``details["suppressed"]``) and in the server's status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from gateway.errors import StoreError
from gateway.model import Event, Severity
from gateway.store import Store

log = logging.getLogger(__name__)

CODE = "security.refused"
INTERVAL_S = 60.0
BURST = 10


class SecurityEvents:
    """Stores ``security.refused`` events for the server named ``source``."""

    def __init__(self, store: Store, source: str, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.source = source
        self.clock = clock
        self._last: dict[str, datetime] = {}
        self._suppressed: dict[str, int] = {}
        self._window_start: datetime | None = None
        self._in_window = 0
        self.stored = 0
        self.suppressed_total = 0

    async def refused(self, reason: str, message: str, peer: str, details: dict[str, Any] | None = None) -> None:
        now = self.clock()
        if not self._allowed(reason, now):
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            self.suppressed_total += 1
            return
        facts: dict[str, str | int] = {"reason": reason, "peer": peer, **(details or {})}
        held_back = self._suppressed.pop(reason, 0)
        if held_back:
            facts["suppressed"] = held_back
        event = Event(code=CODE, severity=Severity.WARNING, message=message, occurred_at=now, source=self.source,
                      details=facts)
        log.warning("DLMS server %s: %s from %s", self.source, message, peer)
        try:
            await self.store.append([event])
            self.stored += 1
        except StoreError as exc:  # the refusal itself stands; only its record is lost
            log.error("DLMS server %s: cannot store a security event: %s", self.source, exc)

    def _allowed(self, reason: str, now: datetime) -> bool:
        window = timedelta(seconds=INTERVAL_S)
        if self._window_start is None or now - self._window_start >= window or now < self._window_start:
            self._window_start, self._in_window = now, 0
        last = self._last.get(reason)
        if last is not None and timedelta(0) <= now - last < window or self._in_window >= BURST:
            return False
        self._last[reason] = now
        self._in_window += 1
        return True
