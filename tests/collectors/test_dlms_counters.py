"""Invocation counters in durable state: reserved in blocks before use, never reused after a
crash, incoming counters kept per meter and only ever raised."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.collectors.dlms import MemoryState
from gateway.collectors.dlms_counters import InvocationCounterStore
from gateway.config import StoreSection
from gateway.store import Store

TITLE = bytes.fromhex("4D4D4D0000000001")
METER = bytes.fromhex("4752580000BC614E")


async def test_counters_are_handed_out_only_after_their_block_is_durably_reserved():
    state = MemoryState()
    counters = InvocationCounterStore(state, block=10).for_meter("m1")
    with pytest.raises(DLMSSecurityError, match="no durably reserved"):
        counters.next_outgoing(TITLE)
    await counters.reserve(TITLE)
    assert state.values == {"dlms.ic.out.4d4d4d0000000001": "10"}
    assert [counters.next_outgoing(TITLE) for _ in range(4)] == [1, 2, 3, 4]


async def test_a_restart_starts_above_everything_reserved_before_it():
    state = MemoryState()
    first = InvocationCounterStore(state, block=10).for_meter("m1")
    await first.reserve(TITLE)
    used = [first.next_outgoing(TITLE) for _ in range(3)]
    # The process dies here, mid-block; the next one starts with a new block.
    second = InvocationCounterStore(state, block=10).for_meter("m1")
    await second.reserve(TITLE)
    assert second.next_outgoing(TITLE) == 10 > max(used)


async def test_a_block_that_runs_low_is_extended_contiguously():
    state = MemoryState()
    counters = InvocationCounterStore(state, block=10).for_meter("m1")
    taken = []
    for _ in range(30):
        await counters.reserve(TITLE)
        taken.append(counters.next_outgoing(TITLE))
    assert taken == list(range(1, 31))
    assert int(state.values["dlms.ic.out.4d4d4d0000000001"]) <= 40


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=25), min_size=1, max_size=8))
def test_no_counter_is_ever_handed_out_twice_across_any_sequence_of_crashes(uses_per_life):
    import asyncio

    async def lives():
        state = MemoryState()
        seen: list[int] = []
        for uses in uses_per_life:
            counters = InvocationCounterStore(state, block=7).for_meter("m1")
            for _ in range(uses):
                await counters.reserve(TITLE)
                seen.append(counters.next_outgoing(TITLE))
        return seen

    seen = asyncio.run(lives())
    assert len(seen) == len(set(seen)) and seen == sorted(seen)


async def test_incoming_counters_are_saved_per_meter_and_refuse_going_back():
    state = MemoryState()
    store = InvocationCounterStore(state)
    counters = store.for_meter("m1")
    await counters.load()
    assert counters.last_incoming(METER) is None
    counters.accept_incoming(METER, 1005)
    counters.accept_incoming(METER, 1003)  # never lowers it
    await counters.save()
    again = store.for_meter("m1")
    await again.load()
    assert again.last_incoming(METER) == 1005
    other = store.for_meter("m2")
    await other.load()
    assert other.last_incoming(METER) is None


async def test_the_store_keeps_counters_across_a_reopen(tmp_path):
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        counters = InvocationCounterStore(store).for_meter("m1")
        await counters.load()
        await counters.reserve(TITLE)
        first = counters.next_outgoing(TITLE)
        counters.accept_incoming(METER, 77)
        await counters.save()
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        counters = InvocationCounterStore(store).for_meter("m1")
        await counters.load()
        await counters.reserve(TITLE)
        assert counters.next_outgoing(TITLE) >= first + 1000 - 1
        assert counters.last_incoming(METER) == 77
