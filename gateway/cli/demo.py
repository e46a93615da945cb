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
committed. --mqtt also signs and publishes them. The same --state-dir is reused across runs
(store, keys and cursors carry over), so a killed demo resumes where it was.
Then try:  gateway readings --state-dir DIR   |   gateway status --state-dir DIR
"""


def register(verbs: Verbs) -> None:
    from gateway.demo import default_state_dir

    parser = verbs.verb("demo", demo_command, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, metavar="S",
                        help="stop polling after S seconds, drain the uplink, print a summary and exit 0 "
                             "(default: run until Ctrl-C or SIGTERM)")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help=f"store, signing key and cursors (default {default_state_dir()})")
    parser.add_argument("--mqtt", metavar="URL", help="also publish to this MQTT broker, e.g. mqtt://127.0.0.1:1883")


def demo_command(args: argparse.Namespace) -> int:
    from gateway.demo import DemoOptions, run_demo

    options = DemoOptions(duration_s=args.duration, mqtt_url=args.mqtt)
    if args.state_dir is not None:
        options = DemoOptions(state_dir=args.state_dir, duration_s=args.duration, mqtt_url=args.mqtt)
    return asyncio.run(run_demo(options, sys.stdout, sys.stderr))
