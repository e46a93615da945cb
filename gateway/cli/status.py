"""``gateway status``: the gateway's health from its local state.

The daemon writes ``STATE_DIR/status.json`` (the same JSON as the retained MQTT ``status``
topic) every few seconds; this command adds the store's own figures and whether the daemon
holds the store right now. JSON with ``--json`` or when stdout is not a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from gateway.cli import Verbs
from gateway.cli.local_state import add_state_arguments, local_state, open_store


def register(verbs: Verbs) -> None:
    parser = verbs.verb("status", show_status)
    parser.add_argument("--json", action="store_true", help="print JSON (the default when stdout is not a terminal)")
    add_state_arguments(parser)


def show_status(args: argparse.Namespace) -> int:
    status = asyncio.run(_collect(args))
    if args.json or not sys.stdout.isatty():
        from gateway.cli.output import print_json

        print_json(status)
    else:
        _print_tables(status)
    return 0


async def _collect(args: argparse.Namespace) -> dict[str, Any]:
    from gateway.store import writer_running

    state = local_state(args)
    status_file = state.store_path.parent / "status.json"
    daemon: dict[str, Any] = {}
    if status_file.exists():
        daemon = json.loads(status_file.read_text())
    running = writer_running(state.store_path)
    async with open_store(state) as store:
        store_stats = (await store.stats()).as_dict()
    return {
        **daemon,
        "state": "running" if running else "stopped",
        "status_written_at": daemon.get("time"),
        "store": store_stats,
    }


def _print_tables(status: dict[str, Any]) -> None:
    from gateway.cli.output import print_table

    store = status["store"]
    print_table(
        ("gateway", "state", "version", "uptime_s", "records", "last_seq", "backlog", "dropped", "disk_full"),
        [[status.get("gateway"), status["state"], status.get("version"), status.get("uptime_s"), store["records"],
          store["last_seq"], ", ".join(f"{k}={v}" for k, v in store["backlog"].items()), store["dropped_total"],
          store["disk_full"]]],
        title="Gateway",
    )
    rows = []
    for bus, bus_status in status.get("buses", {}).items():
        for meter, health in bus_status.get("meters", {}).items():
            rows.append([bus, meter, health.get("state"), health.get("device"), health.get("last_success"),
                         health.get("last_failure"), health.get("last_error")])
    if rows:
        print_table(("bus", "meter", "state", "device", "last success", "last failure", "last error"), rows, title="Meters")
    uplinks = status.get("uplinks", {})
    if uplinks:
        print_table(("uplink", "status"), [[name, json.dumps(value)] for name, value in uplinks.items()], title="Uplinks")
    if status["state"] == "stopped":
        print("The daemon is not running; figures are from its last status file and the store. "
              "Start it with: systemctl start gateway", file=sys.stderr)
