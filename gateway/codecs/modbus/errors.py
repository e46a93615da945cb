"""The Modbus codec's exceptions."""

from __future__ import annotations

from gateway.errors import FrameError, ProtocolError


class ModbusError(ProtocolError):
    """Base of every Modbus codec error."""


class ModbusFrameError(ModbusError, FrameError):
    """Bytes that are no valid response to the request: a bad CRC, a truncated frame, an
    answer of the wrong function or length."""


class ModbusExceptionResponse(ModbusError):
    """The meter answered with an exception response (Modbus Application Protocol
    V1.1b3, clause 7): it understood the request and refused it. ``code`` is the
    exception code, ``name`` its name in the standard."""

    def __init__(self, reason: str, *, code: int, name: str, request: str = "") -> None:
        self.code = code
        self.name = name
        #: The refused request, e.g. ``read input registers 0x0156+40``.
        self.request = request
        super().__init__(reason, field="exception code")


class RegisterValueError(ModbusError):
    """Registers that cannot hold a value of the data type asked for (wrong count, a
    word out of 0..65535)."""
