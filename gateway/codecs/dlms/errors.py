"""The DLMS/COSEM codec's exceptions (IEC 62056-46 HDLC, -47 wrapper, -21 mode E, -5-3 APDUs)."""

from __future__ import annotations

from gateway.errors import FrameError, ProtocolError, SecurityError


class DLMSError(ProtocolError):
    """Base of every DLMS/COSEM codec error."""


class DLMSFrameError(DLMSError, FrameError):
    """A frame, wrapper message or APDU that is malformed."""


class DLMSSecurityError(DLMSError, SecurityError):
    """An APDU refused for security (wrong key, failed tag, replayed invocation counter)."""
