"""Commands from the Head-End System: JSON requests in, one JSON response out.

A request is a JSON object (an empty payload counts as ``{}``); the response is
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "what is wrong"}``. A request
that cannot be understood or carried out is answered with an error, never dropped and never
allowed to stop the uplink. Transport (topics, MQTT 5 response topic and correlation data)
is the uplink's business; this module only turns a request into a response.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.errors import GatewayError, UplinkError
from gateway.model import value_text

log = logging.getLogger(__name__)

#: A command's implementation: the request's arguments in, a JSON-able result out.
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class CommandError(UplinkError):
    """A request that cannot be carried out; the message goes back to the requester."""


def json_default(value: Any) -> Any:
    """JSON for the values a status or a result may hold: as reading values travel
    (exact decimals, ISO 8601, hex), collections as lists, anything else as text."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    try:
        return value_text(value)
    except TypeError:
        return str(value)


def dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=json_default).encode()


def parse_request(payload: bytes) -> dict[str, Any]:
    """The request's arguments; :class:`CommandError` when it is not a JSON object."""
    if not payload.strip():
        return {}
    try:
        request = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandError(f"malformed JSON request: {exc}") from None
    if not isinstance(request, dict):
        raise CommandError(f"the request must be a JSON object, not {type(request).__name__}")
    return request


def int_argument(args: Mapping[str, Any], name: str, *, default: int | None = None, minimum: int = 0) -> int:
    value = args.get(name, default)
    if value is None:
        raise CommandError(f"missing argument {name!r}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommandError(f"argument {name!r} must be an integer")
    if value < minimum:
        raise CommandError(f"argument {name!r} must be at least {minimum}")
    return value


def str_argument(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise CommandError(f"missing argument {name!r} (a non-empty string)")
    return value


class CommandRouter:
    """Dispatches a named command to its handler and always produces a response.

    Handlers raise :class:`CommandError` (or any :class:`GatewayError`) to answer with an
    error; anything else is a defect, logged with its traceback and answered as an internal
    error. Every handler runs under ``timeout_s``.
    """

    def __init__(self, handlers: Mapping[str, Handler], *, timeout_s: float) -> None:
        self.handlers = dict(handlers)
        self.timeout_s = timeout_s

    async def answer(self, command: str, payload: bytes, *, identity: str | None = None) -> tuple[bool, bytes]:
        """``(ok, response JSON)`` for one request. ``identity`` is who asked as the
        transport vouches for it (the MQTT topic level the broker's ACL guards): handlers
        find it as ``args["identity"]``, never taken from the request itself."""
        try:
            handler = self.handlers.get(command)
            if handler is None:
                known = ", ".join(sorted(self.handlers))
                raise CommandError(f"unknown command {command!r} (known: {known})")
            args = parse_request(payload)
            args.pop("identity", None)
            if identity is not None:
                args["identity"] = identity
            async with asyncio.timeout(self.timeout_s):
                result = await handler(args)
            return True, dumps({"ok": True, "result": result})
        except TimeoutError:
            return False, dumps({"ok": False, "error": f"{command} did not finish within {self.timeout_s:g} s"})
        except GatewayError as exc:
            return False, dumps({"ok": False, "error": str(exc)})
        except Exception as exc:
            log.exception("command %s failed", command)
            return False, dumps({"ok": False, "error": f"internal error in {command}: {type(exc).__name__}"})
