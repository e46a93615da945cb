"""``gateway demo``: run the whole pipeline against simulated meters."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.cli import Verbs

EPILOG = """\
With nothing else installed the demo polls three simulated M-Bus heat meters on a
pseudo-terminal, stores every reading in STATE_DIR/store.sqlite and prints them as they are
committed, and serves them over DLMS/COSEM on 127.0.0.1:4059 (the Green Book test keys).
--mqtt also signs and publishes them. The same --state-dir is reused across runs
(store, keys and cursors carry over), so a killed demo resumes where it was.
Then try:  gateway readings --state-dir DIR   |   gateway status --state-dir DIR
"""


def register(verbs: Verbs) -> None:
    from gateway.cli.local_state import default_demo_state_dir as default_state_dir

    parser = verbs.verb("demo", demo_command, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, metavar="S",
                        help="stop polling after S seconds, drain the uplink, print a summary and exit 0 "
                             "(default: run until Ctrl-C or SIGTERM)")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help=f"store, signing key and cursors (default {default_state_dir()})")
    parser.add_argument("--mqtt", metavar="URL", help="also publish to this MQTT broker, e.g. mqtt://127.0.0.1:1883")
    parser.add_argument("--dlms-port", type=int, default=4059, metavar="N",
                        help="serve DLMS/COSEM to an HES on 127.0.0.1:N (default 4059; 0 picks a free port)")


def demo_command(args: argparse.Namespace) -> int:
    from gateway.demo import DemoOptions, run_demo

    settings = {"duration_s": args.duration, "mqtt_url": args.mqtt, "dlms_port": args.dlms_port}
    if args.state_dir is not None:
        settings["state_dir"] = args.state_dir
    options = DemoOptions(**settings)
    return asyncio.run(run_demo(options, sys.stdout, sys.stderr))
