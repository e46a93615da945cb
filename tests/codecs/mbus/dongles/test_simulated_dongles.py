"""Simulated dongles on a pseudo-terminal pair: the adapter talks to a fake dongle through a
real serial port (pyserial-asyncio-fast on the pty's slave side), starts the receiver with
its commands and reads the telegrams the dongle then sends, in odd-sized chunks, with and
without garbage in between; a silent dongle times out cleanly."""

from __future__ import annotations

import asyncio
import os
import random
import tty
from collections.abc import Callable
from contextlib import asynccontextmanager

import pytest
import serial_asyncio_fast

from gateway.codecs.mbus.dongles import ReceivedTelegram
from gateway.codecs.mbus.dongles.amber import AmberAdapter, AmberConfirm
from gateway.codecs.mbus.dongles.cul import CulAdapter, CulText
from gateway.codecs.mbus.dongles.imst import HciMessage, ImstDeviceInfo, ImstHci
from gateway.codecs.mbus.wireless_link import decode_frame

from .dongle_bytes import amber_indication, corpus_frames, cul_line, drain, garbage, imst_indication

pytestmark = pytest.mark.integration

FRAMES = corpus_frames(60)
TIMEOUT_S = 10


class FakeDongle:
    """The master side of a pty: answers the commands it expects, then sends telegrams."""

    def __init__(self, master: int, script: list[tuple[bytes, bytes]], stream: bytes, *, seed: int = 0) -> None:
        self.master = master
        self.script = list(script)  # (expected command, answer)
        self.stream = stream
        self.received = bytearray()
        self.rng = random.Random(seed)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.master, readable.set)
        try:
            while self.script:
                await readable.wait()
                readable.clear()
                try:
                    self.received += os.read(self.master, 4096)
                except BlockingIOError:
                    continue
                expected, answer = self.script[0]
                if self.received.startswith(expected):
                    del self.received[: len(expected)]
                    self.script.pop(0)
                    await self.write(answer)
            await self.write(self.stream)
        finally:
            loop.remove_reader(self.master)

    async def write(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            size = self.rng.randint(1, 300)  # a dongle's USB chunks have no telling size
            try:
                pos += os.write(self.master, data[pos : pos + size])
            except BlockingIOError:
                await asyncio.sleep(0.001)
            await asyncio.sleep(0)


@asynccontextmanager
async def serial_pair(baudrate: int):
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=os.ttyname(slave), baudrate=baudrate)
    try:
        yield master, reader, writer
    finally:
        writer.close()
        os.close(slave)
        os.close(master)


async def collect(reader, adapter, until: Callable[[list], bool], events: list | None = None) -> tuple[list, int]:
    """Read and decode until ``until(events)``; returns the events and the errors raised."""
    events = [] if events is None else events
    errors = 0
    while not until(events):
        adapter.receive_data(await reader.read(4096))
        got, failed = drain(adapter)
        events += got
        errors += failed
    return events, errors


def telegram_count(n: int) -> Callable[[list], bool]:
    return lambda events: sum(isinstance(e, ReceivedTelegram) for e in events) >= n


def answer_count(n: int) -> Callable[[list], bool]:
    return lambda events: sum(not isinstance(e, ReceivedTelegram) for e in events) >= n


async def converse(reader, writer, adapter, commands: list[bytes], answers: list[int]) -> list:
    """Send each command and read until the number of answers given for it has come."""
    events: list = []
    expected = 0
    for command, count in zip(commands, answers):
        writer.write(command)
        await writer.drain()
        expected += count
        await collect(reader, adapter, answer_count(expected), events)
    return events


def stripped(events) -> list[bytes]:
    return [
        decode_frame(e.frame, frame_format=e.frame_format).to_bytes() for e in events if isinstance(e, ReceivedTelegram)
    ]


async def run_session(adapter, script, stream, baudrate, commands, expect_answers: int, seed: int = 0):
    async with serial_pair(baudrate) as (master, reader, writer):
        dongle = FakeDongle(master, script, stream, seed=seed)
        async with asyncio.timeout(TIMEOUT_S), asyncio.TaskGroup() as group:
            group.create_task(dongle.run())
            events = await converse(reader, writer, adapter, commands, [1] * len(commands))
            _, errors = await collect(reader, adapter, telegram_count(len(FRAMES)), events)
        answers = [e for e in events if not isinstance(e, ReceivedTelegram)]
        assert len(answers) == expect_answers
        return answers, events, errors


def imst_script():
    device_info = ImstHci.message(0x01, 0x10, bytes([0x33, 0, 0x15, 2]) + (0x1234).to_bytes(4, "little"))
    return [
        (ImstHci.command_get_device_info(), device_info),
        (ImstHci.command_set_link_mode("T1"), ImstHci.message(0x01, 0x04, b"\x00")),
    ]


@pytest.mark.parametrize("noisy", [False, True])
async def test_an_imst_dongle_is_configured_and_its_telegrams_read_through_a_pty(noisy):
    rng = random.Random(5)
    noise = (lambda: garbage(rng, 25, avoid=b"\xa5")) if noisy else bytes
    stream = b"".join(noise() + imst_indication(f, rssi=100) for f in FRAMES)
    adapter = ImstHci()
    answers, events, errors = await run_session(
        adapter, imst_script(), stream, 57600, [ImstHci.command_get_device_info(), ImstHci.command_set_link_mode("T1")], 2
    )
    assert isinstance(answers[0], ImstDeviceInfo) and answers[0].module == "iM871A"
    assert answers[1] == HciMessage(0x01, 0x04, b"\x00")
    assert stripped(events) == FRAMES and errors == 0
    assert (adapter.skipped_bytes > 0) is noisy
    assert {e.rssi_dbm for e in events if isinstance(e, ReceivedTelegram)} == {-73}


@pytest.mark.parametrize("noisy", [False, True])
async def test_an_amber_dongle_is_set_to_c1_and_its_telegrams_read_through_a_pty(noisy):
    rng = random.Random(6)
    noise = (lambda: garbage(rng, 25, avoid=b"\xff")) if noisy else bytes
    stream = b"".join(noise() + amber_indication(f) for f in FRAMES)
    script = [(AmberAdapter.command_set_link_mode("C1"), AmberAdapter.command(0x84, b"\x00"))]
    adapter = AmberAdapter()
    answers, events, errors = await run_session(
        adapter, script, stream, 9600, [AmberAdapter.command_set_link_mode("C1")], 1, seed=1
    )
    assert answers == [AmberConfirm(0x84, b"\x00")]
    assert stripped(events) == FRAMES and errors == 0
    assert (adapter.skipped_bytes > 0) is noisy


@pytest.mark.parametrize("noisy", [False, True])
async def test_a_cul_stick_is_asked_its_version_set_to_t_mode_and_read_through_a_pty(noisy):
    rng = random.Random(7)
    noise = (lambda: garbage(rng, 40, avoid=b"\n") + b"\r\n") if noisy else bytes
    stream = b"".join(noise() + cul_line(f) for f in FRAMES)
    script = [
        (CulAdapter.command_version(), b"V 1.67 nanoCUL868\r\n"),
        (CulAdapter.command_set_link_mode("T1"), b"TMODE\r\n"),
        (CulAdapter.command_report_rssi(), b""),
    ]
    adapter = CulAdapter()
    async with serial_pair(38400) as (master, reader, writer):
        dongle = FakeDongle(master, script, stream, seed=2)
        async with asyncio.timeout(TIMEOUT_S), asyncio.TaskGroup() as group:
            group.create_task(dongle.run())
            commands = [CulAdapter.command_version(), CulAdapter.command_set_link_mode("T1"), CulAdapter.command_report_rssi()]
            events = await converse(reader, writer, adapter, commands, [1, 1, 0])
            await collect(reader, adapter, telegram_count(len(FRAMES)), events)
    answers = [e for e in events if isinstance(e, CulText)]
    assert answers[:2] == [CulText("V 1.67 nanoCUL868"), CulText("TMODE")]
    telegrams = [e for e in events if isinstance(e, ReceivedTelegram)]
    assert stripped(telegrams) == FRAMES
    assert (adapter.skipped_bytes > 0 or len(answers) > 2) is noisy


async def test_a_dongle_that_only_spews_garbage_yields_no_telegram_and_counts_what_it_skipped():
    rng = random.Random(8)
    stream = garbage(rng, 20000)
    adapter = ImstHci()
    async with serial_pair(57600) as (master, reader, _writer):
        dongle = FakeDongle(master, [], stream, seed=3)
        async with asyncio.TaskGroup() as group:
            group.create_task(dongle.run())
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await collect(reader, adapter, telegram_count(1))
    assert adapter.skipped_bytes > 15000


@pytest.mark.parametrize("make", [ImstHci, AmberAdapter, CulAdapter])
async def test_a_silent_dongle_times_out_without_events(make):
    adapter = make()
    command = adapter.command_version() if isinstance(adapter, CulAdapter) else (
        ImstHci.command_get_device_info() if isinstance(adapter, ImstHci) else AmberAdapter.command_get_serial_number()
    )
    async with serial_pair(57600) as (_master, reader, writer):
        writer.write(command)
        await writer.drain()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await collect(reader, adapter, lambda events: len(events) >= 1)
    assert adapter.events == 0 and adapter.buffered == 0
