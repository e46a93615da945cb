"""Invocation counters in durable state: reserved in blocks before use, never reused after a
crash, a quarantine or a new store file, one namespace for the gateway as a client and as a
server; incoming counters kept per meter (or server) and only ever raised."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codecs.dlms.errors import DLMSSecurityError
from gateway.collectors.dlms import MemoryState
from gateway.config import StoreSection
from gateway.dlms_counters import SERVER_NEED, InvocationCounterStore
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
    assert second.next_outgoing(TITLE) == 11 > max(used)


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


async def test_outgoing_counters_never_go_back_after_the_store_file_is_quarantined(tmp_path):
    path = tmp_path / "store.sqlite"
    async with Store(path, StoreSection()) as store:
        counters = InvocationCounterStore(store)
        for _ in range(3):
            await counters.reserve(TITLE, 1000)  # three blocks: up to 3000 may have been used
            counters._reserved.clear()
    with open(path, "r+b") as file:
        file.write(bytes(100))  # SD-card damage to the header: the file is quarantined
    async with Store(path, StoreSection()) as store:
        counters = InvocationCounterStore(store)
        await counters.reserve(TITLE)
        assert counters.take(TITLE) > 3000
        assert [s.record.code for s in await store.read_after(0, 10)] == ["store.quarantined"]


async def test_outgoing_counters_go_on_in_a_store_at_a_new_path_with_the_gateways_high_water_file(tmp_path):
    marks = tmp_path / "counters.high-water"
    used = []
    for name in ("store.sqlite", "moved/store.sqlite"):
        async with Store(tmp_path / name, StoreSection(), high_water_file=marks) as store:
            counters = InvocationCounterStore(store).for_meter("m1")
            await counters.reserve(TITLE)
            used.append(counters.next_outgoing(TITLE))
    assert used == [1, 1001]


async def test_the_client_and_the_server_share_one_namespace_per_system_title(tmp_path):
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        client = InvocationCounterStore(store).for_meter("m1")
        server = InvocationCounterStore(store).for_server("dlms")
        used = []
        for counters in (client, server, client, server):
            await counters.reserve(TITLE, 600)
            used += [counters.next_outgoing(TITLE) for _ in range(600)]
        assert len(used) == len(set(used))  # never one counter twice, whoever sends
        assert await store.get_state("dlms.ic.out.4d4d4d0000000001") == "4000"


async def test_the_servers_counters_kept_under_its_former_keys_are_respected(tmp_path):
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        await store.set_state("dlms-server.ic.out.4d4d4d0000000001", "20000")
        counters = InvocationCounterStore(store).for_server("dlms")
        await counters.reserve(TITLE)
        assert counters.next_outgoing(TITLE) == 20001
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        counters = InvocationCounterStore(store).for_server("dlms")
        await counters.reserve(TITLE)
        assert counters.next_outgoing(TITLE) == 21001  # not pushed up by the old key again


async def test_concurrent_server_sessions_draw_strictly_increasing_counters_across_restarts(tmp_path):
    used: list[int] = []
    for _restart in range(3):
        async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
            counters = InvocationCounterStore(store, block=20).for_server("dlms")
            await counters.load()
            with pytest.raises(DLMSSecurityError, match="no durably reserved"):
                counters.next_outgoing(TITLE)

            async def session() -> None:
                for _ in range(15):
                    await counters.reserve(TITLE, SERVER_NEED)
                    used.extend(counters.next_outgoing(TITLE) for _ in range(3))
                    await asyncio.sleep(0)

            await asyncio.gather(session(), session())
    assert used == sorted(set(used))  # strictly increasing, never twice
    assert used[0] == 1 and len(used) == 270


async def test_a_servers_incoming_counters_are_saved_per_server_and_reloaded(tmp_path):
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        counters = InvocationCounterStore(store).for_server("dlms")
        await counters.load()
        counters.accept_incoming(METER, 41)
        counters.accept_incoming(METER, 40)  # never backwards
        await counters.save()
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        reloaded = InvocationCounterStore(store).for_server("dlms")
        await reloaded.load()
        assert reloaded.last_incoming(METER) == 41
        assert await store.get_state("dlms.ic.in.server:dlms") == '{"4752580000bc614e": 41}'
