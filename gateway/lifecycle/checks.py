"""The commissioning checks (SM-CG 2.a.1 "new meter identification"): what the gateway
verifies before a device goes into service, from one read of it with the keys the operator
installed. Pure: an :class:`Observation` in, a list of :class:`Check` out.

=====================  =================================================================
``read``               the device answered and its answer could be decoded (with the keys:
                       a wrong key is a failed read, with the reason)
``protection``         a device given keys answered under cryptographic protection
``identity``           the device that answered is the one being commissioned
``clock``              its clock is within the tolerance (after the gateway set it, where
                       the protocol allows: the deviation before and after is reported)
``firmware_version``   the reported metrological identification matches the declaration
``software_version``   (DLMS 1.0.0.2.0.255 firmware version, 1.0.0.2.8.255 checksum;
``firmware_checksum``  M-Bus VIF FD 0E firmware, FD 0F software version); a declared
``calibration_date``   value the device does not report fails: it cannot be verified
=====================  =================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from gateway.lifecycle.declaration import Declaration, obis_code
from gateway.model import Reading

#: Where each part of the metrological identification comes from: M-Bus quantity names
#: (EN 13757-3 VIFE FD 0E/0F) and DLMS OBIS codes (Blue Book: 1-0:0.2.0 active firmware
#: identifier, 1-0:0.2.8 active firmware signature).
IDENTIFICATION: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "firmware_version": (("firmware_version",), ("1.0.0.2.0.255",)),
    "software_version": (("software_version",), ()),
    "firmware_checksum": ((), ("1.0.0.2.8.255",)),
    "calibration_date": (("calibration_date",), ()),
}
#: A clock that reports whole minutes (M-Bus type F) is behind by up to this much.
MINUTE_RESOLUTION_S = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Observation:
    """One read of a device being commissioned: who answered, its readings, or why the
    read failed; for a device whose clock the gateway set, the deviation before and after
    (seconds, device minus gateway)."""

    device: str | None
    readings: tuple[Reading, ...] = ()
    failure: str | None = None
    clock_before_s: float | None = None
    clock_after_s: float | None = None
    events: tuple[Any, ...] = field(default=())


def commissioning_checks(observation: Observation, *, expected_device: str | None, keyed: bool,
                         declaration: Declaration, tolerance_s: float) -> list[Check]:
    """Every check (see the module docstring); the first failing one says why a device
    stays installed."""
    if observation.failure is not None:
        return [Check("read", False, observation.failure)]
    if not observation.readings:
        return [Check("read", False, "the device answered without any value")]
    checks = [Check("read", True, f"{len(observation.readings)} values read")]
    if keyed:
        clear = sorted({r.quantity for r in observation.readings if r.protection in (None, "none")})
        checks.append(Check("protection", not clear, "every value came under cryptographic protection ("
                            f"{_protections(observation)})" if not clear else
                            f"keys were installed but {', '.join(clear[:3])} came without protection"))
    if expected_device is not None:
        ok = observation.device == expected_device
        checks.append(Check("identity", ok, f"{observation.device} answered" + ("" if ok else
                            f", not {expected_device}")))
    clock = _clock_check(observation, tolerance_s)
    if clock is not None:
        checks.append(clock)
    for name in IDENTIFICATION:
        declared = getattr(declaration, name)
        if declared is not None:
            checks.append(_identification_check(name, declared, observation.readings, declaration))
    return checks


def passed(checks: list[Check]) -> bool:
    return all(check.ok for check in checks)


def first_failure(checks: list[Check]) -> Check | None:
    return next((check for check in checks if not check.ok), None)


def _protections(observation: Observation) -> str:
    return ", ".join(sorted({r.protection or "none" for r in observation.readings}))


def _clock_check(observation: Observation, tolerance_s: float) -> Check | None:
    """The device's clock against the gateway's: the deviation the gateway measured (and
    after setting it), else the meter time its readings carry."""
    if observation.clock_before_s is not None:
        before = observation.clock_before_s
        after = observation.clock_after_s
        deviation = before if after is None else after
        ok = abs(deviation) <= tolerance_s
        detail = f"off by {before:+.1f} s" + ("" if after is None else f", set: {after:+.1f} s after")
        return Check("clock", ok, f"{detail} (tolerance {tolerance_s:g} s)")
    stamped = next((r for r in observation.readings if r.meter_time is not None), None)
    if stamped is None:
        return None
    deviation = drift_s(stamped.meter_time, stamped.captured_at)
    ok = within(stamped.meter_time, stamped.captured_at, tolerance_s)
    return Check("clock", ok, f"off by {deviation:+.1f} s (tolerance {tolerance_s:g} s)")


def drift_s(meter_time: datetime, captured_at: datetime) -> float:
    """Device clock minus gateway clock, in seconds."""
    return (meter_time - captured_at).total_seconds()


def within(meter_time: datetime, captured_at: datetime, tolerance_s: float) -> bool:
    """Whether a device's time stamp is within ``tolerance_s`` of the gateway's; a clock
    that reports whole minutes may be behind by up to a minute more."""
    deviation = drift_s(meter_time, captured_at)
    behind = MINUTE_RESOLUTION_S if meter_time.second == 0 and meter_time.microsecond == 0 else 0.0
    return -(tolerance_s + behind) <= deviation <= tolerance_s


def _identification_check(name: str, declared: Any, readings: tuple[Reading, ...], declaration: Declaration) -> Check:
    quantities, codes = IDENTIFICATION[name]
    if name == "calibration_date" and declaration.calibration_date_obis:
        codes = (declaration.calibration_date_obis,)
    wanted = {obis_code(code) for code in codes}
    reported = next((r.value for r in readings if r.quantity in quantities
                     or (r.obis is not None and obis_code(r.obis) in wanted)), None)
    if reported is None:
        return Check(name, False, f"declared {_text(declared)}, but the device does not report it")
    ok = _same(declared, reported)
    return Check(name, ok, f"reported {_display(reported)}" + ("" if ok else f", declared {_text(declared)}"))


def _display(value: Any) -> str:
    """A reported value as people read it: octets that are printable text as text."""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("ascii", "replace").strip("\x00 ")
        if text.isprintable() and "\ufffd" not in text:
            return text
    return _text(value)


def _same(declared: Any, reported: Any) -> bool:
    """A declared value (text or date) against a reported one (text, number, octets, date)."""
    return bool({_text(declared).casefold()} & {form.casefold() for form in _forms(reported)})


def _forms(value: Any) -> set[str]:
    """The ways a reported value may be written: octets as text and as hex."""
    if isinstance(value, (bytes, bytearray)):
        forms = {bytes(value).hex()}
        try:
            text = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            return forms
        return forms | {text.strip("\x00 ")} if text.isprintable() or "\x00" in text else forms
    return {_text(value)}


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)
