"""The ``devices.*`` commands: the same operations for the HES (MQTT 5 request/response)
and for ``gateway devices`` (the daemon's control socket). A request is a JSON object; keys
travel as 32 hex digits (``key``; DLMS ``ek``, ``ak``, ``kek``) and are never echoed.

=======================  ====================================================================
``devices.list``         ``{}`` → every registered device (name, state, device, point …)
``devices.show``         ``{"name", "history": bool}`` → the entry, its point's history and,
                         with ``history``, its audit trail
``devices.commission``   ``{"name", "point", "keys"?, "declaration"?, "meter"?, "device"?,
                         "wait_s"?}`` → the checks and the first reading
``devices.exchange``     ``{"name": OLD, "new": NEW, …as commission}`` → final and first
                         readings
``devices.decommission`` ``{"name", "reason"?}``
``devices.suspend``      ``{"name", "reason"?}`` / ``devices.resume`` ``{"name"}``
``devices.calibrate``    ``{"name", "action": "start"|"end", "certificate"?, "note"?}``
``devices.rekey``        ``{"name", "keys": {"key"} | {"ek", "ak"}, "overlap_s"?}``
``devices.scan``         ``{"bus", "secondary"?: bool}`` (wired M-Bus) → the devices found
=======================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.lifecycle.service import DeviceLifecycle
from gateway.uplinks.commands import CommandError, Handler, str_argument

#: Commands that change nothing (the HES may always send them).
READ_ONLY = frozenset({"devices.list", "devices.show"})


def device_commands(service: DeviceLifecycle, actor_of: Callable[[Mapping[str, Any]], str]) -> dict[str, Handler]:
    """The handlers; ``actor_of(args)`` says who asked (recorded in the audit trail)."""

    async def list_devices(_args: dict[str, Any]) -> Any:
        return await service.list()

    async def show(args: dict[str, Any]) -> Any:
        return await service.show(str_argument(args, "name"), history=bool(args.get("history")))

    async def commission(args: dict[str, Any]) -> Any:
        return await service.commission(str_argument(args, "name"), point=str_argument(args, "point"),
                                        actor=actor_of(args), **_install_arguments(args))

    async def exchange(args: dict[str, Any]) -> Any:
        return await service.exchange(str_argument(args, "name"), str_argument(args, "new"), actor=actor_of(args),
                                      point=_optional_str(args, "point"), **_install_arguments(args))

    async def decommission(args: dict[str, Any]) -> Any:
        return await service.decommission(str_argument(args, "name"), actor=actor_of(args),
                                          reason=_optional_str(args, "reason"))

    async def suspend(args: dict[str, Any]) -> Any:
        return await service.suspend(str_argument(args, "name"), actor=actor_of(args),
                                     reason=_optional_str(args, "reason"))

    async def resume(args: dict[str, Any]) -> Any:
        return await service.resume(str_argument(args, "name"), actor=actor_of(args))

    async def calibrate(args: dict[str, Any]) -> Any:
        return await service.calibrate(str_argument(args, "name"), str_argument(args, "action"),
                                       actor=actor_of(args), certificate=_optional_str(args, "certificate"),
                                       note=_optional_str(args, "note"))

    async def rekey(args: dict[str, Any]) -> Any:
        return await service.rekey(str_argument(args, "name"), actor=actor_of(args), keys=_keys(args, required=True),
                                   overlap_s=_optional_number(args, "overlap_s"))

    async def scan(args: dict[str, Any]) -> Any:
        return await service.scan(str_argument(args, "bus"), actor=actor_of(args),
                                  secondary=bool(args.get("secondary", True)))

    return {"devices.list": list_devices, "devices.show": show, "devices.commission": commission,
            "devices.exchange": exchange, "devices.decommission": decommission, "devices.suspend": suspend,
            "devices.resume": resume, "devices.calibrate": calibrate, "devices.rekey": rekey,
            "devices.scan": scan}


def _install_arguments(args: Mapping[str, Any]) -> dict[str, Any]:
    meter = args.get("meter")
    if meter is not None and not isinstance(meter, dict):
        raise CommandError("argument 'meter' must be an object (a [[meters]] table)")
    declaration = args.get("declaration")
    if declaration is not None and not isinstance(declaration, dict):
        raise CommandError("argument 'declaration' must be an object")
    return {"meter": meter, "keys": _keys(args), "declaration": declaration, "device": _optional_str(args, "device"),
            "wait_s": _optional_number(args, "wait_s")}


def _keys(args: Mapping[str, Any], *, required: bool = False) -> dict[str, str]:
    keys = args.get("keys") or {}
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise CommandError("argument 'keys' must be an object of 32-hex-digit strings (key; ek, ak, kek)")
    if required and not keys:
        raise CommandError("missing argument 'keys'")
    return keys


def _optional_str(args: Mapping[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is not None and not isinstance(value, str):
        raise CommandError(f"argument {name!r} must be a string")
    return value or None


def _optional_number(args: Mapping[str, Any], name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise CommandError(f"argument {name!r} must be a number of seconds")
    return float(value)
