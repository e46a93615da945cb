"""Shared by the wireless M-Bus receiver tests: keys, meter models, a list sink, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.codecs.mbus.wireless_link import decode_frame
from gateway.codecs.mbus.wmbus_security import AesKey
from gateway.config import WMBusDongle, WMBusMeter
from gateway.model import Event, Reading
from gateway.simulators.wmbus import WirelessMeterModel

BERLIN = ZoneInfo("Europe/Berlin")
METER_CLOCK = datetime(2026, 3, 1, 10, 30)  # what the model meters stamp their telegrams with
KEY = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
OTHER_KEY = "00112233445566778899AABBCCDDEEFF"
INTERVAL_S = 0.15
WAIT_S = 15.0


class ListSink:
    """Keeps the records, and the state committed with them in ``saved``."""

    def __init__(self) -> None:
        self.records: list = []
        self.saved: dict[str, str] = {}

    async def commit(self, records, *, state=None) -> None:
        self.records.extend(records)
        self.saved.update(state or {})

    def readings(self, device: str | None = None) -> list[Reading]:
        return [r for r in self.records if isinstance(r, Reading) and device in (None, r.device)]

    def events(self, code: str) -> list[Event]:
        return [r for r in self.records if isinstance(r, Event) and r.code == code]


def key_file(directory: Path, name: str, key: str = KEY, mode: int = 0o600) -> str:
    path = directory / name
    path.write_text(key + "\n")
    path.chmod(mode)
    return str(path)


def model(identification: str, key: str | None = None, **kwargs) -> WirelessMeterModel:
    kwargs.setdefault("interval_s", INTERVAL_S)
    return WirelessMeterModel(identification=identification, key=AesKey.from_hex(key) if key else None,
                              wall_clock=lambda: METER_CLOCK, **kwargs)


def dongle_config(path: str, dongle: str, **kwargs) -> WMBusDongle:
    return WMBusDongle(name=kwargs.pop("name", "radio"), protocol="wmbus", port=path, dongle=dongle, **kwargs)


def meter_config(name: str, identification: str, *, bus: str = "radio", **kwargs) -> WMBusMeter:
    kwargs.setdefault("expected_interval_s", 60)
    return WMBusMeter(name=name, protocol="wmbus", bus=bus, id=identification, **kwargs)


def telegram_number(meter: WirelessMeterModel, raw: bytes) -> int:
    """Which of the model's telegrams ``raw`` (as the dongle delivered it) is."""
    stripped = decode_frame(raw, frame_format="auto").to_bytes()
    for count in range(1, meter.sent + 1):
        if meter.telegram_at(count) == stripped:
            return count
    raise AssertionError("not a telegram of this meter")


async def until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def receiving(receiver):
    """Run the receiver for the block, then stop it; ``run`` failing fails the test."""
    task = asyncio.ensure_future(receiver.run())
    try:
        yield task
    finally:
        receiver.stop()
        done, _ = await asyncio.wait([task], timeout=WAIT_S)
        if not done:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()
