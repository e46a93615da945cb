"""DLMS/COSEM invocation counters kept in durable state (Green Book 9.2.7.2.4).

An invocation counter must never be used twice under one key (AES-GCM loses everything
with a repeated IV), and a counter from a meter that is not above the last one accepted
is a replay. Both must survive restarts and power cuts.

Outgoing counters are reserved in blocks: :meth:`InvocationCounterStore.reserve`
durably raises the stored limit by :data:`BLOCK` before any counter below it is handed out,
so a crash loses at most the rest of a block and never reuses one. They are kept per client
system title (the IV is title ‖ counter), shared by every meter that title talks to, so two
meters that happen to share a key still never see the same IV.

Incoming counters are kept per meter (the meter's keys are its own) and per meter system
title, loaded before an association and saved after it, whatever its outcome.

The codec asks for counters synchronously (:class:`~gateway.codecs.dlms.security.InvocationCounters`);
the session driver calls :meth:`reserve` before every request it sends, so
``next_outgoing`` only ever hands out counters that are already on disk.
"""

from __future__ import annotations

import json

from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.codecs.dlms.security import MAX_INVOCATION_COUNTER
from gateway.collectors.base import StateStore
from gateway.errors import StoreError

#: Counters reserved by one durable write.
BLOCK = 1000
#: Counters a single request may use (the APDU itself, HLS pass 3's f(StoC)), and then some.
REQUEST_NEED = 4


def outgoing_key(system_title: bytes) -> str:
    return f"dlms.ic.out.{system_title.hex()}"


def incoming_key(meter: str) -> str:
    return f"dlms.ic.in.{meter}"


class InvocationCounterStore:
    """Outgoing counter reservations per client system title, for every meter of a process
    that uses this object (see the module docstring)."""

    def __init__(self, state: StateStore, *, block: int = BLOCK) -> None:
        if block < REQUEST_NEED:
            raise ValueError(f"a block must hold at least {REQUEST_NEED} counters")
        self.state = state
        self.block = block
        # title -> [next counter to hand out, exclusive limit of what is reserved]
        self._reserved: dict[bytes, list[int]] = {}

    async def reserve(self, system_title: bytes, needed: int = REQUEST_NEED) -> None:
        """Make sure ``needed`` counters for ``system_title`` are durably reserved."""
        span = self._reserved.get(system_title)
        if span is not None and span[1] - span[0] >= needed:
            return
        limit = await self.state.increment_state(outgoing_key(system_title), self.block)
        if limit - 1 > MAX_INVOCATION_COUNTER:
            raise DLMSSecurityError("invocation counter exhausted: the meter needs new keys", field="invocation-counter")
        # Counters start at 1: some meters take 0 for "nothing received yet".
        start = max(1, limit - self.block)
        if span is not None and span[1] == start:
            span[1] = limit  # contiguous with what is left: keep it
        else:
            self._reserved[system_title] = [start, limit]

    def take(self, system_title: bytes) -> int:
        span = self._reserved.get(system_title)
        if span is None or span[0] >= span[1]:
            # A programming error in the driver, never a reason to reuse a counter.
            raise DLMSSecurityError("no durably reserved invocation counter is left", field="invocation-counter")
        counter = span[0]
        span[0] += 1
        return counter

    def for_meter(self, meter: str) -> MeterCounters:
        return MeterCounters(self, meter)


class MeterCounters:
    """The codec's ``InvocationCounters`` for one meter: outgoing from the shared
    reservations, incoming loaded from and saved to the meter's state."""

    def __init__(self, store: InvocationCounterStore, meter: str) -> None:
        self._store = store
        self.meter = meter
        self._incoming: dict[bytes, int] = {}
        self._saved: dict[bytes, int] = {}

    async def load(self) -> None:
        text = await self._store.state.get_state(incoming_key(self.meter))
        try:
            stored = json.loads(text) if text else {}
            self._incoming = {bytes.fromhex(title): int(counter) for title, counter in stored.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise StoreError(f"state {incoming_key(self.meter)!r} is not a map of counters: {exc}") from None
        self._saved = dict(self._incoming)

    async def save(self) -> None:
        """Persist the incoming counters accepted since :meth:`load` (no write if none)."""
        if self._incoming != self._saved:
            text = json.dumps({title.hex(): counter for title, counter in sorted(self._incoming.items())})
            await self._store.state.set_state(incoming_key(self.meter), text)
            self._saved = dict(self._incoming)

    async def reserve(self, system_title: bytes, needed: int = REQUEST_NEED) -> None:
        await self._store.reserve(system_title, needed)

    # -- the codec's InvocationCounters protocol --

    def next_outgoing(self, system_title: bytes) -> int:
        return self._store.take(system_title)

    def last_incoming(self, system_title: bytes) -> int | None:
        return self._incoming.get(system_title)

    def accept_incoming(self, system_title: bytes, counter: int) -> None:
        if counter > self._incoming.get(system_title, -1):
            self._incoming[system_title] = counter
