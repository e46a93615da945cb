"""The gateway's one exception tree.

Every error the gateway raises on purpose is a :class:`GatewayError`. Codecs raise
:class:`ProtocolError` subclasses that say *what* was wrong and *where* (byte offset and
field); a codec's public entry point converts stray ``ValueError``/``IndexError``/
``struct.error`` into its own error once, so callers catch one family per protocol.

Short input is never an error in an incremental parser: it means "need more data".
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ProtocolError(GatewayError):
    """Bytes that do not follow the protocol.

    ``reason`` is a short human sentence, ``offset`` the byte offset in the unit being
    decoded (frame, APDU, telegram) where the problem was found, ``field`` the name of the
    field from the standard when one applies.
    """

    def __init__(self, reason: str, *, offset: int | None = None, field: str | None = None) -> None:
        self.reason = reason
        self.offset = offset
        self.field = field
        super().__init__(self.describe())

    def describe(self) -> str:
        where = []
        if self.field:
            where.append(f"field {self.field}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return f"{self.reason} at {', '.join(where)}" if where else self.reason


class FrameError(ProtocolError):
    """A frame or APDU that is malformed: bad start/stop, length, checksum, truncation."""


class SecurityError(ProtocolError):
    """A message refused for security: wrong key, failed tag/MAC, replayed counter,
    plaintext where ciphertext is required."""


class TransportError(GatewayError):
    """A port, socket or dongle could not be opened, read or written."""


class DeviceTimeout(TransportError):
    """A device did not answer within the time the standard allows (plus margin)."""


class StoreError(GatewayError):
    """The SQLite store could not do what was asked."""


class StoreFullError(StoreError):
    """The disk holding the store is full; the write was rolled back and can be retried."""


class UplinkError(GatewayError):
    """An uplink (MQTT broker, HES connection) failed."""


class ConfigError(GatewayError):
    """A configuration that cannot be used. ``problems`` holds one line per error,
    each of the form ``file:line: field: reason``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
