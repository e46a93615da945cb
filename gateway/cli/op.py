"""``gateway op submit|list|show|cancel``: operations on meters from the local command line.

``submit`` and ``cancel`` go to the running daemon through its control socket (which
queues the operation and starts it at once); when no daemon runs, they write the store's
operations queue themselves (holding the store's writer lock for the moment) and the daemon
carries the operation out when it starts. ``list`` and ``show`` read the store (read-only,
beside a running daemon). The command line acts as identity ``local``.

Examples::

    gateway op submit m1 disconnect --config /etc/gateway/gateway.toml --wait
    gateway op submit m1 get '{"class": 70, "obis": "0.0.96.3.10.255", "attribute": 3}' --state-dir DIR
    gateway op submit m1 firmware '{"identifier": "FW-2.0"}' --image-file fw.bin --config FILE
    gateway op list --meter m1 --state queued --config FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.cli import CommandFailed, UsageError, Verbs
from gateway.cli.local_state import LocalState, add_state_arguments, local_state, open_store
from gateway.cli.output import print_json, print_table

#: How often ``--wait`` looks at the store.
WAIT_POLL_S = 0.5


def register(verbs: Verbs) -> None:
    op = verbs.verb("op", description="Operations on DLMS meters (GET, SET, ACTION and the named ones: "
                                      "disconnect, reconnect, limiter, calendar, clock-set, message, firmware ...), "
                                      "queued while a meter is unreachable.")
    sub = op.add_subparsers(title="actions", metavar="ACTION")
    submit = sub.add_parser("submit", help="queue an operation on a meter")
    submit.add_argument("meter", help="meter name or device id")
    submit.add_argument("operation", help="get, set, action, disconnect, reconnect, disconnect-state, limiter, "
                                          "calendar, clock-set, message, firmware")
    submit.add_argument("args", nargs="?", default="{}", help="its arguments as a JSON object")
    when = submit.add_mutually_exclusive_group()
    when.add_argument("--deadline-s", type=int, metavar="N", help="give up when not carried out within N seconds")
    when.add_argument("--deadline", metavar="ISO", help="give up at this time (with its UTC offset)")
    submit.add_argument("--image-file", type=Path, metavar="FILE", help="firmware: the image (copied to the "
                                                                          "gateway's images)")
    submit.add_argument("--wait", action="store_true", help="wait for the outcome (exit 1 unless success)")
    submit.add_argument("--timeout-s", type=float, default=300, help="how long --wait waits (300)")
    submit.add_argument("--json", action="store_true")
    submit.set_defaults(handler=op_submit)
    listing = sub.add_parser("list", help="operations, newest first")
    listing.add_argument("--meter")
    listing.add_argument("--state", choices=("queued", "started", "done"))
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=op_list)
    show = sub.add_parser("show", help="one operation: requests, results, progress")
    show.add_argument("id", type=int)
    show.set_defaults(handler=op_show)
    cancel = sub.add_parser("cancel", help="cancel a queued operation")
    cancel.add_argument("id", type=int)
    cancel.add_argument("--json", action="store_true")
    cancel.set_defaults(handler=op_cancel)
    for parser in (submit, listing, show, cancel):
        add_state_arguments(parser)


# -- submit and cancel: the daemon, or the store itself ----------------------------------------


def op_submit(args: argparse.Namespace) -> int:
    from gateway.audit import local_actor

    state = local_state(args)
    try:
        arguments = json.loads(args.args)
    except ValueError as exc:
        raise UsageError(f"the arguments are not JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise UsageError("the arguments are a JSON object, e.g. '{\"text\": \"hello\"}'")
    if args.image_file is not None:
        arguments["image"] = _add_image(state, args.image_file)
    request: dict[str, Any] = {"meter": args.meter, "operation": args.operation, "args": arguments,
                               "actor": local_actor()}
    if args.deadline_s is not None:
        request["deadline_s"] = args.deadline_s
    if args.deadline is not None:
        request["deadline"] = args.deadline
    from gateway.operations.model import OperationError  # here: the CLI starts without the DLMS stack

    try:
        operation = _through_daemon(state, "op.submit", request) or asyncio.run(_submit_offline(state, request))
    except OperationError as exc:  # bad arguments, an unknown meter or operation
        raise UsageError(str(exc)) from None
    if args.wait:
        operation = asyncio.run(_wait(state, operation["id"], args.timeout_s))
    _print(operation, args.json)
    if args.wait and operation["outcome"] != "success":
        raise CommandFailed(f"operation {operation['id']}: {operation['state']} {operation['outcome'] or ''} "
                            f"{operation['error'] or ''}".strip())
    return 0


def op_cancel(args: argparse.Namespace) -> int:
    from gateway.operations.model import OperationError

    state = local_state(args)
    try:
        operation = _through_daemon(state, "op.cancel", {"id": args.id}) or \
            asyncio.run(_cancel_offline(state, args.id))
    except OperationError as exc:  # not queued (any more), not there
        raise CommandFailed(str(exc)) from None
    _print(operation, args.json)
    return 0


def _through_daemon(state: LocalState, command: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """The daemon's result, or None when no daemon runs."""
    from gateway.control import DaemonNotRunning
    from gateway.control import request as ask
    from gateway.operations.model import OperationError

    try:
        answer = asyncio.run(ask(_state_dir(state), command, request))
    except DaemonNotRunning:
        return None
    if not answer.get("ok"):
        raise OperationError(str(answer.get("error")))
    return answer["result"]


async def _submit_offline(state: LocalState, request: dict[str, Any]) -> dict[str, Any]:
    from gateway.config import DlmsMeter
    from gateway.operations.commands import submit_locally

    known = None if state.config is None else [m.name for m in state.config.meters if isinstance(m, DlmsMeter)]
    async with _writable_store(state) as store:
        operation = await submit_locally(store, _settings(state), _state_dir(state), request, known)
    return operation.to_json()


async def _cancel_offline(state: LocalState, id_: int) -> dict[str, Any]:
    from gateway.operations.commands import cancel_locally

    async with _writable_store(state) as store:
        return (await cancel_locally(store, id_)).to_json()


def _writable_store(state: LocalState) -> Any:
    from gateway.store import Store

    if not state.store_path.exists():
        raise UsageError(f"no store at {state.store_path}: start the gateway once with this state first")
    return Store(state.store_path, state.store)


def _add_image(state: LocalState, path: Path) -> str:
    from gateway.operations.images import ImageStore

    return ImageStore(_state_dir(state) / "images", _settings(state).max_image_bytes).add_file(path)


# -- list and show: the store, read-only ------------------------------------------------------


def op_list(args: argparse.Namespace) -> int:
    from gateway.operations.model import State

    operations = asyncio.run(_read(local_state(args), lambda queue: queue.list(
        meter=args.meter, state=None if args.state is None else State(args.state), limit=args.limit)))
    documents = [o.to_json() for o in operations]
    if args.json:
        print_json(documents)
        return 0
    print_table(("id", "meter", "operation", "identity", "state", "outcome", "submitted", "deadline"),
                [(d["id"], d["meter"], d["operation"], d["identity"], d["state"], d["outcome"], d["submitted_at"],
                  d["deadline"]) for d in documents])
    return 0


def op_show(args: argparse.Namespace) -> int:
    operation = asyncio.run(_read(local_state(args), lambda queue: queue.get(args.id)))
    if operation is None:
        raise CommandFailed(f"no operation {args.id}")
    print_json(operation.to_json())
    return 0


async def _read(state: LocalState, query: Any) -> Any:
    from gateway.operations.queue import OperationQueue
    from gateway.operations.relay import result_event

    async with open_store(state) as store:
        return await query(OperationQueue(lambda: store, result_event, lambda: None))


async def _wait(state: LocalState, id_: int, timeout_s: float) -> dict[str, Any]:
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                operation = await _read(state, lambda queue: queue.get(id_))
                if operation is not None and operation.state.value == "done":
                    return operation.to_json()
                await asyncio.sleep(WAIT_POLL_S)
    except TimeoutError:
        raise CommandFailed(f"operation {id_} did not end within {timeout_s:g} s (it goes on: gateway op show "
                            f"{id_})") from None


# -- helpers ----------------------------------------------------------------------------------


def _print(operation: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(operation)
        return
    print_table(("id", "meter", "operation", "state", "outcome", "error"),
                [(operation["id"], operation["meter"], operation["operation"], operation["state"],
                  operation["outcome"], operation["error"])])


def _settings(state: LocalState) -> Any:
    from gateway.config import OperationsSection

    return state.config.operations if state.config is not None else OperationsSection()


def _state_dir(state: LocalState) -> Path:
    assert state.state_dir is not None
    return state.state_dir
