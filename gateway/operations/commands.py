"""How operations are asked for: MQTT commands of the HES and the local control socket.

MQTT (topics under ``PREFIX/GATEWAY/``; MQTT 5 request/response as every command)::

    cmd/op/IDENTITY         {"meter": M, "operation": NAME, "args": {...}, "deadline": ISO | "deadline_s": N}
                            → {"id", "state": "queued", "meter", "operation", "deadline"}
    cmd/op-status[/ID]      {"id": N}                      → the operation (gateway op show)
                            {"meter": M, "state": S, "limit": N} → {"operations": [...]} newest first
    cmd/op-cancel/IDENTITY  {"id": N}                      → the cancelled operation
    cmd/op-image/IDENTITY   {"sha256", "size", "offset", "data": base64} → {"sha256", "size", "received", "complete"}

IDENTITY is the HES's name in ``[[operations.permissions]]``. The gateway takes it from the
topic, so the broker's ACL must let each HES client publish only under its own identity
(Mosquitto: ``pattern write metering/+/cmd/+/%u`` with the identity as the MQTT username);
a request that names no identity is refused (``security.refused``), as is one the
permissions do not allow (the answer says refused, with the operation's id, and an
``operation.result`` with outcome ``refused`` follows).

The control socket (``gateway op`` while the daemon runs) has ``op.submit`` and
``op.cancel`` with the same arguments; it acts as identity ``local`` (see
:mod:`~gateway.operations.permissions`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.config import OperationsSection
from gateway.errors import GatewayError
from gateway.events import make_event
from gateway.model import utc_now
from gateway.operations.images import ImageStore
from gateway.operations.model import Operation, OperationError, Outcome, State
from gateway.operations.permissions import LOCAL
from gateway.operations.queue import OperationQueue
from gateway.operations.relay import DEVICE_STATE, OperationRelay, make_request, result_event
from gateway.store import Store
from gateway.uplinks.commands import int_argument

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
STATUS_LIMIT = 100


class CommandRefused(GatewayError):
    """A command refused for who asked (no identity, not permitted)."""


def mqtt_commands(relay: OperationRelay, uplink: str) -> dict[str, Handler]:
    """The MQTT commands of one uplink; their handlers get ``identity`` from the topic."""
    source = f"mqtt:{uplink}"

    async def identity_of(args: dict[str, Any], command: str) -> str:
        identity = args.get("identity")
        if isinstance(identity, str) and identity:
            return identity
        await relay.store().append([make_event(
            "security.refused", f"{command} without an identity refused (publish to cmd/{command}/IDENTITY)",
            source=source, details={"command": command, "reason": "no identity"})])
        raise CommandRefused(f"{command} needs the identity in the topic: cmd/{command}/IDENTITY")

    async def op(args: dict[str, Any]) -> dict[str, Any]:
        identity = await identity_of(args, "op")
        operation = await _submit(relay, args, identity, source)
        if operation.outcome is Outcome.REFUSED:
            raise CommandRefused(f"operation {operation.id} refused: {operation.error}")
        return _summary(operation)

    async def op_cancel(args: dict[str, Any]) -> dict[str, Any]:
        identity = await identity_of(args, "op-cancel")
        return (await relay.cancel(_id(args), identity)).to_json()

    async def op_image(args: dict[str, Any]) -> dict[str, Any]:
        identity = await identity_of(args, "op-image")
        if not relay.may_upload(identity):
            raise CommandRefused(f"{identity} may not upload firmware images (no firmware permission)")
        upload = await asyncio.to_thread(relay.images.receive, args.get("sha256"), int_argument(args, "size"),
                                         int_argument(args, "offset"), args.get("data"))
        return upload.to_json()

    return {"op": op, "op-status": lambda args: status(relay, args), "op-cancel": op_cancel, "op-image": op_image}


def control_commands(relay: OperationRelay) -> dict[str, Handler]:
    """The control socket's commands (the local command line, identity ``local``)."""

    async def submit(args: dict[str, Any]) -> dict[str, Any]:
        return (await _submit(relay, args, LOCAL, f"cli:{args.get('actor') or 'local'}")).to_json()

    async def cancel(args: dict[str, Any]) -> dict[str, Any]:
        return (await relay.cancel(_id(args), LOCAL)).to_json()

    return {"op.submit": submit, "op.cancel": cancel}


async def status(relay: OperationRelay, args: dict[str, Any]) -> dict[str, Any]:
    """``op-status``: one operation by id, or the latest ones (of a meter, in a state)."""
    if "id" in args:
        operation = await relay.queue.get(_id(args))
        if operation is None:
            raise OperationError(f"no operation {args['id']}")
        return operation.to_json()
    state = args.get("state")
    try:
        chosen = None if state is None else State(state)
    except ValueError:
        raise OperationError(f"state is one of {', '.join(s.value for s in State)}") from None
    limit = min(STATUS_LIMIT, int_argument(args, "limit", default=20))
    meter = args.get("meter")
    operations = await relay.queue.list(meter=meter if isinstance(meter, str) else None, state=chosen, limit=limit)
    return {"operations": [o.to_json() for o in operations]}


async def _submit(relay: OperationRelay, args: dict[str, Any], identity: str, source: str) -> Operation:
    meter, name, arguments = _parts(args)
    return await relay.submit(meter, name, arguments, identity=identity, source=source,
                              deadline=_deadline(args, relay.clock()))


def _parts(args: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    meter, name = args.get("meter"), args.get("operation")
    if not isinstance(meter, str) or not isinstance(name, str):
        raise OperationError("an operation needs \"meter\" and \"operation\" (e.g. \"disconnect\")")
    arguments = args.get("args") or {}
    if not isinstance(arguments, dict):
        raise OperationError("\"args\" is an object")
    return meter, name, arguments


def _deadline(args: dict[str, Any], now: datetime) -> datetime | None:
    if "deadline_s" in args:
        return now + timedelta(seconds=int_argument(args, "deadline_s", minimum=1))
    text = args.get("deadline")
    if text is None:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        raise OperationError(f"deadline is an ISO 8601 date-time with its offset, not {text!r}") from None


def _summary(operation: Operation) -> dict[str, Any]:
    return {"id": operation.id, "state": operation.state.value, "meter": operation.meter,
            "operation": operation.name, "deadline": operation.request.deadline.isoformat()}


def _id(args: dict[str, Any]) -> int:
    return int_argument(args, "id", minimum=1)


# --- without a daemon: the command line writes the queue itself ----------------------------


async def submit_locally(store: Store, settings: OperationsSection, state_dir: Path, args: dict[str, Any],
                         known_meters: Sequence[str] | None) -> Operation:
    """Queue an operation in ``store`` (opened for writing: no daemon runs) as the control
    socket's ``op.submit`` would; the daemon carries it out when it starts. ``known_meters``:
    the configured DLMS meters (None: not known here, the daemon checks)."""
    now = utc_now()
    meter, name, arguments = _parts(args)
    known = await store.state_items(DEVICE_STATE)
    devices = {device: key.removeprefix(DEVICE_STATE) for key, device in known.items()}
    meter = devices.get(meter, meter)
    if known_meters is not None and meter not in known_meters:
        raise OperationError(f"no DLMS meter is named {meter!r} (DLMS meters: {', '.join(known_meters) or 'none'})")
    request = make_request(meter, name, arguments, identity=LOCAL, source=f"cli:{args.get('actor') or 'local'}",
                           deadline=_deadline(args, now), settings=settings, now=now,
                           images=ImageStore(Path(state_dir) / "images", settings.max_image_bytes))
    return await OperationQueue(lambda: store, result_event, utc_now).submit(request)


async def cancel_locally(store: Store, id_: int) -> Operation:
    queue = OperationQueue(lambda: store, result_event, utc_now)
    operation = await queue.get(id_)
    if operation is None:
        raise OperationError(f"no operation {id_}")
    ended = await queue.finish(operation, Outcome.CANCELLED, error="cancelled by local", only_if=State.QUEUED)
    if ended is None:
        raise OperationError(f"operation {id_} is {operation.state.value}, not queued: it cannot be cancelled")
    return ended
