"""The byte-stream transport every polled bus talks through.

A :class:`Transport` moves bytes and knows nothing of frames: ``write`` sends, ``read``
returns whatever bytes have arrived (waiting at most ``timeout_s`` for the first one),
``reset_input`` throws away what is buffered, ``drain`` waits until the output has been
handed to the operating system. It is an async context manager; every wait sits inside
``asyncio.timeout``; failures are :class:`~gateway.errors.TransportError` and a silent
device is :class:`~gateway.errors.DeviceTimeout`.

Serial lines and TCP serial servers share the receiving side (:class:`_Inbox`, an asyncio
protocol that buffers bytes and notes when the last one arrived) and the arbitration of the
physical port (:attr:`Transport.lock`, taken through :meth:`Transport.claim`).
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from gateway.errors import DeviceTimeout, TransportError

Parity = Literal["N", "E", "O"]

#: How long opening, closing or handing bytes to the OS may take before the port counts as dead.
IO_TIMEOUT_S = 5.0
#: Received bytes kept unread at most. A transaction needs at most one frame buffered: the
#: largest any bus sends is a DLMS wrapper frame (8-byte header + 65,535-byte APDU; HDLC and
#: M-Bus frames are a few hundred bytes), so twice that lets a whole frame and what came
#: before it wait for a busy reader. A babbling device or TCP serial server beyond it loses
#: its oldest bytes (counted in ``bytes_discarded``), not the gateway its memory.
MAX_INBOX_BYTES = 128 * 1024


@dataclass(frozen=True, slots=True)
class LineSettings:
    """Character framing and speed of an asynchronous serial line.

    EN 13757-2 (M-Bus) uses 8 data bits, even parity, 1 stop bit: with the start bit a
    character is 11 bit times. DLMS HDLC runs 8N1 (10 bit times), IEC 62056-21 7E1.
    Over a TCP serial server the line behind the server is still slow, so the settings
    still drive the protocol's timing.
    """

    baud: int = 2400
    bytesize: int = 8
    parity: Parity = "E"
    stopbits: int = 1

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise ValueError(f"baud rate must be positive, got {self.baud}")
        if self.bytesize not in (5, 6, 7, 8) or self.stopbits not in (1, 2) or self.parity not in ("N", "E", "O"):
            raise ValueError(f"unsupported character format {self.framing}")

    @classmethod
    def parse(cls, baud: int, framing: str = "8E1") -> LineSettings:
        """``LineSettings.parse(9600, "8N1")``."""
        match = re.fullmatch(r"([5-8])([NEO])([12])", framing.upper())
        if not match:
            raise ValueError(f"character format must look like 8E1, 8N1 or 7E1, got {framing!r}")
        return cls(baud, int(match.group(1)), match.group(2), int(match.group(3)))  # type: ignore[arg-type]

    @property
    def framing(self) -> str:
        return f"{self.bytesize}{self.parity}{self.stopbits}"

    @property
    def bits_per_char(self) -> int:
        """Start bit, data bits, parity bit (if any) and stop bits."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    def bit_times(self, bits: float) -> float:
        """Seconds taken by ``bits`` bit times at this baud rate."""
        return bits / self.baud

    def transmit_time(self, nbytes: int) -> float:
        """Seconds ``nbytes`` characters occupy the line, back to back."""
        return nbytes * self.bits_per_char / self.baud

    def __str__(self) -> str:
        return f"{self.baud} {self.framing}"


#: EN 13757-2 clause 4: 8 data bits, even parity, one stop bit.
MBUS_LINE = LineSettings(2400, 8, "E", 1)


class _Inbox(asyncio.Protocol):
    """Collects received bytes for :class:`Transport` and tracks output flow control.

    The buffer keeps the newest :data:`MAX_INBOX_BYTES`; ``overflowed`` counts the older
    bytes dropped to stay within it. (Pausing reading instead would leave the stale bytes in
    the kernel's socket buffer, to be delivered after ``claim`` has discarded the input, as
    if they were the reply.)"""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.overflowed = 0
        self.arrived = asyncio.Event()
        self.last_receive_time: float | None = None
        self.lost_reason: Exception | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.arrived.set()
        self._writable.set()
        self.lost_reason = exc

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        excess = len(buffer) - MAX_INBOX_BYTES
        if excess > 0:
            del buffer[:excess]  # bytearray drops its head without copying the rest
            self.overflowed += excess
        self.last_receive_time = asyncio.get_running_loop().time()
        self.arrived.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def writable(self) -> None:
        await self._writable.wait()

    @property
    def is_writable(self) -> bool:
        return self._writable.is_set()


class Transport(ABC):
    """An open byte stream to a bus (see the module docstring).

    Subclasses implement :meth:`_open` (returning the asyncio transport and our
    :class:`_Inbox`) and :meth:`_apply_line`; the rest is shared.
    """

    def __init__(self, description: str, line: LineSettings) -> None:
        self.description = description
        self.line = line
        #: One transaction at a time on the physical port, whoever the bus is.
        self.lock = asyncio.Lock()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.bytes_discarded = 0
        self._transport: asyncio.BaseTransport | None = None
        self._inbox: _Inbox | None = None

    # -- what subclasses provide ----------------------------------------------------------

    @abstractmethod
    async def _open(self) -> tuple[asyncio.BaseTransport, _Inbox]:
        """Open the port or connection; raise TransportError with the reason."""

    @abstractmethod
    def _apply_line(self, line: LineSettings) -> None:
        """Switch the line settings of an open port (no-op where the far side owns them)."""

    def _discard_pending(self) -> None:
        """Drop bytes received by the OS but not yet delivered (serial: the tty buffer)."""

    # -- life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the port; at once if it is open, anew if the connection was lost (a TCP
        serial server dropped it while another bus still holds this shared transport)."""
        if self._transport is not None and not self._lost:
            return
        if self._transport is not None:
            await self.close()
        try:
            async with asyncio.timeout(IO_TIMEOUT_S):
                self._transport, self._inbox = await self._open()
        except TimeoutError:
            raise TransportError(f"{self.description}: opening took longer than {IO_TIMEOUT_S:g} s") from None

    async def close(self) -> None:
        transport, inbox = self._transport, self._inbox
        self._transport = None
        if transport is None or inbox is None:
            return
        transport.close()
        try:
            async with asyncio.timeout(IO_TIMEOUT_S):
                await asyncio.shield(inbox.lost)
        except TimeoutError:
            transport.abort()  # type: ignore[attr-defined]

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def _lost(self) -> bool:
        return self._inbox is not None and self._inbox.lost.done()

    # -- bytes --------------------------------------------------------------------------------

    def _live(self) -> tuple[asyncio.WriteTransport, _Inbox]:
        if self._transport is None or self._inbox is None:
            raise TransportError(f"{self.description} is not open")
        if self._inbox.lost.done():
            reason = self._inbox.lost_reason
            raise TransportError(f"{self.description} was closed" + (f": {reason}" if reason else ""))
        return self._transport, self._inbox  # type: ignore[return-value]

    async def write(self, data: bytes) -> None:
        """Send ``data`` and wait until it is handed to the operating system."""
        transport, _ = self._live()
        transport.write(bytes(data))
        self.bytes_sent += len(data)
        await self.drain()

    async def drain(self) -> None:
        """Wait until buffered output has been handed to the operating system."""
        transport, inbox = self._live()
        if inbox.is_writable:
            return  # the usual case: nothing to wait for, so no timer either
        try:
            async with asyncio.timeout(IO_TIMEOUT_S + self.line.transmit_time(transport.get_write_buffer_size())):
                await inbox.writable()
        except TimeoutError:
            raise TransportError(f"{self.description}: output is stuck (flow control never released)") from None
        self._live()

    async def read(self, max_bytes: int = 4096, *, timeout_s: float) -> bytes:
        """Return between 1 and ``max_bytes`` received bytes; wait at most ``timeout_s``
        for the first one, else raise :class:`DeviceTimeout`."""
        _, inbox = self._live()
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                while not inbox.buffer:
                    self._live()
                    inbox.arrived.clear()
                    await inbox.arrived.wait()
        except TimeoutError:
            raise DeviceTimeout(f"{self.description}: nothing received within {timeout_s * 1000:.0f} ms") from None
        chunk = bytes(inbox.buffer[:max_bytes])
        del inbox.buffer[:max_bytes]
        self.bytes_received += len(chunk)
        self._count_overflow(inbox)
        return chunk

    def reset_input(self) -> int:
        """Discard every byte received so far; return how many were thrown away
        (including those the full buffer dropped since the last read)."""
        _, inbox = self._live()
        self._discard_pending()
        count = len(inbox.buffer)
        inbox.buffer.clear()
        self.bytes_discarded += count
        return count + self._count_overflow(inbox)

    def _count_overflow(self, inbox: _Inbox) -> int:
        """Move the bytes the full buffer dropped into ``bytes_discarded``; how many."""
        count, inbox.overflowed = inbox.overflowed, 0
        self.bytes_discarded += count
        return count

    @property
    def last_receive_time(self) -> float | None:
        """Event-loop time at which the latest byte arrived (None before any)."""
        return self._inbox.last_receive_time if self._inbox else None

    # -- arbitration ------------------------------------------------------------------------

    async def set_line(self, line: LineSettings) -> None:
        """Change speed or character format mid-session (IEC 62056-21 mode E baud switch)."""
        self._live()
        if line != self.line:
            self._apply_line(line)
            self.line = line

    @asynccontextmanager
    async def claim(self, line: LineSettings | None = None) -> AsyncIterator[Self]:
        """Hold the port for one transaction: nobody else writes until the block ends.

        ``line`` switches the port to the caller's settings first (two buses of different
        protocols may share one port); stale input is discarded so that bytes meant for
        the previous user are never taken as the answer to this one.
        """
        async with self.lock:
            if line is not None:
                await self.set_line(line)
            self.reset_input()
            yield self
