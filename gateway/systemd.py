"""Talking to systemd: readiness, status, stopping and the watchdog, without libsystemd.

The notification protocol (sd_notify(3)) is one datagram of ``KEY=VALUE`` lines sent to the
AF_UNIX socket named in ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract
namespace (the ``@`` stands for a leading NUL byte). Outside systemd the variable is unset
and every notification is a no-op, so the same code runs from a terminal and in tests.

The watchdog (``WatchdogSec=`` in the unit) arrives as ``$WATCHDOG_USEC``, and the daemon
must send ``WATCHDOG=1`` more often than that; we ping at half of it. The pinger is a task
on the gateway's own event loop, so a blocked loop sends nothing; and it pings only while a
health check (the store writer answering within a deadline) passes. Either way systemd
sees the silence, kills the daemon and restarts it.

Use::

    notifier = Notifier.from_environment()
    async with asyncio.TaskGroup() as group:
        group.create_task(notifier.watchdog(healthy))   # returns at once without a watchdog
        ...
        notifier.ready("polling 3 buses")
        ...
        notifier.stopping()
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger(__name__)

#: A health check for the watchdog: ``True`` when the daemon can do its job.
HealthCheck = Callable[[], Awaitable[bool]]


def notify_address(environ: Mapping[str, str]) -> str | bytes | None:
    """The socket address from ``$NOTIFY_SOCKET``: a path, or abstract bytes; None if unset."""
    name = environ.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    if name:
        # systemd 254+ also offers vsock: addresses (to VMs); a gateway never runs as one.
        log.warning("NOTIFY_SOCKET=%r is not an AF_UNIX address; systemd will not hear from us", name)
    return None


def watchdog_interval_s(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """How often to ping: half of ``$WATCHDOG_USEC``, or None when no watchdog is asked for.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for: a child that
    inherited the environment must not ping on its parent's behalf.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2 / 1_000_000


class Notifier:
    """Notifications to the service manager. Every method is a cheap no-op outside systemd.

    ``watchdog_s`` is the ping interval (half of ``WatchdogSec=``), None without a watchdog.
    """

    def __init__(self, address: str | bytes | None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        self.pings = 0
        self._healthy = True

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        environ = os.environ if environ is None else environ
        address = notify_address(environ)
        return cls(address, watchdog_interval_s(environ) if address is not None else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one notification datagram; False when there is no systemd to hear it.

        Never raises and never blocks: a notification that cannot be delivered is not a
        reason for the gateway to fail (systemd will notice the missing READY or WATCHDOG).
        """
        if self.address is None:
            return False
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("cannot notify systemd (%s): %s", lines[0].partition("=")[0], exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        """The service is up: systemd finishes ``systemctl start`` and starts dependents."""
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        """One line shown by ``systemctl status gateway``."""
        return self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def ping(self) -> bool:
        sent = self.send("WATCHDOG=1")
        self.pings += sent
        return sent

    async def watchdog(self, healthy: HealthCheck, *, check_timeout_s: float | None = None) -> None:
        """Ping the watchdog every ``watchdog_s`` while ``healthy()`` says so; run until cancelled.

        Returns at once when systemd asked for no watchdog. ``healthy()`` gets
        ``check_timeout_s`` (default: half the ping interval, so a late answer still leaves
        time to ping before systemd gives up); a check that times out or raises counts as
        unhealthy. Start it as a task on the loop it guards: a blocked loop pings nothing.
        """
        interval = self.watchdog_s
        if interval is None:
            return
        timeout = interval / 2 if check_timeout_s is None else check_timeout_s
        while True:
            if await self._check(healthy, timeout):
                self.ping()
            await asyncio.sleep(interval)

    async def _check(self, healthy: HealthCheck, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                ok = bool(await healthy())
            reason = "health check failed"
        except TimeoutError:
            ok, reason = False, f"health check took longer than {timeout_s:.1f} s"
        except Exception as exc:  # noqa: BLE001 - any failure of the check means: do not ping
            ok, reason = False, f"health check raised {type(exc).__name__}: {exc}"
        if ok != self._healthy:
            self._healthy = ok
            if ok:
                log.info("watchdog: healthy again; pinging systemd")
                self.status("running")
            else:
                log.error("watchdog: %s; withholding pings, systemd will restart the gateway", reason)
                self.status(f"unhealthy: {reason}")
        return ok
