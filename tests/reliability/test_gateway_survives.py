"""Nothing the gateway meets in the field stops it: a full disk, a bad configuration from
the HES, a SIGHUP whose file is gone. Each test runs a real Gateway and checks it is still
polling afterwards."""

from __future__ import annotations

import asyncio
import errno
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.app import Gateway, Timing
from gateway.config import parse_config
from gateway.simulators.mbus import MeterModel, Pacing, SimulatedBus, SimulatedSlave, serve_pty
from gateway.systemd import Notifier
from tests.environment import small_tmpfs

FAST = Timing(status_file_s=0.5, housekeeping_s=1, clock_check_s=0.5, stop_polling_s=5, drain_uplinks_s=1)


def config_text(state_dir: Path, port: str, extra: str = "") -> str:
    return f"""
[gateway]
id = "gw-survivor"
state_dir = "{state_dir}"
[store]
max_bytes = 1048576
{extra}
[[buses]]
name = "bus1"
protocol = "mbus"
port = "{port}"
baud = 9600
[[meters]]
name = "m1"
protocol = "mbus"
bus = "bus1"
address = 1
[meters.schedule]
interval_s = 1
"""


@asynccontextmanager
async def running_gateway(state_dir: Path, extra: str = "", operator_file: Path | None = None):
    bus = SimulatedBus([SimulatedSlave(1, MeterModel(identification="31000001"))])
    async with serve_pty(bus, Pacing(paced=False)) as meter:
        text = config_text(state_dir, meter.path, extra)
        if operator_file is not None:
            operator_file.write_text(text)
        gateway = Gateway(parse_config(text), timing=FAST, notifier=Notifier(None), config_text=text,
                          operator_file=operator_file)
        stop = asyncio.Event()
        task = asyncio.ensure_future(gateway.run(stop))
        try:
            await until(lambda: gateway.store is not None and gateway.store.last_seq > 5)
            yield gateway, task
        finally:
            stop.set()
            async with asyncio.timeout(60):
                await task


async def until(condition, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


async def still_polling(gateway: Gateway, task: asyncio.Task) -> None:
    """The gateway's task is alive and new readings keep arriving."""
    seen = gateway.store.last_seq
    await until(lambda: task.done() or gateway.store.last_seq > seen + 5)
    assert not task.done(), task.exception()


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "disk", "4m") as mount:
        yield mount


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(bytes(1 << 16))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.mark.timeout(180)
async def test_a_disk_filled_by_something_else_does_not_stop_the_gateway(small_disk):
    async with running_gateway(small_disk / "state") as (gateway, task):
        filler = await asyncio.to_thread(fill, small_disk)
        await asyncio.sleep(4)  # housekeeping, the status file and the event writer all meet the full disk
        assert not task.done(), task.exception()
        filler.unlink()
        await still_polling(gateway, task)
        codes = {r.record.code for r in await gateway.store.read_after(0, 100_000) if hasattr(r.record, "code")}
    assert "store.disk_full" in codes or "store.dropped" in codes


async def test_a_bad_configuration_from_the_hes_is_refused_and_the_gateway_keeps_polling(tmp_path):
    from gateway.uplinks.commands import CommandRouter

    uplink = '[[uplinks.mqtt]]\nurl = "mqtt://127.0.0.1:1"\nallow_remote_config = true\n'
    async with running_gateway(tmp_path / "state", extra=uplink) as (gateway, task):
        router = CommandRouter({"config": gateway._remote_config_command(gateway.config.uplinks.mqtt[0])},
                               timeout_s=30)
        ok, answer = await router.answer("config", b'{"toml": "[gateway]\\nid = 1\\n"}')
        assert not ok and b"gateway.id" in answer
        await still_polling(gateway, task)


async def test_a_sighup_whose_configuration_file_is_gone_is_logged_and_the_gateway_keeps_polling(tmp_path, caplog):
    operator_file = tmp_path / "gateway.toml"
    async with running_gateway(tmp_path / "state", operator_file=operator_file) as (gateway, task):
        operator_file.unlink()
        gateway.request_reload()
        await until(lambda: "cannot read configuration" in caplog.text)
        await still_polling(gateway, task)
