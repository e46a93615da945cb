"""One open wireless M-Bus radio dongle: its initialisation and the telegrams it hears.

:class:`DongleSession` puts one of the codec's sans-IO framings
(:mod:`gateway.codecs.mbus.dongles`) on an open :class:`~gateway.transports.Transport`.
:meth:`~DongleSession.initialise` sends what the dongle needs to receive in the configured
mode and waits (bounded) for each answer:

* IMST iM871A: ``GET_DEVICEINFO`` (module and firmware, for the status), then ``SET_CONFIG``
  in RAM (link mode, RSSI attached to every telegram); the response's status byte must be 0.
* Amber AMB8465: ``CMD_GET_REQ`` of ``UART_CMD_Out_Enable`` and ``RSSI_Enable`` (how the
  module frames telegrams: command frames or transparent, with or without the RSSI byte;
  these are the user's non-volatile settings, read and never written), then
  ``CMD_SET_MODE_REQ`` (volatile); the confirmation's status byte must be 0.
* CUL with culfw: ``V`` (the version line), ``X21`` (append LQI and RSSI; culfw does not
  answer it), then ``brt``/``brc``/``brs``, answered ``TMODE``/``CMODE``/``SMODE``.

Telegrams that arrive meanwhile are kept, not lost. :meth:`~DongleSession.receive` returns
the telegrams heard; frames the framing rejects are counted in the shared ``counters``
(``crc_errors`` for a failed checksum or CRC, ``frame_errors`` otherwise) along with
``garbage_bytes`` (bytes that were no part of a message) and ``bytes`` received.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.codecs.mbus.dongles import ReceivedTelegram, StreamAdapter
from gateway.codecs.mbus.dongles import amber, imst
from gateway.codecs.mbus.dongles.amber import AmberAdapter, AmberConfirm
from gateway.codecs.mbus.dongles.cul import CulAdapter, CulText
from gateway.codecs.mbus.dongles.imst import HciMessage, ImstDeviceInfo, ImstHci
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.wireless_link import LinkMode
from gateway.errors import DeviceTimeout, TransportError
from gateway.transports import LineSettings, Transport

log = logging.getLogger(__name__)

#: How long a dongle may take to answer one initialisation command.
ANSWER_TIMEOUT_S = 2.0
#: Every dongle's serial line is 8 data bits, no parity, one stop bit.
DONGLE_FRAMING = "8N1"
ADAPTERS: dict[str, Callable[[], StreamAdapter]] = {"imst": ImstHci, "amber": AmberAdapter, "cul": CulAdapter}
#: Checksum fields of the framings and of the link layer: their failure is a CRC error.
CHECK_FIELDS = frozenset({"CRC", "CS"})
COUNTERS = ("bytes", "garbage_bytes", "crc_errors", "frame_errors")


def dongle_line(baud: int) -> LineSettings:
    return LineSettings.parse(baud, DONGLE_FRAMING)


def count_frame_error(counters: dict[str, int], exc: MBusFrameError) -> None:
    name = "crc_errors" if exc.field in CHECK_FIELDS else "frame_errors"
    counters[name] = counters.get(name, 0) + 1


class DongleSession:
    """A dongle on an open transport (see the module docstring).

    ``modes`` are the codec's link-mode names (``("T1",)``, ``("C1", "T1")``); ``counters``
    is updated in place so that it outlives the session (a reopened dongle keeps counting).
    ``info`` holds what the dongle said about itself (module, firmware, version).
    """

    def __init__(self, transport: Transport, dongle: str, modes: tuple[str, ...],
                 counters: dict[str, int] | None = None, *, answer_timeout_s: float = ANSWER_TIMEOUT_S) -> None:
        self.transport = transport
        self.dongle = dongle
        self.modes = tuple(LinkMode(mode) for mode in modes)
        self.adapter = ADAPTERS[dongle]()
        self.counters = counters if counters is not None else {}
        for name in COUNTERS:
            self.counters.setdefault(name, 0)
        self.info: dict[str, str] = {}
        self.answer_timeout_s = answer_timeout_s
        self._telegrams: deque[ReceivedTelegram] = deque()
        self._answers: deque[Any] = deque()
        self._skipped = 0

    # -- initialisation ---------------------------------------------------------------------

    async def initialise(self) -> None:
        """Set the dongle to receive; raises TransportError when it does not answer or refuses."""
        await {"imst": self._initialise_imst, "amber": self._initialise_amber, "cul": self._initialise_cul}[self.dongle]()
        log.info("%s: %s dongle receiving %s (%s)", self.transport.description, self.dongle,
                 "+".join(mode.value for mode in self.modes), ", ".join(f"{k} {v}" for k, v in self.info.items()))

    async def _initialise_imst(self) -> None:
        info = await self._ask(ImstHci.command_get_device_info(), lambda e: isinstance(e, ImstDeviceInfo),
                               "GET_DEVICEINFO")
        self.info.update(module=info.module, firmware=f"0x{info.firmware_version:02X}")
        answer = await self._ask(ImstHci.command_set_link_mode(*self.modes), _imst_set_config_response, "SET_CONFIG")
        _require_ok(answer.payload, f"{info.module} refused link mode {self._mode_text}")

    async def _initialise_amber(self) -> None:
        values = {}
        for parameter in (amber.PARAM_UART_CMD_OUT_ENABLE, amber.PARAM_RSSI_ENABLE):
            answer = await self._ask(AmberAdapter.command_get_parameter(parameter), _amber_parameter(parameter),
                                     f"CMD_GET_REQ 0x{parameter:02X}")
            values[parameter] = answer.payload[2] if len(answer.payload) > 2 else 0
        adapter = self.adapter
        assert isinstance(adapter, AmberAdapter)
        adapter.rssi = values[amber.PARAM_RSSI_ENABLE] != 0
        adapter.transparent = values[amber.PARAM_UART_CMD_OUT_ENABLE] == 0
        self.info.update(output="transparent" if adapter.transparent else "command frames",
                         rssi="on" if adapter.rssi else "off")
        answer = await self._ask(AmberAdapter.command_set_link_mode(*self.modes),
                                 _amber_confirm(amber.CMD_SET_MODE_REQ), "CMD_SET_MODE_REQ")
        _require_ok(answer.payload, f"AMB8465 refused link mode {self._mode_text}")

    async def _initialise_cul(self) -> None:
        version = await self._ask(CulAdapter.command_version(), lambda e: isinstance(e, CulText) and e.text[:1] == "V",
                                  "V (version)")
        self.info.update(version=version.text.removeprefix("V").strip())
        await self.transport.write(CulAdapter.command_report_rssi(True))
        (mode,) = self.modes
        await self._ask(CulAdapter.command_set_link_mode(mode), lambda e: isinstance(e, CulText) and e.mode is mode,
                        f"{CulAdapter.command_set_link_mode(mode).decode().strip()}")

    @property
    def _mode_text(self) -> str:
        return "+".join(mode.value for mode in self.modes)

    async def _ask(self, command: bytes, accept: Callable[[Any], bool], what: str) -> Any:
        """Send ``command`` and return the first answer ``accept`` takes; other answers are
        dropped, telegrams kept for :meth:`receive`."""
        await self.transport.write(command)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_timeout_s
        while True:
            while self._answers:
                answer = self._answers.popleft()
                if accept(answer):
                    return answer
                log.debug("%s: ignored %r while waiting for the answer to %s", self.transport.description, answer, what)
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise DeviceTimeout("no time left")
                self._feed(await self.transport.read(timeout_s=remaining))
            except DeviceTimeout:
                raise TransportError(f"{self.transport.description}: the {self.dongle} dongle did not answer {what} "
                                     f"within {self.answer_timeout_s:g} s (is the dongle really {self.dongle}, at the "
                                     f"right baud rate?)") from None

    # -- receiving ----------------------------------------------------------------------------

    async def receive(self, timeout_s: float) -> list[ReceivedTelegram]:
        """The telegrams heard so far, waiting at most ``timeout_s`` for bytes when there
        are none; an empty list when the dongle stayed silent."""
        if not self._telegrams:
            try:
                self._feed(await self.transport.read(timeout_s=timeout_s))
            except DeviceTimeout:
                return []
        telegrams = list(self._telegrams)
        self._telegrams.clear()
        return telegrams

    def _feed(self, data: bytes) -> None:
        adapter = self.adapter
        self.counters["bytes"] += len(data)
        adapter.receive_data(data)
        while True:
            try:
                event = adapter.next_event()
            except MBusFrameError as exc:
                count_frame_error(self.counters, exc)
                log.debug("%s: %s", self.transport.description, exc)
                continue
            if event is None:
                break
            if isinstance(event, ReceivedTelegram):
                self._telegrams.append(event)
            else:
                self._answers.append(event)
        self.counters["garbage_bytes"] += adapter.skipped_bytes - self._skipped
        self._skipped = adapter.skipped_bytes


def _imst_set_config_response(event: Any) -> bool:
    return isinstance(event, HciMessage) and (event.endpoint, event.message_id) == (imst.DEVMGMT, imst.SET_CONFIG_RSP)


def _amber_confirm(command: int) -> Callable[[Any], bool]:
    return lambda event: isinstance(event, AmberConfirm) and event.command == command | amber.CONFIRM


def _amber_parameter(parameter: int) -> Callable[[Any], bool]:
    """CMD_GET_CNF of one parameter: memory position, byte count, values."""
    confirm = _amber_confirm(amber.CMD_GET_REQ)
    return lambda event: confirm(event) and event.payload[:1] == bytes([parameter])


def _require_ok(payload: bytes, refusal: str) -> None:
    """A confirmation's status byte: 0 is success (IMST HCI and Amber alike)."""
    if payload[:1] != b"\x00":
        status = f"0x{payload[0]:02X}" if payload else "none"
        raise TransportError(f"{refusal} (status {status})")
