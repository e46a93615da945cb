"""A simulated battery-powered DLMS/COSEM gas sensor that pushes: every ``interval_s`` it
connects, sends one DataNotification (general-glo-ciphering with its keys and system
title, its invocation counter counting up) through the IEC 62056-47 wrapper, and
disconnects, as a sensor on a radio modem does. Its push object list: the push setup's
name, the gas volume (7-0:3.0.0, a register: value and scaler_unit) and the gas temperature
(7-0:41.0.0, likewise)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

from gateway.codecs.dlms.axdr import Data, DataType, octet_string, structure
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import SecurityKeys, cipher_apdu
from gateway.codecs.dlms.services import DataNotification
from gateway.codecs.dlms.units import ScalerUnit
from gateway.codecs.dlms.wrapper import WrapperMessage

PUSH_SETUP = Obis(0, 0, 25, 9, 0, 255)
OBJECTS = ["0.0.25.9.0.255:40:1", "7.0.3.0.0.255:3:2", "7.0.3.0.0.255:3:3", "7.0.41.0.0.255:3:2",
           "7.0.41.0.0.255:3:3"]
VOLUME_SCALER = ScalerUnit(-3, 14)  # m^3, thousandths
TEMPERATURE_SCALER = ScalerUnit(-2, 9)  # °C, hundredths


@dataclass
class PushSensor:
    title: bytes
    keys: SecurityKeys = field(repr=False)
    interval_s: float = 0.3
    volume_milli: int = 4_711_000
    step_milli: int = 25
    counter: int = 0
    muted: bool = False
    sent: list[bytes] = field(default_factory=list)

    def volume_at(self, count: int) -> Decimal:
        return Decimal(self.volume_milli + self.step_milli * count).scaleb(-3)

    def notification(self) -> bytes:
        self.counter += 1
        body = structure(octet_string(PUSH_SETUP.to_bytes()),
                         Data(DataType.DOUBLE_LONG_UNSIGNED, self.volume_milli + self.step_milli * self.counter),
                         VOLUME_SCALER.to_data(), Data(DataType.LONG, 1234), TEMPERATURE_SCALER.to_data())
        plain = DataNotification(self.counter & 0xFFFFFF, body,
                                 CosemDateTime.from_datetime(datetime.now(timezone.utc).replace(microsecond=0))).to_bytes()
        return cipher_apdu(plain, keys=self.keys, system_title=self.title, invocation_counter=self.counter,
                           general=True).to_bytes()

    def rekey(self, keys: SecurityKeys) -> None:
        """New keys (given on site): its invocation counter starts again under them."""
        self.keys, self.counter = keys, 0


async def send(port: int, apdu: bytes) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False  # the gateway is not listening (reconfiguring): the push is lost, as on the air
    try:
        writer.write(WrapperMessage(1, 1, apdu).to_bytes())
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def pushing(sensor: PushSensor, port: int) -> AsyncIterator[PushSensor]:
    async def loop() -> None:
        while True:
            await asyncio.sleep(sensor.interval_s)
            if not sensor.muted:
                apdu = sensor.notification()
                if await send(port, apdu):
                    sensor.sent.append(apdu)

    task = asyncio.ensure_future(loop())
    try:
        yield sensor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
