"""The pseudo-terminal plumbing the simulators share: a device end for the host to open as a
serial port, and a simulator end that never blocks the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tty
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PtyEnd:
    """The simulator's end of a pseudo-terminal: the host opens :attr:`path`; :attr:`write`
    sends bytes to it."""

    path: str
    write: Callable[[bytes], None]


@contextlib.asynccontextmanager
async def pty_end(received: Callable[[bytes], None]) -> AsyncIterator[PtyEnd]:
    """A new pseudo-terminal for the block; ``received(data)`` gets what the host writes."""
    loop = asyncio.get_running_loop()
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)  # no echo, no line discipline until the host configures it
    os.set_blocking(master_fd, False)
    writer = PtyWriter(master_fd)

    def readable() -> None:
        try:
            data = os.read(master_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while nobody has the other side open: nothing to read
        if data:
            received(data)

    loop.add_reader(master_fd, readable)
    try:
        yield PtyEnd(os.ttyname(slave_fd), writer.write)
    finally:
        loop.remove_reader(master_fd)
        writer.close()
        os.close(master_fd)
        os.close(slave_fd)  # kept open until now so the master side never reads EIO


class PtyWriter:
    """Writes to the pty without blocking the event loop: what the pty's buffer (4 KiB)
    cannot take now waits here and goes out when the fd is writable again."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = bytearray()
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        try:
            written = os.write(self._fd, self._pending) if self._pending else 0
        except BlockingIOError:
            written = 0
        del self._pending[:written]
        if self._pending:
            self._loop.add_writer(self._fd, self._flush)
        else:
            self._loop.remove_writer(self._fd)

    def close(self) -> None:
        self._loop.remove_writer(self._fd)


async def serve_until_signalled(server: AbstractAsyncContextManager[Any], announce: Callable[[Any], str]) -> None:
    """Run a simulator's server until SIGINT or SIGTERM, after printing ``announce(server)``
    (the line a caller reads to find it) on stdout."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server as running:
        print(announce(running), flush=True)
        await stop.wait()
