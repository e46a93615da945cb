"""Invocation counters of the DLMS server, kept in the store's durable state.

Outgoing (the server's own, one per system title): strictly increasing for ever, never
reused, not even after a crash: counters are handed out from a block reserved durably in the
store beforehand (``dlms-server.ic.out.<title>`` holds the highest counter reserved; a restart
continues above it, so an unused rest of a block is skipped, never reused). The codec asks
for counters synchronously, so the server calls :meth:`StoreInvocationCounters.prepare`
before each APDU it processes: it reserves the next block when fewer than
:data:`LOW_WATER` counters are left.

Incoming (one per client system title): the highest counter accepted, in memory at once and
written to ``dlms-server.ic.in.<title>`` within :data:`FLUSH_S` (and durably before the server
executes a SET or an ACTION, which change state). A replay after a crash inside that window
could only repeat a GET, whose answer is ciphered for the real client; and a whole replayed
association fails HLS, whose challenge is new each time.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.codecs.dlms.security import MAX_INVOCATION_COUNTER, MemoryInvocationCounters
from gateway.store import Store

log = logging.getLogger(__name__)

OUT_PREFIX = "dlms-server.ic.out."
IN_PREFIX = "dlms-server.ic.in."
#: Counters reserved per durable write.
BLOCK = 10_000
#: Fewer counters than this left: reserve the next block before processing an APDU (one
#: APDU needs at most three: HLS pass 4, its ciphered envelope, a reply).
LOW_WATER = 16
FLUSH_S = 5.0


class StoreInvocationCounters(MemoryInvocationCounters):
    """:class:`~gateway.codecs.dlms.security.InvocationCounters` backed by the store (see
    the module docstring). Call :meth:`load` once, :meth:`prepare` before each APDU."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self._next: dict[bytes, int] = {}
        self._end: dict[bytes, int] = {}  # the last counter of the block in use
        self._dirty: set[bytes] = set()
        self._reserving = asyncio.Lock()

    async def load(self) -> None:
        for key, value in (await self.store.state_items(IN_PREFIX)).items():
            super().accept_incoming(bytes.fromhex(key.removeprefix(IN_PREFIX)), int(value))
        for key, value in (await self.store.state_items(OUT_PREFIX)).items():
            title = bytes.fromhex(key.removeprefix(OUT_PREFIX))
            reserved = int(value)  # the last run may have used any of these: the next block comes first
            self._next[title], self._end[title] = reserved + 1, reserved

    async def prepare(self, title: bytes) -> None:
        """Make sure :data:`LOW_WATER` outgoing counters are reserved for ``title``."""
        if self.remaining(title) >= LOW_WATER:
            return
        async with self._reserving:
            if self.remaining(title) >= LOW_WATER:
                return  # another session reserved meanwhile
            end = await self.store.increment_state(OUT_PREFIX + title.hex(), BLOCK)
            if end > MAX_INVOCATION_COUNTER:
                raise DLMSSecurityError("the invocation counter is exhausted: new keys are needed",
                                        field="invocation-counter")
            # The new block lies above everything reserved before: counters keep increasing.
            self._next[title], self._end[title] = end - BLOCK + 1, end

    def remaining(self, title: bytes) -> int:
        return max(0, self._end.get(title, 0) - self._next.get(title, 1) + 1)

    def next_outgoing(self, system_title: bytes) -> int:
        """The next counter of the reserved block (the codec's call; never blocks)."""
        counter = self._next.get(system_title, 1)
        if counter > self._end.get(system_title, 0):
            raise DLMSSecurityError("no invocation counter reserved (prepare() was not awaited)",
                                    field="invocation-counter")
        self._next[system_title] = counter + 1
        return counter

    def accept_incoming(self, system_title: bytes, counter: int) -> None:
        last = self.last_incoming(system_title)
        super().accept_incoming(system_title, counter)
        if last is None or counter > last:
            self._dirty.add(system_title)

    async def flush(self) -> None:
        """Write the incoming counters accepted since the last flush (durably)."""
        while self._dirty:
            title = self._dirty.pop()
            try:
                await self.store.set_state(IN_PREFIX + title.hex(), str(self.last_incoming(title)))
            except BaseException:
                self._dirty.add(title)
                raise

    async def run(self) -> None:
        """Flush every :data:`FLUSH_S` seconds (cancel to stop; flush once more after)."""
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush()
