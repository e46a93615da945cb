"""DLMS/COSEM invocation counters kept in durable state (Green Book 9.2.7.2.4), one
implementation for the gateway as a client of its meters (:mod:`gateway.collectors.dlms`,
``gateway read dlms``) and as a server for the HES (:mod:`gateway.uplinks.dlms_server`).

An invocation counter must never be used twice under one key (AES-GCM loses everything
with a repeated IV: the IV is system title ‖ counter), and a counter from a peer that is not
above the last one accepted is a replay. Both must survive restarts and power cuts.

Outgoing counters live in one namespace, per system title the gateway sends under, whoever
sends: ``dlms.ic.out.<title hex>`` holds the highest counter that may have been used. They
are reserved in blocks: :meth:`InvocationCounterStore.reserve` durably raises that value by
:data:`BLOCK` (``increment_state``) before any counter of the block is handed out, so a
crash loses at most the rest of a block and never reuses one. A client title is shared by
every meter it talks to, so two meters that happen to share a key still never see the same
IV; and should the server's title equal a client title (``check-config`` refuses it) the two
would still take disjoint blocks. The store also keeps each incremented value in its
high-water side file (:mod:`gateway.store`), so the counters never go back when the store
file is quarantined or replaced. Values under the server's former key
``dlms-server.ic.out.<title>`` are respected: the first block lies above them.

Incoming counters are kept per scope — a meter (its keys are its own) or a server (for its
HES clients) — as one state value ``dlms.ic.in.<scope>``: a JSON map of the peer's system
title to the last counter accepted, loaded before use and saved after (a meter: after each
association; the server: every few seconds and before a SET or an ACTION). When a store was
quarantined and its state could not be read, incoming counters start afresh: the first
counter of each peer is accepted, and the quarantine event says so (``state_readable``).

The codec asks for counters synchronously (:class:`~gateway.codecs.dlms.security.InvocationCounters`),
so a driver awaits :meth:`AssociationCounters.reserve` before each APDU it sends or handles:
``next_outgoing`` only ever hands out counters that are already on disk.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.codecs.dlms.security import MAX_INVOCATION_COUNTER
from gateway.errors import StoreError

if TYPE_CHECKING:
    from gateway.collectors.base import StateStore

OUT_PREFIX = "dlms.ic.out."
IN_PREFIX = "dlms.ic.in."
#: Where the DLMS server kept its own counters before the one namespace (read, never written).
LEGACY_OUT_PREFIX = "dlms-server.ic.out."
LEGACY_IN_PREFIX = "dlms-server.ic.in."
#: Counters reserved by one durable write.
BLOCK = 1000
#: Counters a single request may use (the APDU itself, HLS pass 3's f(StoC)), and then some.
REQUEST_NEED = 4
#: What the server reserves before each APDU it handles or pushes: its connections draw on
#: one block between awaits (one APDU needs at most three: HLS pass 4, its envelope, a reply).
SERVER_NEED = 16


def outgoing_key(system_title: bytes) -> str:
    return OUT_PREFIX + system_title.hex()


def incoming_key(scope: str) -> str:
    return IN_PREFIX + scope


def server_scope(name: str) -> str:
    """The incoming scope of a DLMS server (``:`` cannot occur in a meter's name)."""
    return f"server:{name}"


class InvocationCounterStore:
    """Outgoing counter reservations per system title (see the module docstring), for the
    associations of a process that use this object."""

    def __init__(self, state: StateStore, *, block: int = BLOCK) -> None:
        if block < REQUEST_NEED:
            raise ValueError(f"a block must hold at least {REQUEST_NEED} counters")
        self.state = state
        self.block = block
        # title -> [next counter to hand out, last counter reserved]
        self._reserved: dict[bytes, list[int]] = {}
        self._legacy_checked: set[bytes] = set()
        self._reserving = asyncio.Lock()

    def remaining(self, system_title: bytes) -> int:
        span = self._reserved.get(system_title)
        return 0 if span is None else span[1] - span[0] + 1

    async def reserve(self, system_title: bytes, needed: int = REQUEST_NEED) -> None:
        """Make sure ``needed`` counters for ``system_title`` are durably reserved."""
        if self.remaining(system_title) >= needed:
            return
        async with self._reserving:
            if self.remaining(system_title) >= needed:
                return  # another association reserved meanwhile
            key = outgoing_key(system_title)
            by = self.block + await self._below_legacy(system_title)
            end = await self.state.increment_state(key, by)
            if end > MAX_INVOCATION_COUNTER:
                raise DLMSSecurityError("invocation counter exhausted: new keys are needed", field="invocation-counter")
            # Counters start at 1: some peers take 0 for "nothing received yet".
            start = max(1, end - self.block + 1)
            span = self._reserved.get(system_title)
            if span is not None and span[1] + 1 == start:
                span[1] = end  # contiguous with what is left: keep it
            else:
                self._reserved[system_title] = [start, end]

    async def _below_legacy(self, system_title: bytes) -> int:
        """How far the stored value lies below the server's former reservation (once per title)."""
        if system_title in self._legacy_checked:
            return 0
        legacy = await self.state.get_state(LEGACY_OUT_PREFIX + system_title.hex())
        self._legacy_checked.add(system_title)
        if legacy is None:
            return 0
        current = await self.state.get_state(outgoing_key(system_title))
        try:
            return max(0, int(legacy) - int(current or 0))
        except ValueError:
            raise StoreError(f"state {LEGACY_OUT_PREFIX + system_title.hex()!r} holds {legacy!r}, "
                             "not an integer") from None

    def take(self, system_title: bytes) -> int:
        span = self._reserved.get(system_title)
        if span is None or span[0] > span[1]:
            # A programming error in the driver, never a reason to reuse a counter.
            raise DLMSSecurityError("no durably reserved invocation counter is left", field="invocation-counter")
        counter = span[0]
        span[0] += 1
        return counter

    def for_meter(self, meter: str) -> AssociationCounters:
        return AssociationCounters(self, meter)

    def for_server(self, name: str) -> AssociationCounters:
        return AssociationCounters(self, server_scope(name))


class AssociationCounters:
    """The codec's ``InvocationCounters`` for the associations of one scope (a meter, or a
    server's clients): outgoing from the shared reservations, incoming loaded from and saved
    to the scope's state."""

    def __init__(self, store: InvocationCounterStore, scope: str) -> None:
        self._store = store
        self.scope = scope
        self._incoming: dict[bytes, int] = {}
        self._saved: dict[bytes, int] = {}

    async def load(self) -> None:
        key = incoming_key(self.scope)
        text = await self._store.state.get_state(key)
        try:
            stored = json.loads(text) if text else {}
            self._incoming = {bytes.fromhex(title): int(counter) for title, counter in stored.items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise StoreError(f"state {key!r} is not a map of counters: {exc}") from None
        self._saved = dict(self._incoming)

    async def save(self) -> None:
        """Persist the incoming counters accepted since the last save (no write if none)."""
        if self._incoming != self._saved:
            incoming = dict(self._incoming)
            text = json.dumps({title.hex(): counter for title, counter in sorted(incoming.items())})
            await self._store.state.set_state(incoming_key(self.scope), text)
            self._saved = incoming

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
