"""A local serial port (RS-232/RS-485, an M-Bus level converter) through pyserial-asyncio-fast."""

from __future__ import annotations

import asyncio
import logging
import os
import stat

import serial
import serial_asyncio_fast

from gateway.errors import TransportError
from gateway.transports.base import LineSettings, Transport, _Inbox

log = logging.getLogger(__name__)

#: Linux character-device majors of Unix 98 pseudo-terminal slaves (/dev/pts/N).
_PTY_SLAVE_MAJORS = range(136, 144)


class SerialTransport(Transport):
    """``SerialTransport("/dev/ttyUSB0", LineSettings(2400, 8, "E", 1))``.

    The port is opened exclusively (another process holding it is an error, not a
    silent fight over bytes); :meth:`set_line` changes speed or format on the open port.
    """

    def __init__(self, path: str, line: LineSettings) -> None:
        super().__init__(f"serial port {path}", line)
        self.path = path
        self._serial: serial.Serial | None = None

    async def _open(self) -> tuple[asyncio.BaseTransport, _Inbox]:
        loop = asyncio.get_running_loop()
        try:
            port = await loop.run_in_executor(None, self._open_port)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"cannot open {self.description}: {_reason(exc)}") from None
        self._serial = port
        inbox = _Inbox()
        transport, _ = await serial_asyncio_fast.connection_for_serial(loop, lambda: inbox, port)
        return transport, inbox

    def _open_port(self) -> serial.Serial:
        bytesize, parity = self._wire_format(self.line)
        port = serial.Serial(baudrate=self.line.baud, bytesize=bytesize, parity=parity, stopbits=self.line.stopbits,
                             exclusive=True)
        port.port = self.path
        port.open()
        return port

    def _wire_format(self, line: LineSettings) -> tuple[int, str]:
        """Data bits and parity to set on the device. A pseudo-terminal has no character
        framing and Linux refuses anything but 8 bits without parity on one (EINVAL), so
        the simulators' ptys are opened 8N1; real ports get what the protocol needs."""
        if (line.bytesize, line.parity) != (8, "N") and is_pseudo_terminal(self.path):
            log.debug("%s is a pseudo-terminal: %s framing not set on it", self.path, line.framing)
            return 8, "N"
        return line.bytesize, line.parity

    def _apply_line(self, line: LineSettings) -> None:
        port = self._require_port()
        try:
            port.baudrate = line.baud
            port.bytesize, port.parity = self._wire_format(line)
            port.stopbits = line.stopbits
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportError(f"{self.description}: cannot switch to {line}: {_reason(exc)}") from None

    def _discard_pending(self) -> None:
        try:
            self._require_port().reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"{self.description}: cannot flush input: {_reason(exc)}") from None

    def _require_port(self) -> serial.Serial:
        if self._serial is None or not self._serial.is_open:
            raise TransportError(f"{self.description} is not open")
        return self._serial

    async def close(self) -> None:
        await super().close()
        self._serial = None


def is_pseudo_terminal(path: str) -> bool:
    try:
        mode = os.stat(path)
    except OSError:
        return False
    return stat.S_ISCHR(mode.st_mode) and os.major(mode.st_rdev) in _PTY_SLAVE_MAJORS


def _reason(exc: BaseException) -> str:
    """pyserial wraps errno messages as '[Errno 2] could not open port X: [Errno 2] ...'."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    text = str(exc)
    return text.rsplit("] ", 1)[-1] if "] " in text else text
