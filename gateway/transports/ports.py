"""One open transport per physical port, shared by every bus configured on it.

Two buses on one port (M-Bus now, Modbus or DLMS HDLC later) must not open it twice:
two readers of one tty each get half of the bytes. :func:`open_transport` hands every
caller in the same event loop the same :class:`~gateway.transports.base.Transport` for
the same port and closes it when the last one leaves; callers take turns through
``transport.claim(line)``, which holds the port's lock for a whole transaction.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from gateway.transports.base import LineSettings, Transport
from gateway.transports.serial_port import SerialTransport
from gateway.transports.tcp import TcpTransport


@dataclass
class _Shared:
    transport: Transport
    users: int = 0
    # Held while opening, so a second bus arriving meanwhile waits for the same port.
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)


_REGISTRIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Shared]] = weakref.WeakKeyDictionary()


def port_key(port: str | None = None, tcp: str | None = None) -> str:
    """The identity of a physical port: the resolved device path, or host:port."""
    if (port is None) == (tcp is None):
        raise ValueError("give exactly one of port (serial device) or tcp (HOST:PORT)")
    if port is not None:
        return "serial:" + os.path.realpath(port)
    host, _, number = tcp.rpartition(":")  # type: ignore[union-attr]
    return f"tcp:{host.lower()}:{int(number)}"


def make_transport(line: LineSettings, port: str | None = None, tcp: str | None = None) -> Transport:
    """A new, unopened transport for a serial device or a TCP serial server (HOST:PORT)."""
    if port is not None:
        return SerialTransport(port, line)
    if tcp is None:
        raise ValueError("give exactly one of port (serial device) or tcp (HOST:PORT)")
    host, _, number = tcp.rpartition(":")
    return TcpTransport(host.strip("[]"), int(number), line)


@asynccontextmanager
async def open_transport(line: LineSettings, port: str | None = None, tcp: str | None = None) -> AsyncIterator[Transport]:
    """The open, shared transport of a port for the duration of the block."""
    key = port_key(port, tcp)
    registry = _REGISTRIES.setdefault(asyncio.get_running_loop(), {})
    shared = registry.get(key)
    if shared is None:
        shared = registry[key] = _Shared(make_transport(line, port, tcp))
    shared.users += 1
    try:
        async with shared.opening:
            await shared.transport.open()  # returns at once when already open
        yield shared.transport
    finally:
        shared.users -= 1
        if shared.users == 0 and registry.get(key) is shared:
            del registry[key]
            await shared.transport.close()
