"""What every collector test needs: a sink that keeps what it is given, and a polling loop
running in the background for the duration of a block."""

from __future__ import annotations

import asyncio
import contextlib


class ListSink:
    """A sink that keeps what it is given; state committed with records goes to ``state``
    (the collector's state store, as the gateway's store is both), else to ``saved``."""

    def __init__(self, state=None) -> None:
        self.records: list = []
        self.state = state
        self.saved: dict[str, str] = {}

    async def commit(self, records, *, state=None) -> None:
        self.records.extend(records)
        for key, value in (state or {}).items():
            if self.state is not None:
                await self.state.set_state(key, value)
            self.saved[key] = value

    def of(self, kind) -> list:
        return [r for r in self.records if isinstance(r, kind)]


@contextlib.asynccontextmanager
async def running(collector):
    """The collector's polling loop in the background (tests give it a clock that keeps
    scheduled reads a day away, so only on-demand work runs)."""
    task = asyncio.ensure_future(collector.run())
    try:
        yield collector
    finally:
        collector.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
