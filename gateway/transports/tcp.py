"""A TCP serial server (a "serial device server" or M-Bus-to-LAN gateway) on asyncio's
transport/protocol layer, the one asyncio streams are built on."""

from __future__ import annotations

import asyncio
import os

from gateway.errors import TransportError
from gateway.transports.base import LineSettings, Transport, _Inbox


class TcpTransport(Transport):
    """``TcpTransport("10.0.0.5", 10001, LineSettings(2400))``.

    The serial server owns the line settings of its port; ours only drive timing, so
    :meth:`set_line` records the new settings and sends nothing.
    """

    def __init__(self, host: str, port: int, line: LineSettings) -> None:
        super().__init__(f"TCP serial server {host}:{port}", line)
        self.host = host
        self.port = port

    async def _open(self) -> tuple[asyncio.BaseTransport, _Inbox]:
        loop = asyncio.get_running_loop()
        try:
            transport, inbox = await loop.create_connection(_Inbox, self.host, self.port)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise TransportError(f"cannot connect to {self.description}: {reason}") from None
        return transport, inbox

    def _apply_line(self, line: LineSettings) -> None:
        """Nothing to send: the server's port configuration is set on the server."""
