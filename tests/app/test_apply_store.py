"""Reconfiguring the store of a running Gateway: retention settings apply to the open store;
a new store path is refused until a restart (every collector, uplink and the invocation
counters hold the open store), and the counters go on above their marks after it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import HIGH_WATER_FILE, Gateway, Timing
from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.systemd import Notifier

pytestmark = pytest.mark.integration

DLMS_LINE = ('[[buses]]\nname = "dl"\nprotocol = "dlms"\ntcp = "127.0.0.1:9"\ninterface = "wrapper"\n'
             '[[meters]]\nname = "m1"\nprotocol = "dlms"\nbus = "dl"\nobjects = ["1.0.1.8.0.255"]\n')


def base(state: Path) -> str:
    return f'[gateway]\nid = "gw-apply"\nstate_dir = "{state}"\napply_grace_s = 2\n' + DLMS_LINE


@contextlib.asynccontextmanager
async def running(text: str) -> AsyncIterator[Gateway]:
    gateway = Gateway(parse_config(text), timing=Timing(drain_uplinks_s=1, stop_polling_s=1), notifier=Notifier(None),
                      config_text=text)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        async with asyncio.timeout(30):
            while gateway._group is None:
                await asyncio.sleep(0.02)
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_new_retention_settings_apply_to_the_open_store(tmp_path):
    text = base(tmp_path / "state")
    async with running(text) as gateway:
        store = gateway.store
        result = await gateway.apply(text + "[store]\nmax_age_days = 30\nmax_bytes = 2097152\n", "test")
        assert result["changed"] is True
        assert gateway.store is store  # the same open store, not a second writer on its file
        assert (store.config.max_age_days, store.config.max_bytes) == (30, 2097152)
        assert store._sync.config.max_age_days == 30
        assert gateway.collectors[0].state is store
        assert await store.enforce_retention() == 0  # the store works on with its new bounds


async def test_a_new_store_path_is_refused_while_running_and_the_collectors_keep_their_store(tmp_path):
    state = tmp_path / "state"
    text = base(state)
    async with running(text) as gateway:
        store = gateway.store
        with pytest.raises(ConfigError, match=r"store.path: cannot change while the gateway runs .* restart"):
            await gateway.apply(text + f'[store]\npath = "{state / "other.sqlite"}"\n', "test")
        assert gateway.store is store and gateway.collectors[0].state is store
        assert await store.increment_state("dlms.ic.out.x", 1000) == 1000  # still open
        assert not (state / "other.sqlite").exists()
    # after a restart at the new path, the counters go on above everything handed out before
    async with running(text + f'[store]\npath = "{state / "other.sqlite"}"\n') as gateway:
        assert gateway.store.path == state / "other.sqlite"
        assert await gateway.store.increment_state("dlms.ic.out.x", 1000) == 2000
    assert (state / HIGH_WATER_FILE).exists()
