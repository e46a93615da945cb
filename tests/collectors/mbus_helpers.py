"""Shared by the M-Bus master, collector and integration tests: simulated buses on ptys."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from gateway.codecs.mbus.link import Frame
from gateway.collectors.mbus_master import MBusMaster
from gateway.simulators.mbus import FrameTelegrams, Pacing, SimulatedBus, SimulatedSlave, serve_pty
from gateway.transports import LineSettings, open_transport

ROOT = Path(__file__).parents[2]
FRAMES = ROOT / "tests" / "data" / "mbus-libmbus" / "test-frames"
PEER = ROOT / "tests" / "peers" / "mbus-slave" / "mbus_slave_sim.py"
CORPUS = sorted(FRAMES.glob("*.hex"))


def frame_file(stem: str) -> Path:
    return FRAMES / f"{stem}.hex"


def slave(address: int, *stems: str, **faults) -> SimulatedSlave:
    return SimulatedSlave(address, FrameTelegrams.from_files([frame_file(s) for s in stems]), **faults)


class RecordingBus(SimulatedBus):
    """A simulated bus that remembers every request it heard, in order."""

    def __init__(self, slaves):
        super().__init__(slaves)
        self.heard: list[bytes] = []

    def handle(self, request: Frame) -> bytes:
        self.heard.append(request.to_bytes())
        return super().handle(request)


@contextlib.asynccontextmanager
async def master_on_pty(bus: SimulatedBus, *, baud: int = 9600, paced: bool = True, retries: int = 2,
                        reply_delay_s: float | None = None) -> AsyncIterator[MBusMaster]:
    """The package's simulator on a pty in this event loop, and a master on its other end
    (``master.line_noise(data)`` puts bytes on the line as if a slave sent them)."""
    line = LineSettings(baud)
    async with serve_pty(bus, Pacing(line, paced=paced, reply_delay_s=reply_delay_s)) as server:
        async with open_transport(line, port=server.path) as transport:
            master = MBusMaster(transport, line, retries=retries)
            master.line_noise = server.inject  # type: ignore[attr-defined]
            yield master


@contextlib.contextmanager
def simulator_process(kind: str, slaves: dict[int, list[Path]], *, mute=(), bad_checksum=(), baud: int = 9600,
                      models: list[str] = ()) -> Iterator[str]:
    """A simulator in its own process, ``kind`` "package" (gateway.simulators.mbus, paced at
    ``baud``) or "peer" (the independent tests/peers/mbus-slave); yields its pty path."""
    specs = [f"{address}:{','.join(map(str, files))}" for address, files in slaves.items()]
    if kind == "peer":
        command = [sys.executable, str(PEER), *specs]
        command += [f"--mute={a}" for a in mute] + [f"--badcs={a}" for a in bad_checksum]
    else:
        command = [sys.executable, "-m", "gateway.simulators.mbus", f"--baud={baud}", *specs]
        command += [f"--mute={a}" for a in mute] + [f"--bad-checksum={a}" for a in bad_checksum]
        command += [f"--model={m}" for m in models]
    with announced_pty(command) as pty:
        yield pty


@contextlib.contextmanager
def announced_pty(command: list[str]) -> Iterator[str]:
    """Run a simulator process that prints ``PTY /dev/pts/N`` first; yields the path."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = process.stdout.readline().split()
        if len(line) != 2 or line[0] != "PTY":
            raise RuntimeError(f"simulator did not start: {line}")
        yield line[1]
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
