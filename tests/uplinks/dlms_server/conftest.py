"""Fixtures of the DLMS server tests: readings of a few meters in a real Store, the server
running on a free loopback port, and the gateway's own client association over the wrapper
(the independent clients live in the interop tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from gateway.codecs.dlms.association import (
    Authentication,
    ClientAssociation,
    ClientSettings,
    NextRequest,
    SecuritySettings,
)
from gateway.codecs.dlms.link_events import ApduReceived
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import MemoryInvocationCounters, SecurityKeys
from gateway.codecs.dlms.services import AttributeDescriptor
from gateway.codecs.dlms.wrapper import WrapperConnection
from gateway.config import DlmsUplink
from gateway.model import Event, Reading, Severity
from gateway.store import Store
from gateway.uplinks.dlms_server import DEMO_KEYS, DlmsServer

KEYS = DEMO_KEYS
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")
GATEWAY = "demo-gw-1"
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
HEAT = "KAM-12345678-1b-04"
WATER = "dlms-WAT0000000042"
MANAGEMENT, PUBLIC = 1, 16

NAME = AttributeDescriptor(1, Obis(0, 0, 42, 0, 0), 2)
SAP_LIST = AttributeDescriptor(17, Obis(0, 0, 41, 0, 0), 2)
CLOCK = AttributeDescriptor(8, Obis(0, 0, 1, 0, 0), 2)
PROFILE = Obis(0, 0, 99, 1, 0)
EVENT_LOG = Obis(0, 0, 99, 98, 0)
PUSH_SETUP = Obis(0, 0, 25, 9, 0)
ENERGY = AttributeDescriptor(3, Obis(6, 0, 1, 0, 0), 2)


def heat_readings(captures: int, start: int = 0, device: str = HEAT) -> list[Reading]:
    """A heat meter read every 15 minutes: energy (kWh, three decimals, its OBIS code),
    volume (m^3, no OBIS code), flow temperature (°C, one decimal) and its fabrication
    number (text)."""
    out = []
    for n in range(start, start + captures):
        at = T0 + timedelta(minutes=15 * n)
        out += [
            Reading(device, "energy", Decimal(123456 + 7 * n).scaleb(-3), "kWh", at, obis="6-0:1.0.0*255"),
            Reading(device, "volume", Decimal(1000 + n).scaleb(-2), "m^3", at),
            Reading(device, "flow temperature", Decimal(550 + n % 10).scaleb(-1), "°C", at),
            Reading(device, "fabrication number", "F-0042", None, at),
        ]
    return out


def water_readings(count: int) -> list[Reading]:
    return [Reading(WATER, "volume", Decimal(50 + n), "m^3", T0 + timedelta(hours=n), obis="8-0:1.0.0*255")
            for n in range(count)]


def gateway_event(code: str = "comm.timeout", n: int = 0) -> Event:
    return Event(code=code, severity=Severity.WARNING, message=f"meter did not answer ({n})",
                 occurred_at=T0 + timedelta(minutes=n), device=HEAT, source="bus1")


@contextlib.asynccontextmanager
async def serving(store: Store, *, keys: SecurityKeys | None = KEYS, clock=None,
                  **settings: Any) -> AsyncIterator[DlmsServer]:
    """A DlmsServer on a free loopback port, running until the block ends."""
    options = {"clock": clock} if clock else {}
    server = DlmsServer(DlmsUplink(port=0, **settings), gateway_id=GATEWAY, store=store, keys=keys, **options)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(server.run())
        async with asyncio.timeout(10):
            await server.listening.wait()
        try:
            yield server
        finally:
            task.cancel()


def management_settings(keys: SecurityKeys = KEYS, **options: Any) -> ClientSettings:
    return ClientSettings(Authentication.HIGH_GMAC, ciphered=True,
                          security=SecuritySettings(options.pop("title", CLIENT_TITLE), keys), **options)


class Client:
    """The gateway's own client association over the wrapper, on asyncio streams."""

    def __init__(self, port: int, server_sap: int = MANAGEMENT, client_sap: int = MANAGEMENT,
                 settings: ClientSettings | None = None, counter: int = 1, title: bytes = CLIENT_TITLE) -> None:
        self.port = port
        self.link = WrapperConnection(client_wport=client_sap, server_wport=server_sap)
        if settings is None:
            settings = management_settings(title=title) if client_sap == MANAGEMENT else ClientSettings()
        self.counters = MemoryInvocationCounters(outgoing={title: counter})
        self.association = ClientAssociation(settings, self.counters)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Client:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def exchange(self, apdu: bytes, timeout: float = 10.0) -> bytes:
        """Send one APDU, return the APDU that answers it (raw)."""
        self.writer.write(self.link.send_apdu(apdu))
        async with asyncio.timeout(timeout):
            while True:
                event = self.link.next_event()
                if isinstance(event, ApduReceived):
                    return event.apdu
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                self.link.receive_data(data)

    async def run(self, apdu: bytes):
        """Drive the association to its final event (blocks, HLS pass 3)."""
        while True:
            event = self.association.receive_apdu(await self.exchange(apdu))
            if not isinstance(event, NextRequest):
                return event
            apdu = event.apdu

    async def associate(self):
        return await self.run(self.association.send_aarq())

    async def get(self, attribute: AttributeDescriptor, access=None):
        return (await self.run(self.association.send_get(attribute, access))).result

    async def set(self, attribute: AttributeDescriptor, value):
        return (await self.run(self.association.send_set(attribute, value))).result

    async def act(self, method, parameters=None):
        return await self.run(self.association.send_action(method, parameters))


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    from gateway.config import StoreSection

    async with Store(tmp_path / "store.sqlite", StoreSection()) as opened:
        yield opened
