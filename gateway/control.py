"""The daemon's local control socket: ``STATE_DIR/control.sock``.

The command line reaches the running daemon here (``gateway config apply``, ``gateway
meters …``, ``gateway keys rotate``): one JSON request line ``{"command": NAME, ...args}``,
one JSON response line as the MQTT commands answer (:mod:`gateway.uplinks.commands`). The
socket is mode 0600 in the 0700 state directory: only the service's user and root reach it.

Unix socket paths are limited to 107 bytes; a longer state directory path is reached
through ``/proc/self/fd/N/control.sock`` of an open descriptor of the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.uplinks.commands import CommandRouter

log = logging.getLogger(__name__)

SOCKET = "control.sock"
MAX_REQUEST_BYTES = 4 * 1024 * 1024
SUN_PATH_MAX = 107


class DaemonNotRunning(GatewayError):
    """Nothing answers on the control socket."""


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    if len(str(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def serve(state_dir: Path, router: CommandRouter) -> AsyncIterator[Path]:
    """Answer requests on ``STATE_DIR/control.sock`` while the context is open."""
    path = Path(state_dir) / SOCKET
    path.unlink(missing_ok=True)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readuntil(b"\n")
            request = json.loads(line)
            command = str(request.pop("command", ""))
            _ok, response = await router.answer(command, json.dumps(request).encode())
            writer.write(response + b"\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError) as exc:
            log.debug("control: bad request: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    old_umask = os.umask(0o177)
    try:
        with _short_path(path) as address:
            server = await asyncio.start_unix_server(handle, address, limit=MAX_REQUEST_BYTES)
    finally:
        os.umask(old_umask)
    try:
        async with server:
            yield path
    finally:
        path.unlink(missing_ok=True)


async def request(state_dir: Path, command: str, args: dict[str, Any] | None = None, *,
                  timeout_s: float = 120.0) -> dict[str, Any]:
    """Send one command to the running daemon; its answer ``{"ok": …}``.
    :class:`DaemonNotRunning` when no daemon listens."""
    path = Path(state_dir) / SOCKET
    try:
        async with asyncio.timeout(timeout_s):
            with _short_path(path) as address:
                reader, writer = await asyncio.open_unix_connection(address, limit=MAX_REQUEST_BYTES)
            try:
                writer.write(json.dumps({"command": command, **(args or {})}).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (FileNotFoundError, ConnectionRefusedError):
        raise DaemonNotRunning(f"no gateway daemon answers on {path}") from None
    except TimeoutError:
        raise GatewayError(f"the daemon did not answer {command} within {timeout_s:g} s") from None
    if not line:
        raise GatewayError(f"the daemon closed the control connection without answering {command}")
    return json.loads(line)
