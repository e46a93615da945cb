"""The M-Bus codec's exceptions (wired EN 13757-2/3 and wireless EN 13757-4)."""

from __future__ import annotations

from gateway.errors import FrameError, ProtocolError, SecurityError


class MBusError(ProtocolError):
    """Base of every M-Bus codec error."""


class MBusFrameError(MBusError, FrameError):
    """A link-layer frame or application-layer structure that is malformed."""


class MBusSecurityError(MBusError, SecurityError):
    """A telegram refused for security (wrong key, failed MAC, plaintext where a key is set)."""


class MBusNoKeyError(MBusSecurityError):
    """An encrypted wireless telegram for which no key is configured."""


class MBusPlaintextError(MBusSecurityError):
    """A telegram that arrived unencrypted although a key is configured for its meter."""


class MBusAuthenticationError(MBusSecurityError):
    """A telegram whose MAC, payload CRC or 2F2F check failed: wrong key or altered data."""


class MBusUnsupportedSecurityError(MBusSecurityError):
    """A security mode or option this codec does not implement (DES, TLS, GMAC ...)."""


def need_ci(data: bytes, offset: int) -> None:
    """Raise the codec's error when a layer's CI would lie beyond the data (not IndexError)."""
    if not 0 <= offset < len(data):
        raise MBusFrameError(f"no CI field: the data end at {len(data)}", offset=offset, field="CI")
