"""What the operator declares about a device when commissioning it (RSE GCP "metrological
identification"): which of its quantities are metrological (legally relevant: billing),
its firmware version and checksum, its calibration date, how far its clock may be off and
how it transfers its data. The declaration travels with the device's registry entry; the
commissioning checks (:mod:`.checks`) compare it with what the device reports, and the
tagger (:mod:`.tagger`) marks every reading metrological or not by it.

Patterns: a pattern that reads as an OBIS code (``1.0.1.8.0.255``, ``1-0:1.8.0*255``) is
compared with the reading's OBIS code; any other is a shell-style pattern on the quantity
name (``volume``, ``volume;storage=*``, ``energy*``). ``non_metrological`` wins over
``metrological``.
"""

from __future__ import annotations

from datetime import date
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, ValidationError

from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.obis import Obis
from gateway.config import Model
from gateway.errors import ConfigError

#: Quantities that describe the device or the transfer rather than what it measures: never
#: metrological unless declared so by name (the device's clock, the gateway's comparison
#: with it, firmware identification, error flags).
NON_METROLOGICAL = ("clock", "clock_deviation_s", "time_point*", "firmware_version*", "software_version*",
                    "error_flags*", "disconnect_*")


class Declaration(Model):
    """A device's declaration (see the module docstring)."""

    metrological: list[str] = Field(default_factory=lambda: ["*"],
                                    description="quantities (or OBIS codes) that are legally relevant")
    non_metrological: list[str] = Field(default_factory=lambda: list(NON_METROLOGICAL),
                                        description="quantities that are not, whatever metrological says")
    firmware_version: str | None = Field(None, description="the metrological firmware version the device must "
                                                           "report (DLMS 1.0.0.2.0.255, M-Bus VIF FD 0E)")
    software_version: str | None = Field(None, description="the other software version (M-Bus VIF FD 0F)")
    firmware_checksum: str | None = Field(None, description="the firmware checksum (DLMS 1.0.0.2.8.255), hex or text")
    calibration_date: date | None = Field(None, description="the date of the last calibration (verified when the "
                                                            "device reports it: calibration_date_obis)")
    calibration_date_obis: str | None = Field(None, description="the DLMS object holding the calibration date")
    clock_tolerance_s: float | None = Field(None, gt=0, description="how far the device's clock may be off "
                                                                    "(default [devices] clock_tolerance_s)")
    clock_set: bool = Field(True, description="set the device's clock when it is off, where the protocol allows "
                                              "(DLMS); else only report it")
    transfer: Literal["push", "poll"] | None = Field(None, description="push: the device sends on its own "
                                                                       "(battery, wireless); poll: it is read")
    expected_interval_s: float | None = Field(None, gt=0, description="how often a push device transfers")

    def is_metrological(self, quantity: str, obis: str | None) -> bool:
        return (_matches(tuple(self.metrological), quantity, obis)
                and not _matches(tuple(self.non_metrological), quantity, obis))


def declaration_of(data: Any, what: str = "declaration") -> Declaration:
    """A declaration from JSON-like data (None: the defaults); ConfigError naming the field."""
    try:
        return Declaration.model_validate(data or {})
    except ValidationError as exc:
        problems = [f"{what}.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()]
        raise ConfigError(problems) from None


@lru_cache(maxsize=4096)
def _matches(patterns: tuple[str, ...], quantity: str, obis: str | None) -> bool:
    for pattern in patterns:
        code = obis_code(pattern)
        if code is not None:
            if obis is not None and obis_code(obis) == code:
                return True
        elif fnmatchcase(quantity, pattern):
            return True
    return False


@lru_cache(maxsize=1024)
def obis_code(text: str) -> Obis | None:
    """``text`` as an OBIS code, or None when it is a quantity pattern."""
    try:
        return Obis.parse(text)
    except (DLMSError, ValueError):
        return None
