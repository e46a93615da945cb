"""Resident memory and CPU of an idle `gateway run` with 250 meters configured.

The meters are wired M-Bus meters on 5 buses (50 each, read every 15 minutes), reached
through TCP serial servers on loopback ports where nothing listens: every connection is
refused at once, so no hardware is needed and the daemon idles between its collectors'
reconnection attempts. After a warm-up, the CPU time the process used (utime + stime from
/proc/PID/stat) is measured over a window, and its resident memory (VmRSS, peak VmHWM)
at the end. Goal: under 60 MB and under 1 % of one core.

    python tests/bench/bench_idle.py [--window-s 60] [--warmup-s 15] [--gateway "gateway"]
                                     [--stub-missing]

Prints one JSON line. ``--stub-missing`` stands in minimal stand-ins for the store, signing
key and M-Bus collector modules while they are not on this branch (the stand-in collector
connects to its TCP serial server and fails like the real one; the stand-in store keeps
nothing): a lower bound, named in the output's "stubbed" list, never the real figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METERS, BUSES = 250, 5
GOAL_RSS_MB, GOAL_CPU_PERCENT = 60.0, 1.0


def refused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(directory: Path, meters: int, buses: int) -> Path:
    lines = ["[gateway]", 'id = "gw-bench-idle"', f'state_dir = "{directory / "state"}"', 'timezone = "Europe/Berlin"', ""]
    for bus in range(buses):
        lines += ["[[buses]]", f'name = "bus{bus}"', 'protocol = "mbus"', f'tcp = "127.0.0.1:{refused_port()}"', ""]
    for index in range(meters):
        lines += ["[[meters]]", f'name = "meter{index:03d}"', 'protocol = "mbus"', f'bus = "bus{index % buses}"',
                  f"address = {index // buses + 1}", "[meters.schedule]", "interval_s = 900", ""]
    path = directory / "gateway.toml"
    path.write_text("\n".join(lines))
    return path


# Stand-ins for modules other branches provide, found only when the real one is missing
# (the finder is appended after the normal ones).
STUBS = {
    "gateway.signing": """
class SigningKey:
    @classmethod
    def load_or_create(cls, path):
        return cls()
""",
    "gateway.store": """
class Store:
    last_seq = 0
    def __init__(self, path, config): pass
    async def __aenter__(self): return self
    async def __aexit__(self, *exc): return None
    async def append(self, records):
        first = self.last_seq + 1
        self.last_seq += len(records)
        return list(range(first, self.last_seq + 1))
    async def stats(self):
        import types
        return types.SimpleNamespace(records=self.last_seq)
    async def enforce_retention(self): pass
    async def cursor(self, name): return self.last_seq
""",
    "gateway.collectors.mbus": """
import asyncio, contextlib
from gateway.collectors.base import PolledBus
from gateway.errors import TransportError

class MBusCollector(PolledBus):
    @classmethod
    def from_config(cls, bus, meters, sink, tz):
        collector = cls(bus.name, meters, sink, tz)
        collector.tcp = bus.tcp
        return collector

    @contextlib.asynccontextmanager
    async def connect(self):
        host, _, port = self.tcp.rpartition(":")
        try:
            async with asyncio.timeout(10):
                reader, writer = await asyncio.open_connection(host, int(port))
        except OSError as exc:
            raise TransportError(f"{self.tcp}: {exc}") from None
        try:
            yield reader, writer
        finally:
            writer.close()

    async def read_meter(self, meter):
        raise TransportError("stand-in collector reads nothing")
""",
}

SITECUSTOMIZE = """
import importlib.abc, importlib.util, sys
STUBS = %r

class _Stubs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in STUBS else None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        exec(STUBS[module.__name__], module.__dict__)

sys.meta_path.append(_Stubs())
"""


def missing_modules(python: str) -> list[str]:
    probe = "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    out = subprocess.run([python, "-c", probe, *STUBS], capture_output=True, text=True, check=True).stdout
    return out.split()


def stub_environment(directory: Path, names: list[str]) -> dict[str, str]:
    (directory / "stubs").mkdir()
    (directory / "stubs" / "sitecustomize.py").write_text(SITECUSTOMIZE % {n: STUBS[n] for n in names})
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(directory / "stubs"),
                                                                       os.environ.get("PYTHONPATH")]))}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--meters", type=int, default=METERS)
    parser.add_argument("--gateway", default=f"{shlex.quote(sys.executable)} -m gateway",
                        help="command that runs the gateway (default: this Python's gateway package)")
    parser.add_argument("--stub-missing", action="store_true",
                        help="stand in for the store, signing and M-Bus collector modules if they are missing")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        directory = Path(tmp)
        config = write_config(directory, args.meters, BUSES)
        log_path = directory / "gateway.log"
        command = [*shlex.split(args.gateway), "run", "--config", str(config)]
        stubbed = missing_modules(command[0]) if args.stub_missing else []
        environment = stub_environment(directory, stubbed) if stubbed else None
        result: dict[str, object] = {"bench": "idle", "meters": args.meters, "buses": BUSES,
                                     "warmup_s": args.warmup_s, "window_s": args.window_s, "stubbed": stubbed}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=log, env=environment)
            try:
                time.sleep(args.warmup_s)
                if process.poll() is None:
                    cpu_before, started = cpu_seconds(process.pid), time.monotonic()
                    time.sleep(args.window_s)
                if process.poll() is not None:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                    result.update(ok=False, error=f"gateway exited with {process.returncode}", log_tail=tail)
                else:
                    elapsed = time.monotonic() - started
                    cpu = cpu_seconds(process.pid) - cpu_before
                    memory = memory_mb(process.pid)
                    result.update(
                        rss_mb=round(memory["VmRSS"], 1),
                        peak_rss_mb=round(memory["VmHWM"], 1),
                        cpu_s=round(cpu, 3),
                        cpu_percent=round(100 * cpu / elapsed, 3),
                        goal_rss_mb=GOAL_RSS_MB,
                        goal_cpu_percent=GOAL_CPU_PERCENT,
                    )
                    result["ok"] = result["rss_mb"] < GOAL_RSS_MB and result["cpu_percent"] < GOAL_CPU_PERCENT
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        result["exit_code"] = process.wait(60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        result["exit_code"] = "killed"
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
