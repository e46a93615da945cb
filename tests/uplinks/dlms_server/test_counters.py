"""Invocation counters kept in the store: outgoing ones reserved ahead and never reused,
not across blocks, concurrent sessions or restarts; incoming ones saved and reloaded."""

from __future__ import annotations

import asyncio

import pytest

from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.config import StoreSection
from gateway.store import Store
from gateway.uplinks.dlms_server import counters as counters_module
from gateway.uplinks.dlms_server.counters import StoreInvocationCounters

TITLE = bytes.fromhex("4757590000000001")
CLIENT = bytes.fromhex("4D4D4D0000000001")


@pytest.fixture
def small_blocks(monkeypatch) -> None:
    monkeypatch.setattr(counters_module, "BLOCK", 20)
    monkeypatch.setattr(counters_module, "LOW_WATER", 4)


async def test_outgoing_counters_strictly_increase_across_blocks_sessions_and_restarts(tmp_path, small_blocks) -> None:
    used: list[int] = []
    for _restart in range(3):
        async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
            counters = StoreInvocationCounters(store)
            await counters.load()
            with pytest.raises(DLMSSecurityError, match="prepare"):
                counters.next_outgoing(TITLE)

            async def session(counters: StoreInvocationCounters = counters) -> None:
                for _ in range(15):
                    await counters.prepare(TITLE)
                    used.extend(counters.next_outgoing(TITLE) for _ in range(3))
                    await asyncio.sleep(0)

            await asyncio.gather(session(), session())
    assert used == sorted(set(used))  # strictly increasing, never twice
    assert used[0] == 1 and len(used) == 270


async def test_incoming_counters_are_saved_by_flush_and_reloaded(tmp_path) -> None:
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        counters = StoreInvocationCounters(store)
        await counters.load()
        assert counters.last_incoming(CLIENT) is None
        counters.accept_incoming(CLIENT, 41)
        counters.accept_incoming(CLIENT, 40)  # never backwards
        await counters.flush()
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        reloaded = StoreInvocationCounters(store)
        await reloaded.load()
        assert reloaded.last_incoming(CLIENT) == 41
