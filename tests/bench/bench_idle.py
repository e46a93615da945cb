"""Resident memory and CPU of an idle `gateway run` with 250 meters configured.

The meters are wired M-Bus meters on 5 buses (50 each, read every 15 minutes), reached
through TCP serial servers on loopback ports where nothing listens: every connection is
refused at once, so no hardware is needed and the daemon idles between its collectors'
reconnection attempts. After a warm-up, the CPU time the process used (utime + stime from
/proc/PID/stat) is measured over a window, and its resident memory (VmRSS, peak VmHWM)
at the end. Goal: under 60 MB and under 1 % of one core.

    python tests/bench/bench_idle.py [--window-s 60] [--warmup-s 15] [--gateway "gateway"]
                                     [--buffered N]

Prints one JSON line. ``--buffered 1000000`` first fills the store with a million readings
and configures an MQTT uplink whose broker refuses connections, so they stay buffered while
the memory is measured (the store keeps them on disk, not in memory).
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


def write_config(directory: Path, meters: int, buses: int, uplink: bool) -> Path:
    lines = ["[gateway]", 'id = "gw-bench-idle"', f'state_dir = "{directory / "state"}"', 'timezone = "Europe/Berlin"', "",
             "[store]", "max_bytes = 4294967296", ""]
    if uplink:  # a broker that refuses connections: the buffered readings stay buffered
        lines += ["[[uplinks.mqtt]]", f'url = "mqtt://127.0.0.1:{refused_port()}"', ""]
    for bus in range(buses):
        lines += ["[[buses]]", f'name = "bus{bus}"', 'protocol = "mbus"', f'tcp = "127.0.0.1:{refused_port()}"', ""]
    for index in range(meters):
        lines += ["[[meters]]", f'name = "meter{index:03d}"', 'protocol = "mbus"', f'bus = "bus{index % buses}"',
                  f"address = {index // buses + 1}", "[meters.schedule]", "interval_s = 900", ""]
    path = directory / "gateway.toml"
    path.write_text("\n".join(lines))
    return path


def prefill(store_path: Path, readings: int) -> None:
    """Put ``readings`` readings in the store, as an outage of the uplink would leave them."""
    import asyncio
    from datetime import datetime, timezone
    from decimal import Decimal

    from gateway.config import StoreSection
    from gateway.model import Reading
    from gateway.store import Store

    async def fill() -> None:
        store_path.parent.mkdir(parents=True, exist_ok=True)
        async with Store(store_path, StoreSection(max_bytes=4 << 30, synchronous="normal")) as store:
            now = datetime.now(timezone.utc)
            for start in range(0, readings, 5000):
                await store.append([
                    Reading(device=f"GWY-{10_000_000 + n % 250:08d}-01-04", quantity="energy", value=Decimal(n),
                            unit="Wh", captured_at=now)
                    for n in range(start, min(readings, start + 5000))])

    asyncio.run(fill())


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
    parser.add_argument("--buffered", type=int, default=0, metavar="N",
                        help="readings waiting in the store for an MQTT broker that refuses connections")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        directory = Path(tmp)
        config = write_config(directory, args.meters, BUSES, uplink=args.buffered > 0)
        if args.buffered:
            prefill(directory / "state" / "store.sqlite", args.buffered)
        log_path = directory / "gateway.log"
        command = [*shlex.split(args.gateway), "run", "--config", str(config)]
        result: dict[str, object] = {"bench": "idle", "meters": args.meters, "buses": BUSES,
                                     "buffered_readings": args.buffered, "warmup_s": args.warmup_s,
                                     "window_s": args.window_s}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=log)
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
