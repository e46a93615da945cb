"""The wired M-Bus master (EN 13757-2 link procedures, EN 13757-3 addressing) over a transport.

The codecs build and parse frames; this module owns what they cannot: time, retries,
the frame count bit of every slave, and the order of requests on a half-duplex bus.

Timing (EN 13757-2 clause 5 and the M-Bus documentation, as jMBus and libmbus apply it):

* a slave starts its reply 11 to 330 bit times after the end of the request; the master
  waits ``330 bit times + 50 ms`` (plus the bus's ``extra_timeout_ms``) after the request
  has left the wire (so the request's own transmit time counts too);
* once a reply has started, the rest of the frame must follow at line speed: the master
  waits for the bytes still missing at 11 bits each, plus 330 bit times + 50 ms + extra
  for a pause (converters and TCP serial servers deliver in bursts);
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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

from gateway.codecs.mbus.application import (
    CI_OFFSET,
    ApplicationErrorResponse,
    FixedDataResponse,
    Response,
    SecondaryAddressMask,
    VariableDataResponse,
    decode_user_data,
    manufacturer_letters,
    req_ud2,
    select_secondary,
    set_primary_address,
    snd_nke,
)
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.link import (
    ADDRESS_LAST,
    ADDRESS_NETWORK_LAYER,
    C_FUNCTION,
    C_PRM,
    Frame,
    LinkParser,
    SHORT_START,
    LongFrame,
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
        """How long the rest of a started frame may take to arrive: its wire time, plus a
        pause as long as a slave's longest turnaround (converters and TCP serial servers
        deliver in bursts), plus the margins."""
        return (self.line.transmit_time(max(1, bytes_missing)) + self.line.bit_times(SLAVE_MAX_DELAY_BITS)
                + REPLY_MARGIN_S + self.extra_s)

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


ANY_METER = SecondaryAddressMask()


def parse_secondary(text: str) -> SecondaryAddressMask:
    """A secondary address or mask from its text form, as libmbus prints and accepts it
    (so operators can paste either way): 8 digits (identification; any manufacturer,
    version and medium), or 16 hex digits: the identification's 8 digits, then the
    manufacturer's two bytes in transmission order (least significant first), version and
    medium, each two hex digits; ``F`` digits of the identification and ``FFFF``/``FF``
    are wildcards."""
    text = text.strip().upper()
    if not re.fullmatch(r"[0-9F]{8}([0-9A-F]{8})?", text):
        raise ValueError(f"a secondary address is 8 digits or 16 hex digits (F for any), got {text!r}")
    if len(text) == 8:
        return SecondaryAddressMask(text)
    code = int.from_bytes(bytes.fromhex(text[8:12]), "little")
    version, medium = int(text[12:14], 16), int(text[14:16], 16)
    return SecondaryAddressMask(text[:8], None if code == 0xFFFF else manufacturer_letters(code),
                                None if version == 0xFF else version, None if medium == 0xFF else medium)


def secondary_text(mask: SecondaryAddressMask) -> str:
    """The 16-hex-digit text form of :func:`parse_secondary`."""
    return mask.identification.upper() + mask.to_bytes()[4:].hex().upper()


def narrower(mask: SecondaryAddressMask) -> list[SecondaryAddressMask]:
    """The masks that split ``mask`` when several meters match it: the leftmost wildcard
    digit of the identification set to 0..9; once the identification is complete (meters
    of different manufacturers may share one), each medium 0..254, then each version
    (those bytes have no partial wildcard; 0xFF means "any"). Empty when nothing is left
    to narrow."""
    ident = mask.identification.upper()
    position = ident.find("F")
    if position >= 0:
        return [replace(mask, identification=ident[:position] + str(digit) + ident[position + 1:])
                for digit in range(10)]
    if mask.medium is None:
        return [replace(mask, medium=medium) for medium in range(0xFF)]
    if mask.version is None:
        return [replace(mask, version=version) for version in range(0xFF)]
    return []


def address_of(response: Response) -> SecondaryAddressMask:
    """The secondary address a response carries: the long header of a variable data
    structure, the identification alone of a fixed one."""
    if isinstance(response, VariableDataResponse) and response.header.identification is not None:
        head = response.header
        return SecondaryAddressMask(head.identification, head.manufacturer, head.version, head.medium)
    if isinstance(response, FixedDataResponse):
        return SecondaryAddressMask(response.identification)
    raise MBusFrameError("the reply carries no secondary address (no long header)", offset=CI_OFFSET,
                         field="CI")


@dataclass(frozen=True, slots=True)
class FoundMeter:
    """A meter found by a scan: its primary address (the A field of its reply; 0 =
    unconfigured), its secondary address, and the reply that told us."""

    primary: int
    secondary: SecondaryAddressMask
    reply: LongFrame


@dataclass
class ScanResult:
    meters: list[FoundMeter] = field(default_factory=list)
    #: What could not be resolved: primary addresses where two meters answered at once
    #: (a configuration error), identification numbers shared by several meters.
    collisions: list[str] = field(default_factory=list)


Progress = Callable[[int, int, str], None]
"""``progress(done, total, what)``; during a secondary scan ``total`` grows as masks split."""


@dataclass(frozen=True, slots=True)
class Telegram:
    """One RSP_UD of a readout and its decoded application data."""

    frame: LongFrame
    response: VariableDataResponse | FixedDataResponse

    @property
    def raw(self) -> bytes:
        return self.frame.to_bytes()


@dataclass(frozen=True, slots=True)
class Readout:
    """Every telegram of one readout of one meter, in order."""

    address: int | SecondaryAddressMask
    telegrams: tuple[Telegram, ...]


def describe(address: int | SecondaryAddressMask) -> str:
    """``address 5`` or ``secondary address 12345678FFFFFFFF``, for messages."""
    if isinstance(address, SecondaryAddressMask):
        return f"secondary address {secondary_text(address)}"
    return f"address {address}"


class MBusMaster:
    """The master of one wired M-Bus.

    ``MBusMaster(transport, line, extra_timeout_ms=0, retries=2)``. Each public coroutine
    is one transaction and holds the port (``transport.claim``) throughout, so a
    selection, its readout and the deselection never interleave with another user of
    the port. ``counters`` (per bus): requests, frames (good frames received), errors
    (frames the link layer rejected or did not expect), retries, timeouts, collisions
    (garbled replies), garbage_bytes (bytes that were not part of a good frame).
    """

    def __init__(self, transport: Transport, line: LineSettings, *, extra_timeout_ms: int = 0,
                 retries: int = 2) -> None:
        self.transport = transport
        self.line = line
        self.timing = Timing(line, extra_timeout_ms / 1000)
        self.retries = retries
        self.counters = {name: 0 for name in ("requests", "frames", "errors", "retries", "timeouts", "collisions",
                                                  "garbage_bytes")}
        self._next_fcb: dict[int, bool] = {}
        self._line_free_at = 0.0

    # -- public transactions --------------------------------------------------------------

    async def ping(self, address: int) -> None:
        """SND_NKE → E5: reset the slave's link layer (its next FCB is 1)."""
        async with self._claim():
            await self._reset_link(address)

    async def read(self, address: int | SecondaryAddressMask) -> Readout:
        """Read a meter completely: SND_NKE (or the selection) then REQ_UD2 for every
        telegram while the last record says more follow (DIF 0x1F).

        Raises DeviceTimeout (silent after the retries), Collision (garbled replies, or a
        selection matching several meters), MeterApplicationError (CI 0x70) or
        MBusFrameError (a well-framed reply whose application data is malformed).
        """
        async with self._claim(), self._talk_to(address) as link:
            if link != ADDRESS_NETWORK_LAYER:
                await self._reset_link(link)
            telegrams = await self._read_telegrams(link, describe(address))
        return Readout(address, tuple(telegrams))

    async def set_primary_address(self, address: int | SecondaryAddressMask, new_address: int) -> None:
        """SND_UD CI 0x51 with the record ``01 7A new`` (EN 13757-3, bus address)."""
        async with self._claim(), self._talk_to(address) as link:
            await self._transact(set_primary_address(link, new_address), describe(address), expect=SingleCharacter)
            self._next_fcb.pop(link, None)

    async def scan_primary(self, progress: Progress | None = None, *, first: int = 0,
                           last: int = ADDRESS_LAST) -> ScanResult:
        """Find meters by primary address: SND_NKE to every address from ``first`` to
        ``last`` (an E5 means a meter is there, garbage that two share the address),
        then one REQ_UD2 to each meter found, to learn its secondary address.

        A ping per address, as libmbus scans, rather than a REQ_UD2 per address: the
        one-byte E5 keeps the probe of an occupied address short, and the scan resets
        every meter's link layer on the way.
        """
        result = ScanResult()
        total = last - first + 1
        for done, address in enumerate(range(first, last + 1), start=1):
            async with self._claim():
                try:
                    await self._reset_link(address)
                except DeviceTimeout:
                    pass
                except Collision:
                    result.collisions.append(f"primary address {address}: more than one meter answers")
                else:
                    found = await self._identify(address)
                    if found is not None:
                        result.meters.append(found)
            if progress:
                progress(done, total, f"address {address}")
        return result

    async def scan_secondary(self, progress: Progress | None = None, mask: SecondaryAddressMask = ANY_METER) -> ScanResult:
        """Find meters by secondary address with wildcard narrowing (EN 13757-3 annex):

        select ``mask``: silence → nobody there; one E5 and a clean reply to the REQ_UD2
        that follows → exactly one meter, whose reply tells its full address; a garbled
        reply to either → several meters: set the leftmost wildcard digit to 0..9 and
        probe each narrower mask in turn. Every meter is found exactly once.
        """
        result = ScanResult()
        pending = [mask]
        done = 0
        while pending:
            current = pending.pop(0)
            outcome, found = await self._probe(current)
            done += 1
            if outcome == "single" and found is not None:
                result.meters.append(found)
            elif outcome == "collision":
                narrowed = narrower(current)
                if not narrowed:
                    result.collisions.append(f"{describe(current)}: several meters answer to this full address")
                pending[0:0] = narrowed
            if progress:
                progress(done, done + len(pending), secondary_text(current))
        return result

    # -- link procedures (callers hold the port) ------------------------------------------

    @asynccontextmanager
    async def _talk_to(self, address: int | SecondaryAddressMask) -> AsyncIterator[int]:
        """The link address to use for ``address``: a primary address as it is; a
        secondary address selects its meter, which then answers at 253 until deselected."""
        if not isinstance(address, SecondaryAddressMask):
            yield address
            return
        await self._select(address)
        try:
            yield ADDRESS_NETWORK_LAYER
        finally:
            await self._deselect()

    async def _reset_link(self, address: int) -> None:
        await self._transact(snd_nke(address), describe(address), expect=SingleCharacter)
        # EN 13757-2 5.5: after SND_NKE the slave expects FCB = 1 in the next request.
        self._next_fcb[address] = True

    async def _select(self, mask: SecondaryAddressMask, *, probe: bool = False) -> None:
        several = f"{describe(mask)} matches more than one meter"
        try:
            await self._transact(select_secondary(mask), describe(mask), expect=SingleCharacter,
                                 retry_garbled=not probe)
        except Collision:
            raise Collision(several) from None
        await self._expect_silence(several)
        # A selection starts a new conversation with the selected slave, as SND_NKE does.
        self._next_fcb[ADDRESS_NETWORK_LAYER] = True

    async def _deselect(self) -> None:
        """SND_NKE to 253 ends the selection; a slave that misses it is deselected by the
        next selection anyway, so silence here is no error."""
        try:
            await self._exchange(snd_nke(ADDRESS_NETWORK_LAYER), expect=SingleCharacter)
        except (DeviceTimeout, Collision) as exc:
            log.debug("deselect: %s", exc)
        self._next_fcb.pop(ADDRESS_NETWORK_LAYER, None)

    async def _read_telegrams(self, address: int, name: str) -> list[Telegram]:
        telegrams: list[Telegram] = []
        while len(telegrams) < MAX_TELEGRAMS:
            frame = await self._request_data(address, name)
            telegram = Telegram(frame, _decode(frame, name))
            telegrams.append(telegram)
            if not (isinstance(telegram.response, VariableDataResponse) and telegram.response.more_records_follow):
                return telegrams
        log.warning("meter at %s: stopped after %d telegrams that all said more follow", name, MAX_TELEGRAMS)
        return telegrams

    async def _request_data(self, address: int, name: str, *, retry_garbled: bool = True) -> LongFrame:
        """REQ_UD2 with the slave's current FCB, which toggles once the reply is good
        (a repeat after a timeout keeps it, so the slave repeats rather than skips)."""
        fcb = self._next_fcb.get(address, True)
        frame = await self._transact(req_ud2(address, fcb=fcb), name, expect=LongFrame, retry_garbled=retry_garbled)
        self._next_fcb[address] = not fcb
        return frame  # type: ignore[return-value]

    async def _identify(self, address: int) -> FoundMeter | None:
        """One REQ_UD2 after a scan's ping; None if the meter's answer tells nothing."""
        try:
            frame = await self._request_data(address, describe(address))
            return FoundMeter(frame.a, address_of(_decode(frame, describe(address))), frame)
        except (TransportError, MBusFrameError, MeterApplicationError) as exc:
            log.info("scan: meter at address %d answered SND_NKE, but its data tell no address: %s", address, exc)
            return None

    async def _probe(self, mask: SecondaryAddressMask) -> tuple[Literal["nothing", "single", "collision"], FoundMeter | None]:
        async with self._claim():
            try:
                await self._select(mask, probe=True)
            except DeviceTimeout:
                return "nothing", None
            except Collision:
                return "collision", None
            try:
                frame = await self._request_data(ADDRESS_NETWORK_LAYER, describe(mask), retry_garbled=False)
                await self._expect_silence(f"{describe(mask)} matches more than one meter")
                return "single", FoundMeter(frame.a, address_of(_decode(frame, describe(mask))), frame)
            except (Collision, MBusFrameError) as exc:
                # A frame that passes the link layer but makes no sense above it is most
                # likely two replies AND-ed into a valid checksum: narrow further.
                log.debug("scan: %s: %s", describe(mask), exc)
                return "collision", None
            except DeviceTimeout:
                return "nothing", None
            except MeterApplicationError as exc:
                log.warning("scan: the meter matching %s answers with an error, not its address: %s",
                            describe(mask), exc)
                return "nothing", None
            finally:
                await self._deselect()

    @asynccontextmanager
    async def _claim(self) -> AsyncIterator[None]:
        """Hold the port; what was waiting on the line when we got it is garbage."""
        discarded = self.transport.bytes_discarded
        async with self.transport.claim(self.line):
            self.counters["garbage_bytes"] += self.transport.bytes_discarded - discarded
            yield

    # -- one request, its reply, retries --------------------------------------------------

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
            frame = await self._receive(request)
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

    async def _receive(self, request: bytes) -> Frame:
        """The first good frame that answers ``request``. Skipped: the request itself
        echoed by a level converter, and an RSP_UD from another primary address (a late
        reply meant for an earlier request); after either the reply window starts again."""
        parser = LinkParser()
        deadline = self._now() + self.timing.reply_timeout(len(request))
        address = request[2] if request[0] == SHORT_START else request[5]
        while True:
            try:
                frame = parser.next_frame()
            except MBusFrameError as exc:
                self.counters["errors"] += 1
                self.counters["garbage_bytes"] += parser.skipped_bytes + parser.buffered
                await self._wait_for_quiet()
                raise Collision(str(exc)) from None
            if frame is not None:
                echo = frame.to_bytes() == request
                stray = isinstance(frame, LongFrame) and address <= ADDRESS_LAST and frame.a != address
                if echo or stray:
                    self.counters["garbage_bytes"] += 0 if echo else len(frame.to_bytes())
                    deadline = self._now() + self.timing.reply_timeout(0)
                    continue
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


def _decode(frame: LongFrame, name: str) -> VariableDataResponse | FixedDataResponse:
    """The application data of an RSP_UD; an application error (CI 0x70) is raised."""
    response = decode_user_data(frame.user_data, offset=CI_OFFSET)
    if isinstance(response, ApplicationErrorResponse):
        raise MeterApplicationError(f"meter at {name} reports an application error: {response.text}")
    return response
