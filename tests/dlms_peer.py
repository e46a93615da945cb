"""The independent DLMS/COSEM meter (tests/peers/dlms-meter, built on gurux-dlms) as fixtures.

Loaded as a pytest plugin by tests/conftest.py. What every DLMS test uses:

* ``dlms_meter`` → ``(host, port)`` of a fresh ``gx_meter_server.py`` on a free loopback
  port, killed after the test. Options from ``@pytest.mark.dlms_meter(iface="hdlc",
  auth="low", secure=True, args=("--password", "12345678"))`` or from an indirect
  parametrisation with the same keys. Defaults: wrapper, no authentication, no ciphering.
* ``dlms_meter_serial`` → path of a pseudo-terminal: ``socat pty,link=...,raw,echo=0`` in
  front of an HDLC meter (``iface`` forced to ``hdlc``), a real serial line for the test.
* ``start_dlms_meter(**options)`` → a factory for tests that need several meters.
* ``silent_tcp_server`` → ``(host, port)`` of a server that accepts and never answers.
* :func:`exchange`, :class:`SocketLink`, :class:`SerialLink`: drive a sans-IO link connection
  (HDLC or wrapper) over a socket or a serial line with a bounded wait; nothing hangs, a
  silent peer raises :class:`~gateway.errors.DeviceTimeout`.

The meter runs in its own virtual environment, ``.venv-peers/`` in the repository root
(gitignored), created once per machine from tests/peers/dlms-meter/requirements.txt by
tests/run-tests or, failing that, by the first test that needs it. When it cannot be had,
the test fails under ``CI=true`` and is skipped with the reason otherwise.
"""

from __future__ import annotations

import fcntl
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol

import pytest

from gateway.codecs.dlms.link_events import DataToSend, LinkEvent, NeedData
from gateway.errors import DeviceTimeout, TransportError
from tests.environment import unavailable

REPO = Path(__file__).resolve().parents[1]
PEER_DIR = REPO / "tests" / "peers" / "dlms-meter"
PEER_SCRIPT = PEER_DIR / "gx_meter_server.py"
PEER_REQUIREMENTS = PEER_DIR / "requirements.txt"
PEER_VENV = REPO / ".venv-peers"
HOST = "127.0.0.1"

START_TIMEOUT_S = 30.0  # importing gurux takes about a second; a loaded CI box takes longer
INSTALL_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and the server binding it


def peer_unavailable(reason: str) -> NoReturn:
    """A peer that cannot be had: a failure under CI=true, a skip with the reason otherwise."""
    unavailable(f"DLMS peer unavailable: {reason}")


# --- the peer's virtual environment --------------------------------------------------------

_peer_python: Path | None = None
_peer_failure: str | None = None  # tried once this session and failed: do not retry per test


def _peer_ready(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import gurux_dlms, cryptography"], capture_output=True, timeout=60)
    return probe.returncode == 0


def peer_python() -> Path:
    """The Python of ``.venv-peers``, created once per machine (serialised by a lock file,
    so parallel test processes do not install twice)."""
    global _peer_python, _peer_failure
    if _peer_python is None and _peer_failure is None:
        python = PEER_VENV / "bin" / "python"
        with open(REPO / ".venv-peers.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _peer_failure = None if _peer_ready(python) else _install_peer_venv(python)
        if _peer_failure is None:
            _peer_python = python
    if _peer_failure is not None:
        peer_unavailable(_peer_failure)
    return _peer_python


def _install_peer_venv(python: Path) -> str | None:
    """Create the venv; the reason it could not be created, or None."""
    steps = (
        ("python -m venv", [sys.executable, "-m", "venv", str(PEER_VENV)]),
        (
            f"pip install -r {PEER_REQUIREMENTS.relative_to(REPO)}",
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(PEER_REQUIREMENTS)],
        ),
    )
    for name, command in steps:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"creating {PEER_VENV.name}: {name}: {exc}"
        if done.returncode != 0:
            return f"creating {PEER_VENV.name}: {name}: {done.stderr.strip()[-500:]}"
    return None if _peer_ready(python) else f"{PEER_VENV.name} was created but cannot import gurux_dlms"


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


@dataclass
class DlmsMeter:
    """A running gx_meter_server.py."""

    host: str
    port: int
    iface: str
    process: subprocess.Popen
    log: Path

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def output(self) -> str:
        """What the meter printed (its -v hex trace and errors), for failure messages."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_listening(process: subprocess.Popen, port: int) -> bool:
    """Poll the port until it accepts (True) or the process dies (False); bounded."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            # The server serves one connection at a time; this probe closes at once.
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    raise TransportError(f"DLMS meter did not listen on {HOST}:{port} within {START_TIMEOUT_S} s")


def start_meter(
    log_dir: Path, iface: str = "wrapper", auth: str = "none", secure: bool = False, args: tuple[str, ...] = ()
) -> DlmsMeter:
    """Start gx_meter_server.py on a free loopback port and wait until it listens."""
    python = peer_python()
    options = ["--iface", iface, "--auth", auth, *(["--secure"] if secure else []), "-v", *args]
    for _attempt in range(START_ATTEMPTS):
        port = free_port()
        log = log_dir / f"dlms-meter-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(python), str(PEER_SCRIPT), "--port", str(port), *options],
                cwd=PEER_DIR,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            if _wait_listening(process, port):
                return DlmsMeter(HOST, port, iface, process, log)
        except BaseException:
            _stop(process)
            raise
        _stop(process)
    pytest.fail(f"DLMS meter exited at start {START_ATTEMPTS} times; last output:\n{log.read_text(errors='replace')}")


def _meter_options(request: pytest.FixtureRequest) -> dict:
    options = {}
    marker = request.node.get_closest_marker("dlms_meter")
    if marker is not None:
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    return options


@pytest.fixture
def start_dlms_meter(tmp_path: Path) -> Iterator:
    """Factory: ``start_dlms_meter(iface=..., auth=..., secure=..., args=(...))`` → DlmsMeter;
    every meter started is killed after the test."""
    meters: list[DlmsMeter] = []

    def start(**options) -> DlmsMeter:
        meters.append(start_meter(tmp_path, **options))
        return meters[-1]

    try:
        yield start
    finally:
        for meter in meters:
            _stop(meter.process)


@pytest.fixture
def dlms_meter(request: pytest.FixtureRequest, start_dlms_meter) -> tuple[str, int]:
    """``(host, port)`` of a fresh meter; options from ``@pytest.mark.dlms_meter(...)``."""
    return start_dlms_meter(**_meter_options(request)).address


@pytest.fixture
def dlms_meter_serial(request: pytest.FixtureRequest, start_dlms_meter, tmp_path: Path) -> Iterator[str]:
    """Path of a pseudo-terminal carrying the HDLC meter's byte stream (socat in front of it)."""
    socat = shutil.which("socat")
    if socat is None:
        peer_unavailable("socat is not installed (apt-get install socat)")
    meter = start_dlms_meter(**{**_meter_options(request), "iface": "hdlc"})
    link = tmp_path / "dlms-meter.tty"
    process = subprocess.Popen(
        [socat, f"pty,link={link},raw,echo=0", f"tcp:{meter.host}:{meter.port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not link.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                peer_unavailable(f"socat did not create {link}: {process.stderr.read().decode(errors='replace')}")
            time.sleep(0.02)
        yield str(link)
    finally:
        _stop(process)
        process.stderr.close()


@dataclass
class _SilentServer:
    listener: socket.socket
    accepted: list[socket.socket] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.listener], [], [], 0.05)
            if ready:
                self.accepted.append(self.listener.accept()[0])


@pytest.fixture
def silent_tcp_server() -> Iterator[tuple[str, int]]:
    """``(host, port)`` of a server that accepts connections and never says a word."""
    listener = socket.create_server((HOST, 0))
    server = _SilentServer(listener)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        server.stop.set()
        thread.join(STOP_TIMEOUT_S)
        for conn in server.accepted:
            conn.close()
        listener.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "dlms_meter(iface, auth, secure, args): options of the gurux meter the dlms_meter fixtures start"
    )


# --- moving bytes with a bounded wait ----------------------------------------------------


class ByteLink(Protocol):
    def write(self, data: bytes) -> None: ...

    def read(self, timeout_s: float) -> bytes:
        """Whatever arrives within ``timeout_s`` (at least one byte), b"" on timeout."""


class SocketLink:
    """A connected TCP socket as a :class:`ByteLink`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout_s: float) -> bytes:
        self.sock.settimeout(max(timeout_s, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return b""
        if not data:
            raise TransportError("the peer closed the connection")
        return data


class SerialLink:
    """A pyserial port (a pseudo-terminal here) as a :class:`ByteLink`."""

    def __init__(self, port) -> None:
        self.port = port

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read(self, timeout_s: float) -> bytes:
        self.port.timeout = max(timeout_s, 0.001)
        first = self.port.read(1)
        return first + self.port.read(self.port.in_waiting) if first else b""


def exchange(conn, link: ByteLink, data: bytes = b"", timeout_s: float = 5.0) -> LinkEvent:
    """Send ``data``, then run ``conn`` (a sans-IO link connection) until it has an event for
    the caller, sending its :class:`DataToSend` on the way. Raises DeviceTimeout when the peer
    stays silent (or never completes a frame) for ``timeout_s``."""
    if data:
        link.write(data)
    deadline = time.monotonic() + timeout_s
    while True:
        event = conn.next_event()
        if isinstance(event, DataToSend):
            link.write(event.data)
            deadline = time.monotonic() + timeout_s
        elif isinstance(event, NeedData):
            remaining = deadline - time.monotonic()
            received = link.read(remaining) if remaining > 0 else b""
            if not received:
                raise DeviceTimeout(f"no complete answer within {timeout_s} s")
            conn.receive_data(received)
        else:
            return event
