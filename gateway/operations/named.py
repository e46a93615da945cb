"""Named operations: each a thin builder of the generic requests (steps) it stands for.

==================  ===================================================================================
``get``             ``class``, ``obis``, ``attribute``: GET one attribute
``set``             ``class``, ``obis``, ``attribute``, ``data`` (JSON Data): SET one attribute
``action``          ``class``, ``obis``, ``method``, ``data`` (optional): ACTION one method
``disconnect``      Disconnect control (class 70, ``0.0.96.3.10.255``): remote_disconnect (method 1),
``reconnect``       remote_reconnect (method 2); then output_state (2) and control_state (3) read back
``disconnect-state``  output_state, control_state, control_mode (attributes 2, 3, 4)
``limiter``         Limiter (class 71, ``0.0.17.0.0.255``): ``threshold_active`` (attribute 3),
                    ``threshold_normal`` (4), ``threshold_emergency`` (5) (a number is a
                    double-long-unsigned; give JSON Data for the monitored value's own type),
                    ``min_over_threshold_duration_s`` (6), ``min_under_threshold_duration_s`` (7);
                    each written, then read back
``calendar``        Activity calendar (class 20, ``0.0.13.0.0.255``), the passive calendar: ``name`` (6),
                    ``seasons`` (7), ``weeks`` (8), ``days`` (9), then ``activate_at``: an ISO date-time
                    (activate_passive_calendar_time, 10) or ``"now"`` (activate_passive_calendar,
                    method 1); without it the passive calendar waits
``clock-set``       Clock (class 8, ``0.0.1.0.0.255``): ``time`` (ISO date-time, or ``"now"``: the
                    gateway's clock when the request is sent, in the configured time zone) SET to
                    attribute 2; or ``adjust`` (``quarter``, ``measuring-period``, ``minute``: methods
                    1, 2, 3); or ``shift_s`` (shift_time, method 6, -900..900); then the time read back
``message``         Data (class 1, ``0.0.96.13.0.255``, consumer message text): ``text`` as an
                    octet-string (UTF-8), then read back
``firmware``        Image transfer (class 18, ``0.0.44.0.0.255``): ``image`` (the SHA-256 of an image
                    the gateway holds), ``identifier`` (text), ``activate`` (default true); see
                    :mod:`~gateway.operations.image_transfer`
==================  ===================================================================================

The calendar's tables, in JSON (Blue Book 4.5.5)::

    "seasons": [{"name": "summer", "start": "04-01", "week": "wk1"}]   start: MM-DD (every year) or an
                                                                         ISO date-time
    "weeks":   [{"name": "wk1", "days": [1, 1, 1, 1, 1, 2, 2]}]         day ids, Monday to Sunday
    "days":    [{"id": 1, "actions": [{"start": "06:00", "script": "0.0.10.0.100.255", "selector": 1}]}]

``obis`` overrides the default logical name of every named operation's object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, time, tzinfo
from typing import Any

from gateway.codecs.dlms.axdr import Data, DataType, array, octet_string, structure
from gateway.codecs.dlms.dates import CosemDateTime, CosemTime
from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.obis import Obis
from gateway.operations.data_json import DataJsonError, data_from_json
from gateway.operations.model import Kind, OperationError, Step

DISCONNECT_CONTROL = Obis(0, 0, 96, 3, 10)
LIMITER = Obis(0, 0, 17, 0, 0)
ACTIVITY_CALENDAR = Obis(0, 0, 13, 0, 0)
CLOCK = Obis(0, 0, 1, 0, 0)
MESSAGE_TEXT = Obis(0, 0, 96, 13, 0)
IMAGE_TRANSFER = Obis(0, 0, 44, 0, 0)
DATA, CLOCK_CLASS, IMAGE_TRANSFER_CLASS, CALENDAR_CLASS, DISCONNECT_CLASS, LIMITER_CLASS = 1, 8, 18, 20, 70, 71
#: Methods without parameters take ``data ::= integer (0)`` (Blue Book, every such method).
NO_PARAMETERS = Data(DataType.INTEGER, 0)

#: Limiter settings → attribute (Blue Book 4.5.9, class 71).
LIMITER_ATTRIBUTES = {"threshold_active": 3, "threshold_normal": 4, "threshold_emergency": 5,
                      "min_over_threshold_duration_s": 6, "min_under_threshold_duration_s": 7}
#: Clock adjustments → method (Blue Book 4.5.1, class 8).
CLOCK_ADJUST = {"quarter": 1, "measuring-period": 2, "minute": 3}
SHIFT_TIME = 6
MAX_SHIFT_S = 900
#: Calendar attributes (Blue Book 4.5.5, class 20): the passive calendar and its activation.
CALENDAR_PASSIVE = {"name": 6, "seasons": 7, "weeks": 8, "days": 9}
ACTIVATE_PASSIVE_TIME, ACTIVATE_PASSIVE = 10, 1
WEEKDAYS = 7

Args = Mapping[str, Any]
Builder = Callable[[Args], tuple[tuple[Step, ...], dict[str, Any]]]


def build(name: str, args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
    """The steps (and parameters) of named operation ``name`` from its arguments."""
    builder = NAMED.get(name)
    if builder is None:
        raise OperationError(f"unknown operation {name!r} (known: {', '.join(NAMED)})")
    try:
        return builder(args)
    except DataJsonError as exc:
        raise OperationError(f"{name}: data {exc}") from None
    except (ValueError, TypeError, DLMSError) as exc:
        raise OperationError(f"{name}: {exc}") from None


def late_steps(name: str, steps: tuple[Step, ...], params: Mapping[str, Any], now: datetime,
               tz: tzinfo) -> tuple[Step, ...]:
    """The steps as sent: a clock set to ``"now"`` gets the time when it goes out."""
    if name != "clock-set" or params.get("time") != "now":
        return steps
    moment = octet_string(CosemDateTime.from_datetime(now.astimezone(tz)).to_bytes())
    return tuple(Step(s.kind, s.class_id, s.obis, s.index, moment) if s.kind is Kind.SET else s for s in steps)


# --- generic -----------------------------------------------------------------------------


def _generic(kind: Kind) -> Builder:
    index_name = "method" if kind is Kind.ACTION else "attribute"

    def builder(args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
        data = args.get("data")
        if kind is Kind.SET and data is None:
            raise ValueError("missing argument 'data' (the value to write, as JSON Data)")
        parsed = None if data is None or kind is Kind.GET else data_from_json(data, "data")
        return (Step(kind, _int(args, "class", 0, 0xFFFF), _obis(args), _int(args, index_name, 1, 127), parsed),), {}

    return builder


# --- disconnect control ------------------------------------------------------------------


def _disconnect(method: int) -> Builder:
    def builder(args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
        obis = _obis(args, DISCONNECT_CONTROL)
        return (Step(Kind.ACTION, DISCONNECT_CLASS, obis, method, NO_PARAMETERS),
                *_reads(DISCONNECT_CLASS, obis, (2, 3), readback=True)), {}

    return builder


def _disconnect_state(args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
    return _reads(DISCONNECT_CLASS, _obis(args, DISCONNECT_CONTROL), (2, 3, 4)), {}


# --- limiter -----------------------------------------------------------------------------


def _limiter(args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
    obis = _obis(args, LIMITER)
    writes = []
    for name, attribute in LIMITER_ATTRIBUTES.items():
        if name not in args:
            continue
        value = args[name]
        if isinstance(value, dict):  # a threshold in the monitored value's own type
            data = data_from_json(value, name)
        else:
            data = Data(DataType.DOUBLE_LONG_UNSIGNED, _int(args, name, 0, 0xFFFFFFFF))
        writes.append(Step(Kind.SET, LIMITER_CLASS, obis, attribute, data))
    if not writes:
        raise ValueError(f"give at least one of {', '.join(LIMITER_ATTRIBUTES)}")
    return (*writes, *_reads(LIMITER_CLASS, obis, [s.index for s in writes], readback=True)), {}


# --- activity calendar -------------------------------------------------------------------


def _calendar(args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
    obis = _obis(args, ACTIVITY_CALENDAR)
    values = {"name": octet_string(_text(args, "name").encode()), "seasons": _seasons(_list(args, "seasons")),
              "weeks": _weeks(_list(args, "weeks")), "days": _days(_list(args, "days"))}
    steps = [Step(Kind.SET, CALENDAR_CLASS, obis, CALENDAR_PASSIVE[name], data) for name, data in values.items()]
    activate = args.get("activate_at")
    if activate == "now":
        steps.append(Step(Kind.ACTION, CALENDAR_CLASS, obis, ACTIVATE_PASSIVE, NO_PARAMETERS))
    elif activate is not None:
        at = _moment(activate, "activate_at")
        steps.append(Step(Kind.SET, CALENDAR_CLASS, obis, ACTIVATE_PASSIVE_TIME, octet_string(at.to_bytes())))
    return tuple(steps), {}


def _seasons(items: list[Any]) -> Data:
    return array(*(structure(octet_string(_text(s, "name").encode()), octet_string(_season_start(s).to_bytes()),
                             octet_string(_text(s, "week").encode())) for s in map(_object, items)))


def _season_start(season: Args) -> CosemDateTime:
    text = _text(season, "start")
    if len(text) == 5 and text[2] == "-":  # MM-DD, every year (year, weekday, deviation not specified)
        month, day = int(text[:2]), int(text[3:])
        return CosemDateTime(None, month, day, None, 0, 0, 0, 0, None, None)
    return _moment(text, "start")


def _weeks(items: list[Any]) -> Data:
    out = []
    for week in map(_object, items):
        days = week.get("days")
        if not isinstance(days, list) or len(days) != WEEKDAYS:
            raise ValueError("a week has 'days': seven day ids, Monday to Sunday")
        out.append(structure(octet_string(_text(week, "name").encode()),
                             *(Data(DataType.UNSIGNED, _int({"day": d}, "day", 0, 255)) for d in days)))
    return array(*out)


def _days(items: list[Any]) -> Data:
    out = []
    for day in map(_object, items):
        actions = [structure(octet_string(CosemTime.from_time(time.fromisoformat(_text(a, "start"))).to_bytes()),
                             octet_string(Obis.parse(_text(a, "script")).to_bytes()),
                             Data(DataType.LONG_UNSIGNED, _int(a, "selector", 0, 0xFFFF)))
                   for a in map(_object, _list(day, "actions"))]
        out.append(structure(Data(DataType.UNSIGNED, _int(day, "id", 0, 255)), array(*actions)))
    return array(*out)


# --- clock, message, firmware ------------------------------------------------------------


def _clock_set(args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
    obis = _obis(args, CLOCK)
    readback = _reads(CLOCK_CLASS, obis, (2,), readback=True)
    chosen = [name for name in ("time", "adjust", "shift_s") if name in args]
    if len(chosen) != 1:
        raise ValueError("give one of time (ISO date-time or \"now\"), adjust (quarter, measuring-period, minute) "
                         "or shift_s")
    if "adjust" in args:
        method = CLOCK_ADJUST.get(args["adjust"])
        if method is None:
            raise ValueError(f"adjust is one of {', '.join(CLOCK_ADJUST)}")
        return (Step(Kind.ACTION, CLOCK_CLASS, obis, method, NO_PARAMETERS), *readback), {}
    if "shift_s" in args:
        shift = Data(DataType.LONG, _int(args, "shift_s", -MAX_SHIFT_S, MAX_SHIFT_S))
        return (Step(Kind.ACTION, CLOCK_CLASS, obis, SHIFT_TIME, shift), *readback), {}
    if args["time"] == "now":  # filled in when sent (late_steps)
        return (Step(Kind.SET, CLOCK_CLASS, obis, 2, octet_string(b"\xff" * 12)), *readback), {"time": "now"}
    moment = _moment(args["time"], "time")
    return (Step(Kind.SET, CLOCK_CLASS, obis, 2, octet_string(moment.to_bytes())), *readback), {}


def _message(args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
    obis = _obis(args, MESSAGE_TEXT)
    text = args.get("text")
    if not isinstance(text, str):
        raise ValueError("missing argument 'text'")
    return (Step(Kind.SET, DATA, obis, 2, octet_string(text.encode())), *_reads(DATA, obis, (2,), readback=True)), {}


def _firmware(args: Args) -> tuple[tuple[Step, ...], dict[str, Any]]:
    image = _text(args, "image").lower()
    if len(image) != 64 or any(c not in "0123456789abcdef" for c in image):
        raise ValueError("image is the SHA-256 (64 hex digits) of an image the gateway holds")
    activate = args.get("activate", True)
    if not isinstance(activate, bool):
        raise ValueError("activate is true or false")
    return (), {"image": image, "identifier": _text(args, "identifier"), "activate": activate,
                "obis": _obis(args, IMAGE_TRANSFER).dotted}


NAMED: dict[str, Builder] = {
    "get": _generic(Kind.GET),
    "set": _generic(Kind.SET),
    "action": _generic(Kind.ACTION),
    "disconnect": _disconnect(1),
    "reconnect": _disconnect(2),
    "disconnect-state": _disconnect_state,
    "limiter": _limiter,
    "calendar": _calendar,
    "clock-set": _clock_set,
    "message": _message,
    "firmware": _firmware,
}

#: Requests of the generic services, classified by the object they touch: what a DLMS
#: client's SET or ACTION through the gateway's server counts as for permissions.
CLASSIFIED: dict[tuple[Kind, int], str] = {
    (Kind.SET, LIMITER_CLASS): "limiter",
    (Kind.SET, CALENDAR_CLASS): "calendar",
    (Kind.ACTION, CALENDAR_CLASS): "calendar",
    (Kind.SET, CLOCK_CLASS): "clock-set",
    (Kind.ACTION, CLOCK_CLASS): "clock-set",
    (Kind.ACTION, IMAGE_TRANSFER_CLASS): "firmware",
    (Kind.SET, IMAGE_TRANSFER_CLASS): "firmware",
}


def classify(step: Step) -> str:
    """The named operation a single request amounts to (``disconnect`` for remote_disconnect
    ...), else its service (``get``, ``set``, ``action``)."""
    if step.class_id == DISCONNECT_CLASS and step.kind is Kind.ACTION:
        return {1: "disconnect", 2: "reconnect"}.get(step.index, "action")
    return CLASSIFIED.get((step.kind, step.class_id), step.kind.value)


# --- arguments ---------------------------------------------------------------------------


def _reads(class_id: int, obis: Obis, attributes, *, readback: bool = False) -> tuple[Step, ...]:
    return tuple(Step(Kind.GET, class_id, obis, a, readback=readback) for a in attributes)


def _obis(args: Args, default: Obis | None = None) -> Obis:
    text = args.get("obis")
    if text is None:
        if default is None:
            raise ValueError("missing argument 'obis' (e.g. \"0.0.96.3.10.255\")")
        return default
    if not isinstance(text, str):
        raise ValueError("obis is a string (\"0.0.96.3.10.255\" or \"0-0:96.3.10*255\")")
    return Obis.parse(text)


def _int(args: Args, name: str, low: int, high: int) -> int:
    value = args.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low}..{high}, got {value}")
    return value


def _text(args: Any, name: str) -> str:
    value = _object(args).get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"missing argument {name!r} (a non-empty string)")
    return value


def _list(args: Args, name: str) -> list[Any]:
    value = args.get(name)
    if not isinstance(value, list):
        raise ValueError(f"missing argument {name!r} (a list)")
    return value


def _object(value: Any) -> Args:
    if not isinstance(value, Mapping):
        raise ValueError("each item is an object")
    return value


def _moment(value: Any, name: str) -> CosemDateTime:
    if not isinstance(value, str):
        raise ValueError(f"{name} is an ISO 8601 date-time")
    moment = datetime.fromisoformat(value)
    return CosemDateTime.from_datetime(moment, None if moment.tzinfo is None else 0)
