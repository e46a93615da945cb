"""``gateway readings``: print stored readings from the local store, oldest first.

``--format json`` prints JSON Lines in the form the HES receives (``payload.record_json``);
``csv`` has a header line; ``table`` (the default on a terminal) is for people. The store is
opened read-only, so this works while the daemon runs.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys

from gateway.cli import Verbs
from gateway.cli.local_state import add_state_arguments, local_state, open_store

COLUMNS = ("seq", "device", "quantity", "obis", "value", "unit", "meter_time", "captured_at", "status", "point")


def register(verbs: Verbs) -> None:
    parser = verbs.verb("readings", show_readings)
    parser.add_argument("--since", metavar="SEQ", type=int, default=0, help="only readings with a sequence number above SEQ")
    parser.add_argument("--device", metavar="D", help="only this device's readings")
    parser.add_argument("--point", metavar="P", help="only the readings of metering point P (whichever devices "
                                                     "served it: continuous across an exchange)")
    parser.add_argument("--limit", metavar="N", type=int, help="at most N readings")
    parser.add_argument(
        "--format", choices=("json", "csv", "table"), help="JSON Lines, CSV or a table (default: table on a terminal, else json)"
    )
    add_state_arguments(parser)


def show_readings(args: argparse.Namespace) -> int:
    asyncio.run(_show(args, args.format or ("table" if sys.stdout.isatty() else "json")))
    return 0


async def _show(args: argparse.Namespace, form: str) -> None:
    from gateway.cli.output import print_json, print_table
    from gateway.payload import record_json

    async with open_store(local_state(args)) as store:
        rows = (record_json(stored) async for stored in store.query_readings(since_seq=args.since, device=args.device, limit=args.limit,
                                                                   point=args.point))
        if form == "json":
            async for row in rows:
                print_json(row)
        elif form == "csv":
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(COLUMNS)
            async for row in rows:
                writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
        else:
            print_table(COLUMNS, [[row[c] for c in COLUMNS] async for row in rows])
