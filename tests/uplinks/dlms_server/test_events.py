"""security.refused events are rate-limited: one per reason a minute, a few of any reason,
what was held back counted in the next one."""

from __future__ import annotations

from gateway.config import StoreSection
from gateway.model import Event
from gateway.store import Store
from gateway.uplinks.dlms_server.events import BURST, SecurityEvents
from tests.store_helpers import Clock


async def stored_events(store: Store) -> list[Event]:
    return [s.record for s in await store.read_after(0, 1000)]


async def test_refusals_are_stored_at_most_once_a_minute_per_reason_with_what_was_held_back(tmp_path) -> None:
    clock = Clock()
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        events = SecurityEvents(store, "dlms:test", clock)
        for _ in range(5):
            await events.refused("tag", "refused: tag", "10.0.0.1:5000")
        await events.refused("hls", "HLS failed", "10.0.0.1:5000")
        clock.advance(seconds=61)
        await events.refused("tag", "refused: tag", "10.0.0.1:5000")
        stored = await stored_events(store)
    assert [(e.code, e.details["reason"], e.details.get("suppressed")) for e in stored] == [
        ("security.refused", "tag", None), ("security.refused", "hls", None), ("security.refused", "tag", 4)]
    assert events.suppressed_total == 4 and stored[0].source == "dlms:test"


async def test_many_reasons_at_once_are_capped(tmp_path) -> None:
    clock = Clock()
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        events = SecurityEvents(store, "dlms:test", clock)
        for n in range(BURST + 5):
            await events.refused(f"reason-{n}", "refused", "peer")
        clock.advance(minutes=2)
        await events.refused("reason-0", "refused", "peer")
        assert len(await stored_events(store)) == BURST + 1
