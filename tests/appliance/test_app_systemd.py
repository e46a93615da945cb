"""The gateway tells systemd it is ready once its store is open and its collectors run,
pings the watchdog while its store answers, and says when it stops."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.app import Gateway, Timing
from gateway.config import parse_config
from gateway.systemd import Notifier


class FakeStore:
    last_seq = 0

    def __init__(self) -> None:
        self.hanging = False
        self.appended: list = []

    async def append(self, records, *, state=None):
        self.appended.extend(records)
        return list(range(len(records)))

    async def enforce_retention(self) -> None:
        pass

    async def set_state(self, key: str, value: str) -> None:
        pass

    async def cursor(self, _name: str) -> int:
        return 0

    async def stats(self):
        if self.hanging:
            await asyncio.Event().wait()
        return SimpleNamespace(records=len(self.appended))


class FakeCollector:
    name = "bus1"

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        self.running.set()
        await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()

    def status(self) -> dict:
        return {}

    def meters(self) -> list[str]:
        return []


@pytest.fixture
def notify(tmp_path: Path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.setblocking(False)
        yield sock, str(tmp_path / "notify")


async def next_datagram(sock: socket.socket) -> list[str]:
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    return data.decode().split("\n")


async def wait_for(sock: socket.socket, first_line: str) -> list[list[str]]:
    """Datagrams up to and including the first one that starts with ``first_line``."""
    seen = []
    while True:
        seen.append(await next_datagram(sock))
        if seen[-1][0].startswith(first_line):
            return seen


async def test_ready_after_collectors_start_pings_while_the_store_answers_and_stopping_at_the_end(notify, tmp_path):
    sock, address = notify
    config = parse_config(f'[gateway]\nid = "gw-1"\nstate_dir = "{tmp_path}"\n')
    gateway = Gateway(config, timing=Timing(status_file_s=3600), notifier=Notifier(address, watchdog_s=0.01))
    store, collector = FakeStore(), FakeCollector()
    gateway.store, gateway.collectors = store, [collector]
    stop = asyncio.Event()

    running = asyncio.get_running_loop().create_task(gateway._supervise_all(store, stop))
    try:
        ready = await wait_for(sock, "READY=1")
        assert collector.running.is_set()
        assert ready[-1] == ["READY=1", "STATUS=running: 1 buses, 0 meters, 0 uplinks"]
        assert (await wait_for(sock, "WATCHDOG=1"))[-1] == ["WATCHDOG=1"]

        store.hanging = True
        unhealthy = await wait_for(sock, "STATUS=unhealthy")
        assert unhealthy[-1][0].startswith("STATUS=unhealthy: health check took longer than")
        # No ping while the store hangs: the next datagram is the one the test causes.
        stop.set()
        assert await next_datagram(sock) == ["STOPPING=1", "STATUS=stopping: finishing reads, draining uplinks"]
        await asyncio.wait_for(running, 10)
    finally:
        stop.set()
        running.cancel()


async def test_the_store_health_check_asks_the_store(tmp_path):
    config = parse_config(f'[gateway]\nid = "gw-1"\nstate_dir = "{tmp_path}"\n')
    gateway = Gateway(config, notifier=Notifier(None))
    assert await gateway.store_answers() is False  # no store open yet
    gateway.store = FakeStore()
    assert await gateway.store_answers() is True
