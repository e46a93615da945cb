"""SIGKILL the gateway at random moments while it polls and publishes; check what the HES got.

    python tests/bench/bench_crash_loop.py [--kills 200] [--seed N]

Starts its own Mosquitto on a free loopback port, a relay in front of it that loses the
bytes in flight when the gateway dies, and an M-Bus simulator; prints one JSON
line: kills, records committed and received, duplicates, integrity failures, and the seqs
missing, invented or differing (all three must be empty).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.mqtt_broker import running_broker  # noqa: E402
from tests.reliability.crash_loop import CrashLoop, DelayingProxy, HesSubscriber  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with running_broker(Path(tmp) / "broker") as broker, HesSubscriber(broker.port) as hes, \
                DelayingProxy(broker.port) as link:
            result = CrashLoop(Path(tmp), link.port, seed=args.seed).run(args.kills, hes)
            result.bytes_lost_in_flight = link.dropped_bytes
    figures = {"benchmark": "crash_loop", **result.as_dict(),
               "ok": not (result.missing or result.invented or result.differing or result.integrity_failures)}
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
