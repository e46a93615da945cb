"""OBIS codes (IEC 62056-6-1): the six value groups A-B:C.D.E*F that name every COSEM object.

On the wire a logical name is a 6-byte octet string; people write it as ``1-0:1.8.0*255``
(the reduced form ``1-0:1.8.0`` implies F = 255) or dotted as ``1.0.1.8.0.255``.
:meth:`Obis.parse` accepts all of these; ``str()`` prints the full ``A-B:C.D.E*F`` form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.codecs.dlms.errors import DLMSError

#: ``A-B:C.D.E*F`` with F optional (IEC 62056-6-1 7.2); ``*`` or ``.`` or ``&`` before F
#: (all three are seen in meter documentation).
_TEXT = re.compile(r"(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[*.&](\d{1,3}))?")
_DOTTED = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_HEX = re.compile(r"[0-9A-Fa-f]{12}")


@dataclass(frozen=True, slots=True, order=True)
class Obis:
    """One OBIS code; each value group is 0..255."""

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d", "e", "f"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 255:
                raise ValueError(f"OBIS value group {name.upper()} must be 0..255, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> Obis:
        """Parse ``1-0:1.8.0*255``, ``1-0:1.8.0`` (F = 255), ``1.0.1.8.0.255`` or the 12 hex
        digits of the 6-byte form (``0100010800FF``)."""
        text = text.strip()
        match = _TEXT.fullmatch(text) or _DOTTED.fullmatch(text)
        if match:
            groups = [int(g) for g in match.groups() if g is not None]
            if any(g > 255 for g in groups):
                raise DLMSError(f"OBIS value group above 255 in {text!r}", field="obis")
            return cls(*groups)
        if _HEX.fullmatch(text):
            return cls.from_bytes(bytes.fromhex(text))
        raise DLMSError(f"not an OBIS code: {text!r} (expected A-B:C.D.E*F or A.B.C.D.E.F)", field="obis")

    @classmethod
    def from_bytes(cls, data: bytes) -> Obis:
        """The 6-byte logical name as carried in COSEM attribute and method descriptors."""
        if len(data) != 6:
            raise DLMSError(f"a logical name is 6 bytes, got {len(data)}", field="logical_name")
        return cls(*data)

    def to_bytes(self) -> bytes:
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    @property
    def dotted(self) -> str:
        """The dotted form ``1.0.1.8.0.255``."""
        return f"{self.a}.{self.b}.{self.c}.{self.d}.{self.e}.{self.f}"

    def __str__(self) -> str:
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}*{self.f}"
