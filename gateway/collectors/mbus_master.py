"""The wired M-Bus master (EN 13757-2 link procedures, EN 13757-3 addressing) over a transport.

The codecs build and parse frames; this module owns what they cannot: time, retries,
the frame count bit of every slave, and the order of requests on a half-duplex bus.

Timing (EN 13757-2 clause 5 and the M-Bus documentation, as jMBus and libmbus apply it):

* a slave starts its reply 11 to 330 bit times after the end of the request; the master
  waits ``330 bit times + 50 ms`` (plus the bus's ``extra_timeout_ms``) after the request
  has left the wire (so the request's own transmit time counts too);
* once a reply has started, the rest of the frame must follow at line speed: the master
  waits for the bytes still missing at 11 bits each, plus the same 50 ms + extra margin;
* the line is idle for at least 33 bit times between the end of a reply and the next
  request;
* a request that got no answer is repeated with the same FCB, at most ``retries`` times;
  input is discarded before every request and after a timeout, so a late reply is never
  taken as the answer to the next request.

A reply that arrives broken (bad checksum, framing, an incomplete frame, or stray bytes
right after a single-character acknowledgement) is a :class:`Collision`: on a shared
bus that is what two slaves answering at once look like, and the master cannot tell it
from line noise. The secondary-address scan narrows its mask on it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.link import (
    ADDRESS_FIRST,
    ADDRESS_LAST,
    ADDRESS_NETWORK_LAYER,
    ADDRESS_UNCONFIGURED,
    C_FCB,
    C_FCV,
    C_FUNCTION,
    C_PRM,
    REQ_UD2,
    SND_NKE,
    SND_UD,
    Frame,
    LinkParser,
    LongFrame,
    ShortFrame,
    SingleCharacter,
)
from gateway.errors import DeviceTimeout, GatewayError, TransportError
from gateway.transports.base import LineSettings, Transport

log = logging.getLogger(__name__)

#: Slave function code of RSP_UD (EN 13757-2 table 4); ACD/DFC bits may be set around it.
_RSP_UD_FUNCTION = 0x8
#: The most telegrams one readout follows (a slave that always says "more follow" must
#: not hold the bus for ever); EN 13757-3 sets no limit, real meters send 2 to 10.
MAX_TELEGRAMS = 32


# -- timing arithmetic (EN 13757-2 clause 5, the M-Bus documentation section 5.4) ---------

SLAVE_MIN_DELAY_BITS = 11
SLAVE_MAX_DELAY_BITS = 330
REPLY_MARGIN_S = 0.050
IDLE_BITS = 33


@dataclass(frozen=True, slots=True)
class Timing:
    """The times the master waits, from the line settings and the bus's extra margin."""

    line: LineSettings
    extra_s: float = 0.0

    def reply_timeout(self, request_len: int) -> float:
        """From handing a request of ``request_len`` bytes to the OS to the first reply byte."""
        return (self.line.transmit_time(request_len) + self.line.bit_times(SLAVE_MAX_DELAY_BITS)
                + REPLY_MARGIN_S + self.extra_s)

    def completion_timeout(self, bytes_missing: int) -> float:
        """How long the rest of a started frame may take to arrive."""
        return self.line.transmit_time(max(1, bytes_missing)) + REPLY_MARGIN_S + self.extra_s

    @property
    def idle_gap(self) -> float:
        """Minimum idle line between the end of a reply and the next request."""
        return self.line.bit_times(IDLE_BITS)

    @property
    def min_reply_delay(self) -> float:
        return self.line.bit_times(SLAVE_MIN_DELAY_BITS)

    @property
    def quiet_window(self) -> float:
        """Silence after garbage that means every slave has finished talking."""
        return self.line.bit_times(SLAVE_MAX_DELAY_BITS) + REPLY_MARGIN_S


# -- errors and results -------------------------------------------------------------------

class Collision(TransportError):
    """A reply arrived garbled (bad checksum or framing, incomplete, or with stray bytes
    after it): two slaves answered at once, or the line is noisy."""


class MeterApplicationError(GatewayError):
    """The meter answered with an application error (CI 0x70, EN 13757-3 6.6)."""


@dataclass(frozen=True, slots=True)
class SecondaryAddress:
    """A secondary address or a selection mask (EN 13757-3 clause 7: identification
    number, manufacturer, version, device type/medium).

    ``identification`` is 8 characters, decimal digits or ``F`` (any digit in a mask);
    ``manufacturer``, ``version`` and ``medium`` are ``None`` in a mask that accepts any.
    ``manufacturer`` is the raw 16-bit code (the three letters are the application
    layer's business, see :attr:`manufacturer_letters`).

    Text form (as libmbus prints and accepts it, so operators can paste either way):
    16 hex digits, the identification as its 8 digits, then the manufacturer's two bytes
    in transmission order (least significant first), the version and the medium, each as
    two hex digits, ``F`` marking wildcards. An 8-digit text is an identification with any
    manufacturer, version and medium.
    """

    identification: str
    manufacturer: int | None = None
    version: int | None = None
    medium: int | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9F]{8}", self.identification):
            raise ValueError(f"identification must be 8 digits (F for any), got {self.identification!r}")
        for name, value, top in (("manufacturer", self.manufacturer, 0xFFFF), ("version", self.version, 0xFF),
                                 ("medium", self.medium, 0xFF)):
            if value is not None and not 0 <= value < top:
                raise ValueError(f"{name} 0x{value:X} is out of range")

    @classmethod
    def parse(cls, text: str) -> SecondaryAddress:
        """``12345678`` or ``123456782D2C1B04`` (see the class docstring)."""
        text = text.strip().upper()
        if re.fullmatch(r"[0-9F]{8}", text):
            return cls(text)
        if not re.fullmatch(r"[0-9F]{8}[0-9A-F]{8}", text):
            raise ValueError(f"a secondary address is 8 digits or 16 hex digits, got {text!r}")
        man = int(text[10:12] + text[8:10], 16)
        version, medium = int(text[12:14], 16), int(text[14:16], 16)
        return cls(text[:8], None if man == 0xFFFF else man, None if version == 0xFF else version,
                   None if medium == 0xFF else medium)

    @property
    def is_mask(self) -> bool:
        return "F" in self.identification or None in (self.manufacturer, self.version, self.medium)

    def select_data(self) -> bytes:
        """The 8 data bytes of a selection (CI 0x52): identification as BCD, least
        significant byte first, F nibbles as wildcards; FFFF / FF / FF for any."""
        digits = self.identification
        id_bytes = bytes(int(digits[i:i + 2], 16) for i in (6, 4, 2, 0))
        man = 0xFFFF if self.manufacturer is None else self.manufacturer
        return id_bytes + man.to_bytes(2, "little") + bytes([
            0xFF if self.version is None else self.version, 0xFF if self.medium is None else self.medium])

    def __str__(self) -> str:
        return self.identification + self.select_data()[4:].hex().upper()

    def with_digit(self, position: int, digit: int) -> SecondaryAddress:
        ident = self.identification[:position] + str(digit) + self.identification[position + 1:]
        return SecondaryAddress(ident, self.manufacturer, self.version, self.medium)


@dataclass(frozen=True, slots=True)
class FoundMeter:
    """A meter found by a scan. ``primary`` is its primary address (0 = unconfigured,
    ``None`` when it was found by secondary address and its reply did not say)."""

    primary: int | None
    secondary: SecondaryAddress
    reply: LongFrame | None = None


@dataclass
class ScanResult:
    meters: list[FoundMeter] = field(default_factory=list)
    #: Primary addresses where two meters answered at once (a configuration error), or
    #: fully specified identification numbers shared by several meters.
    collisions: list[str] = field(default_factory=list)


Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``: ``total`` may grow during a secondary scan."""


@dataclass(frozen=True, slots=True)
class Readout:
    """Every RSP_UD telegram of one readout, in order, as frames."""

    address: int | SecondaryAddress
    frames: tuple[LongFrame, ...]


def counters_template() -> dict[str, int]:
    return {"requests": 0, "frames": 0, "errors": 0, "retries": 0, "timeouts": 0, "collisions": 0,
            "garbage_bytes": 0}


class MBusMaster:
    """The master of one wired M-Bus.

    ``MBusMaster(transport, line=MBUS_LINE.with baud, extra_timeout_ms=0, retries=2)``;
    every public coroutine is one transaction and holds the port (``transport.claim``)
    for its whole duration, so a select, its readout and the deselect never interleave
    with another user of the port.
    """

    def __init__(self, transport: Transport, line: LineSettings, *, extra_timeout_ms: int = 0,
                 retries: int = 2) -> None:
        self.transport = transport
        self.line = line
        self.timing = Timing(line, extra_timeout_ms / 1000)
        self.retries = retries
        self.counters = counters_template()
        self._next_fcb: dict[int, bool] = {}
        self._line_free_at = 0.0

    # -- public transactions --------------------------------------------------------------

    async def ping(self, address: int) -> None:
        """SND_NKE → E5: reset the slave's link layer (its next FCB is 1)."""
        async with self.transport.claim(self.line):
            await self._reset_link(address)

    async def read(self, address: int | SecondaryAddress, *, decode_more: Callable[[LongFrame], bool]) -> Readout:
        """Read a meter completely (every telegram of a multi-telegram readout).

        ``decode_more(frame)`` says whether another telegram follows (the application
        layer's "more records follow", DIF 0x1F); the master itself never decodes records.
        """
        async with self.transport.claim(self.line):
            if isinstance(address, SecondaryAddress):
                await self._select(address)
                try:
                    frames = await self._read_telegrams(ADDRESS_NETWORK_LAYER, decode_more, self._describe(address))
                finally:
                    await self._deselect()
            else:
                await self._reset_link(address)
                frames = await self._read_telegrams(address, decode_more, self._describe(address))
        return Readout(address, tuple(frames))

    async def set_primary_address(self, address: int | SecondaryAddress, new_address: int) -> None:
        """SND_UD CI 0x51 with the record DIF 01 VIF 7A (EN 13757-3 annex, "bus address")."""
        if not ADDRESS_UNCONFIGURED <= new_address <= ADDRESS_LAST:
            raise ValueError(f"a primary address is 0 to 250, got {new_address}")
        async with self.transport.claim(self.line):
            target = ADDRESS_NETWORK_LAYER
            if isinstance(address, SecondaryAddress):
                await self._select(address)
            else:
                target = address
            try:
                request = LongFrame(SND_UD, target, 0x51, bytes([0x01, 0x7A, new_address]))
                await self._transact(request.to_bytes(), self._describe(address), expect=SingleCharacter)
            finally:
                if isinstance(address, SecondaryAddress):
                    await self._deselect()
            self._next_fcb.pop(target, None)

    async def scan_primary(self, progress: Progress | None = None, *, first: int = ADDRESS_UNCONFIGURED,
                           last: int = ADDRESS_LAST) -> ScanResult:
        """Find meters by primary address: SND_NKE to every address from ``first`` to
        ``last`` (an E5 means a meter is there, garbage means two share the address),
        then one REQ_UD2 to each meter found, to learn its secondary address.

        This is libmbus's choice (a ping per address) rather than a REQ_UD2 per address:
        the short E5 reply keeps the scan of an empty address as short as the timeout.
        """
        result = ScanResult()
        total = last - first + 1
        for done, address in enumerate(range(first, last + 1), start=1):
            async with self.transport.claim(self.line):
                try:
                    await self._reset_link(address)
                except DeviceTimeout:
                    pass
                except Collision:
                    result.collisions.append(f"primary address {address}")
                else:
                    frame = await self._identify(address)
                    if frame is not None:
                        result.meters.append(FoundMeter(address, secondary_of(frame), frame))
            if progress:
                progress(done, total, f"address {address}")
        return result

    async def scan_secondary(self, progress: Progress | None = None,
                             mask: SecondaryAddress = SecondaryAddress("FFFFFFFF")) -> ScanResult:
        """Find meters by secondary address with wildcard narrowing (EN 13757-3 annex):

        select ``mask``; silence → nobody there; a single E5 and a clean reply to the
        REQ_UD2 that follows → exactly one meter (its reply tells its full address); a
        garbled reply to either → several meters: replace the leftmost wildcard digit by
        0..9 and probe each narrower mask. Every meter is found exactly once.
        """
        result = ScanResult()
        pending = [mask]
        done = 0
        while pending:
            current = pending.pop(0)
            outcome, frame = await self._probe(current)
            done += 1
            if outcome == "single" and frame is not None:
                result.meters.append(FoundMeter(frame.a if frame.a <= ADDRESS_LAST else None, secondary_of(frame), frame))
            elif outcome == "collision":
                position = current.identification.find("F")
                if position < 0:
                    result.collisions.append(f"secondary address {current}")
                else:
                    pending[0:0] = [current.with_digit(position, digit) for digit in range(10)]
            if progress:
                progress(done, done + len(pending), str(current))
        return result

    # -- link procedures (callers hold the port) ------------------------------------------

    async def _reset_link(self, address: int) -> None:
        await self._transact(ShortFrame(SND_NKE, address).to_bytes(), self._describe(address), expect=SingleCharacter)
        # EN 13757-2 5.5: after SND_NKE the slave expects FCB = 1 in the next request.
        self._next_fcb[address] = True

    async def _select(self, mask: SecondaryAddress, *, probe: bool = False) -> None:
        request = LongFrame(SND_UD, ADDRESS_NETWORK_LAYER, 0x52, mask.select_data()).to_bytes()
        name = f"secondary address {mask}"
        try:
            await self._transact(request, name, expect=SingleCharacter, retry_garbled=not probe)
        except Collision:
            raise Collision(f"secondary address {mask} matches more than one meter") from None
        await self._expect_silence(f"secondary address {mask} matches more than one meter")
        # A selection starts a new conversation with that slave, as SND_NKE does.
        self._next_fcb[ADDRESS_NETWORK_LAYER] = True

    async def _deselect(self) -> None:
        """SND_NKE to 253 ends the selection; a slave that misses it is deselected by
        the next selection anyway, so silence here is not an error."""
        try:
            await self._exchange(ShortFrame(SND_NKE, ADDRESS_NETWORK_LAYER).to_bytes(), expect=SingleCharacter)
        except (DeviceTimeout, Collision) as exc:
            log.debug("deselect: %s", exc)
        self._next_fcb.pop(ADDRESS_NETWORK_LAYER, None)

    async def _read_telegrams(self, address: int, decode_more: Callable[[LongFrame], bool],
                              name: str) -> list[LongFrame]:
        frames: list[LongFrame] = []
        while len(frames) < MAX_TELEGRAMS:
            frame = await self._read_one(address, name)
            frames.append(frame)
            if not decode_more(frame):
                return frames
        log.warning("meter at %s: stopped after %d telegrams that all said more follow", name, MAX_TELEGRAMS)
        return frames

    async def _identify(self, address: int) -> LongFrame | None:
        """One REQ_UD2 after a scan's ping; None if the meter did not answer it."""
        try:
            return await self._read_one(address, self._describe(address))
        except (DeviceTimeout, Collision, MBusFrameError) as exc:
            log.info("scan: meter at address %d answered SND_NKE but not REQ_UD2: %s", address, exc)
            return None

    async def _read_one(self, address: int, name: str, *, retry_garbled: bool = True) -> LongFrame:
        """REQ_UD2 with the slave's current FCB, which toggles when the reply is good."""
        fcb = self._next_fcb.get(address, True)
        request = ShortFrame(REQ_UD2 | C_FCV | (C_FCB if fcb else 0), address).to_bytes()
        frame = await self._transact(request, name, expect=LongFrame, retry_garbled=retry_garbled)
        self._next_fcb[address] = not fcb
        return frame  # type: ignore[return-value]

    async def _probe(self, mask: SecondaryAddress) -> tuple[Literal["nothing", "single", "collision"], LongFrame | None]:
        async with self.transport.claim(self.line):
            try:
                await self._select(mask, probe=True)
            except DeviceTimeout:
                return "nothing", None
            except Collision:
                return "collision", None
            try:
                frame = await self._read_one(ADDRESS_NETWORK_LAYER, f"secondary address {mask}", retry_garbled=False)
                await self._expect_silence(f"secondary address {mask} matches more than one meter")
            except Collision:
                return "collision", None
            except DeviceTimeout:
                return "nothing", None
            finally:
                await self._deselect()
            return "single", frame

    # -- one request, its reply, retries --------------------------------------------------

    def _describe(self, address: int | SecondaryAddress) -> str:
        if isinstance(address, SecondaryAddress):
            return f"secondary address {address}"
        return f"address {address}"

    async def _transact(self, request: bytes, name: str, *, expect: type, retry_garbled: bool = True) -> Frame:
        """Send ``request`` and return its reply, repeating it unchanged (same FCB) after a
        timeout, or a garbled reply when ``retry_garbled``, at most ``retries`` times."""
        attempt = 0
        while True:
            try:
                return await self._exchange(request, expect=expect)
            except (DeviceTimeout, Collision) as exc:
                if attempt >= self.retries or (isinstance(exc, Collision) and not retry_garbled):
                    raise self._give_up(exc, request, name, attempt) from None
            attempt += 1
            self.counters["retries"] += 1

    def _give_up(self, exc: TransportError, request: bytes, name: str, retries: int) -> TransportError:
        tries = f"{retries} {'retry' if retries == 1 else 'retries'}"
        if isinstance(exc, DeviceTimeout):
            waited_ms = self.timing.reply_timeout(len(request)) * 1000
            return DeviceTimeout(f"meter at {name} did not answer (timeout after {waited_ms:.0f} ms, {tries})")
        return Collision(f"meter at {name} answered with garbage ({exc}; {tries})")

    async def _exchange(self, request: bytes, *, expect: type) -> Frame:
        """One request and its reply, no retry: DeviceTimeout when nothing came back,
        Collision when something unusable did."""
        await self._wait_for_idle_line()
        self._discard_input()
        await self.transport.write(request)
        self.counters["requests"] += 1
        try:
            frame = await self._receive(self.timing.reply_timeout(len(request)), request)
            if not isinstance(frame, expect) or (isinstance(frame, LongFrame) and not _is_rsp_ud(frame)):
                self.counters["errors"] += 1
                raise Collision(f"unexpected reply {type(frame).__name__} (C 0x{getattr(frame, 'c', 0xE5):02X})")
        except DeviceTimeout:
            self.counters["timeouts"] += 1
            self._line_free_at = self._now() + self.timing.idle_gap
            raise
        except Collision:
            self.counters["collisions"] += 1
            raise
        finally:
            if self.transport.last_receive_time is not None:
                self._line_free_at = max(self._line_free_at, self.transport.last_receive_time + self.timing.idle_gap)
        return frame

    async def _receive(self, timeout_s: float, request: bytes) -> Frame:
        parser = LinkParser()
        deadline = self._now() + timeout_s
        while True:
            try:
                frame = parser.next_frame()
            except MBusFrameError as exc:
                self.counters["errors"] += 1
                await self._wait_for_quiet()
                raise Collision(str(exc)) from None
            if frame is not None:
                if isinstance(frame, (ShortFrame, LongFrame)) and frame.c & C_PRM and frame.to_bytes() == request:
                    continue  # our own request, echoed by the level converter
                self.counters["frames"] += 1
                self.counters["garbage_bytes"] += parser.skipped_bytes
                return frame
            try:
                chunk = await self.transport.read(timeout_s=deadline - self._now())
            except DeviceTimeout:
                if parser.buffered or parser.skipped_bytes:
                    self.counters["errors"] += 1
                    self.counters["garbage_bytes"] += parser.buffered + parser.skipped_bytes
                    raise Collision(f"incomplete reply ({parser.buffered + parser.skipped_bytes} bytes)") from None
                raise
            parser.receive_data(chunk)
            deadline = self._now() + self.timing.completion_timeout(parser.bytes_needed())

    async def _expect_silence(self, meaning: str) -> None:
        """After a clean reply, bytes within the idle gap mean a second slave answered too."""
        await self._wait_for_idle_line()
        stray = self.transport.reset_input()
        if stray:
            self.counters["garbage_bytes"] += stray
            self.counters["collisions"] += 1
            await self._wait_for_quiet()
            raise Collision(f"{meaning} ({stray} stray bytes after the reply)")

    async def _wait_for_quiet(self) -> None:
        """Read and drop bytes until the line has been silent for the quiet window."""
        while True:
            try:
                junk = await self.transport.read(timeout_s=self.timing.quiet_window)
            except DeviceTimeout:
                self._line_free_at = self._now()
                return
            self.counters["garbage_bytes"] += len(junk)

    async def _wait_for_idle_line(self) -> None:
        wait = self._line_free_at - self._now()
        if wait > 0:
            await asyncio.sleep(wait)

    def _discard_input(self) -> None:
        stray = self.transport.reset_input()
        if stray:
            self.counters["garbage_bytes"] += stray
            log.debug("%s: discarded %d late or stray bytes", self.transport.description, stray)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


def _is_rsp_ud(frame: LongFrame) -> bool:
    return not frame.c & C_PRM and frame.c & C_FUNCTION == _RSP_UD_FUNCTION


def secondary_of(frame: LongFrame) -> SecondaryAddress:
    """The secondary address in the fixed header of a variable-data RSP_UD (EN 13757-3
    6.3.1: identification BCD, manufacturer, version, medium, first 8 bytes after CI)."""
    head = frame.data[:8]
    if len(head) < 8:
        raise MBusFrameError("reply too short to carry a secondary address", offset=7, field="header")
    ident = head[3::-1].hex().upper()
    if not ident.isdigit():
        raise MBusFrameError(f"identification {ident} is not BCD", offset=7, field="identification")
    return SecondaryAddress(ident, int.from_bytes(head[4:6], "little"), head[6], head[7])
