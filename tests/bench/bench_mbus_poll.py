"""Poll-cycle time of a paced wired M-Bus against the wire-time lower bound. One JSON line.

    .venv/bin/python tests/bench/bench_mbus_poll.py [--meters 50] [--baud 2400] [--cycles 3]

The package's simulator runs in its own process on a pseudo-terminal, pacing every reply
at the baud rate (11 bit times per character, after the request's own wire time and the
slave's minimum turnaround of 11 bit times). The master reads every meter once per cycle,
as the collector does: SND_NKE → E5, REQ_UD2 → RSP_UD.

The lower bound is what the wire itself needs: for every exchange, the request and reply
bytes at 11 bits per character, the slave's minimum reply delay (11 bit times) and the
mandated idle line before the next request (33 bit times). The goal is a cycle within 1.10
of it; the figure reported is the median cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from gateway.collectors.mbus_master import IDLE_BITS, SLAVE_MIN_DELAY_BITS, MBusMaster  # noqa: E402
from gateway.transports import LineSettings, open_transport  # noqa: E402

SND_NKE_BYTES, ACK_BYTES, REQ_UD2_BYTES = 5, 1, 5


def wire_bound(line: LineSettings, reply_lengths: list[int]) -> float:
    """Seconds the wire needs for one cycle: per meter a SND_NKE/E5 and a REQ_UD2/RSP_UD."""
    per_exchange = line.bit_times(SLAVE_MIN_DELAY_BITS + IDLE_BITS)
    total = 0.0
    for reply in reply_lengths:
        total += line.transmit_time(SND_NKE_BYTES + ACK_BYTES) + per_exchange
        total += line.transmit_time(REQ_UD2_BYTES + reply) + per_exchange
    return total


async def cycles(pty: str, line: LineSettings, meters: int, count: int) -> tuple[list[float], list[int], dict]:
    async with open_transport(line, port=pty) as transport:
        master = MBusMaster(transport, line, retries=1)
        durations, lengths = [], []
        for _ in range(count):
            lengths = []
            started = time.perf_counter()
            for address in range(1, meters + 1):
                readout = await master.read(address)
                lengths += [len(t.raw) for t in readout.telegrams]
            durations.append(time.perf_counter() - started)
        return durations, lengths, master.counters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=50)
    parser.add_argument("--baud", type=int, default=2400)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    line = LineSettings(args.baud)
    simulator = subprocess.Popen(
        [sys.executable, "-m", "gateway.simulators.mbus", f"--meters={args.meters}", f"--baud={args.baud}"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        pty = simulator.stdout.readline().split()[1]
        durations, lengths, counters = asyncio.run(cycles(pty, line, args.meters, args.cycles))
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    bound = wire_bound(line, lengths)
    cycle = statistics.median(durations)
    print(json.dumps({
        "benchmark": "mbus_poll_cycle",
        "meters": args.meters,
        "baud": args.baud,
        "cycles": args.cycles,
        "reply_bytes_per_cycle": sum(lengths),
        "cycle_s": round(cycle, 4),
        "cycle_s_all": [round(d, 4) for d in durations],
        "wire_bound_s": round(bound, 4),
        "ratio": round(cycle / bound, 4),
        "goal_ratio": 1.10,
        "errors": counters["errors"] + counters["timeouts"] + counters["collisions"],
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
