"""sd_notify over a real AF_UNIX datagram socket, and the watchdog that pings only while the
event loop turns and the store answers."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.systemd import Notifier, notify_address, watchdog_interval_s


class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket bound by the test."""

    def __init__(self, sock: socket.socket, environ_name: str) -> None:
        self.sock = sock
        self.environ_name = environ_name

    def notifier(self, watchdog_s: float | None = None) -> Notifier:
        environ = {"NOTIFY_SOCKET": self.environ_name}
        if watchdog_s is not None:
            environ["WATCHDOG_USEC"] = str(int(watchdog_s * 2 * 1_000_000))
        return Notifier.from_environment(environ)

    def receive(self, timeout_s: float = 5.0) -> list[str]:
        """The lines of the next datagram (waits for it)."""
        self.sock.settimeout(timeout_s)
        return self.sock.recv(4096).decode().split("\n")

    def drain(self) -> list[list[str]]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        datagrams = []
        try:
            while True:
                datagrams.append(self.sock.recv(4096).decode().split("\n"))
        except BlockingIOError:
            return datagrams


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield NotifySocket(sock, str(path))


@pytest.fixture
def abstract_socket() -> Iterator[NotifySocket]:
    name = f"gateway-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        yield NotifySocket(sock, "@" + name)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, path_socket, abstract_socket) -> NotifySocket:
    return path_socket if request.param == "path" else abstract_socket


def test_ready_status_watchdog_and_stopping_arrive_as_sd_notify_datagrams(notify_socket):
    notifier = notify_socket.notifier()
    assert notifier.enabled
    assert notifier.ready("running: 2 buses")
    assert notify_socket.receive() == ["READY=1", "STATUS=running: 2 buses"]
    assert notifier.status("store is slow")
    assert notify_socket.receive() == ["STATUS=store is slow"]
    assert notifier.ping()
    assert notify_socket.receive() == ["WATCHDOG=1"]
    assert notifier.stopping("stopping: polling first")
    assert notify_socket.receive() == ["STOPPING=1", "STATUS=stopping: polling first"]


def test_an_abstract_socket_name_starting_with_at_becomes_a_leading_nul():
    assert notify_address({"NOTIFY_SOCKET": "@/org/freedesktop/systemd1/notify"}) == b"\0/org/freedesktop/systemd1/notify"
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({}) is None
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}) is None


def test_without_notify_socket_every_notification_is_a_no_op():
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "60000000"})
    assert not notifier.enabled
    assert notifier.watchdog_s is None
    assert not notifier.ready("running")
    assert not notifier.ping()


def test_a_socket_nobody_listens_on_is_reported_not_raised(tmp_path: Path, caplog):
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.ready("running") is False
    assert "cannot notify systemd (READY)" in caplog.text


def test_the_watchdog_interval_is_half_of_watchdog_usec_and_only_for_its_own_pid():
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({}) is None


async def test_without_a_watchdog_the_pinger_returns_at_once(path_socket):
    async def healthy() -> bool:
        raise AssertionError("no watchdog, no health check")

    await asyncio.wait_for(path_socket.notifier().watchdog(healthy), 5)
    assert path_socket.drain() == []


class Health:
    """A health check whose answer the test sets, counting how often it was asked."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.calls = 0
        self.asked = asyncio.Event()

    async def __call__(self) -> bool:
        self.calls += 1
        self.asked.set()
        return self.answer

    async def wait_calls(self, n: int) -> None:
        target = self.calls + n
        while self.calls < target:
            self.asked.clear()
            await asyncio.wait_for(self.asked.wait(), 5)


async def run_watchdog(notifier: Notifier, healthy, **kwargs) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(notifier.watchdog(healthy, **kwargs))


async def test_the_watchdog_pings_while_the_loop_turns_and_the_store_is_healthy(path_socket):
    notifier = path_socket.notifier(watchdog_s=0.01)
    health = Health()
    task = await run_watchdog(notifier, health)
    try:
        await health.wait_calls(5)
    finally:
        task.cancel()
    pings = path_socket.drain()
    assert len(pings) >= 4
    assert all(datagram == ["WATCHDOG=1"] for datagram in pings)


async def test_a_blocked_event_loop_sends_no_watchdog_ping(path_socket):
    interval_s = 0.01
    notifier = path_socket.notifier(watchdog_s=interval_s)
    health = Health()
    arrived_while_blocked: list[list[str]] = []

    def block_the_loop() -> None:
        # Runs on the event loop: everything sent before this point is already queued on the
        # receiving socket (an AF_UNIX sendto returns once the datagram is queued).
        path_socket.drain()
        time.sleep(30 * interval_s)
        arrived_while_blocked.extend(path_socket.drain())

    task = await run_watchdog(notifier, health)
    try:
        await health.wait_calls(3)
        asyncio.get_running_loop().call_soon(block_the_loop)
        await health.wait_calls(3)  # the loop turns again after the block, and so do the pings
    finally:
        task.cancel()
    assert arrived_while_blocked == []
    assert ["WATCHDOG=1"] in path_socket.drain()


async def test_a_pinger_on_another_thread_would_have_been_caught_pinging_through_the_block(path_socket):
    """The blocked-loop test above can fail: the same block, with pings sent from a thread
    (which a blocked loop does not stop), does see pings arrive."""
    import threading

    notifier = path_socket.notifier(watchdog_s=0.01)
    stop = threading.Event()

    def thread_pinger() -> None:
        while not stop.wait(0.01):
            notifier.ping()

    thread = threading.Thread(target=thread_pinger)
    thread.start()
    try:
        path_socket.drain()
        time.sleep(0.3)
        arrived = path_socket.drain()
    finally:
        stop.set()
        thread.join()
    assert arrived


@pytest.mark.parametrize("failure", ["unhealthy", "raises", "hangs"])
async def test_an_unhealthy_store_stops_the_pings_and_a_recovered_one_resumes_them(path_socket, caplog, failure):
    notifier = path_socket.notifier(watchdog_s=0.01)
    state = {"failing": True}
    checks = Health()

    async def store_check() -> bool:
        await checks()
        if state["failing"]:
            if failure == "raises":
                raise OSError("database is locked")
            if failure == "hangs":
                await asyncio.Event().wait()
            return False
        return True

    task = await run_watchdog(notifier, store_check, check_timeout_s=0.01)
    try:
        await checks.wait_calls(5)
        withheld = path_socket.drain()
        state["failing"] = False
        await checks.wait_calls(3)
    finally:
        task.cancel()
    assert all("WATCHDOG=1" not in datagram for datagram in withheld)
    assert any(datagram[0].startswith("STATUS=unhealthy: ") for datagram in withheld)
    assert ["WATCHDOG=1"] in path_socket.drain()
    assert "withholding pings" in caplog.text
