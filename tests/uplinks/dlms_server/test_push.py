"""Pushes to a test HES listener that deciphers with dlms-cosem (an independent
implementation): every record arrives, in order, ciphered with the management keys; after the
listener was down for a while, pushes resume from the cursor without loss."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from decimal import Decimal

from dlms_cosem import dlms_data as theirs
from dlms_cosem import security as their_security
from dlms_cosem.dlms_data import DlmsDataParser
from dlms_cosem.protocol.xdlms import DataNotification as TheirDataNotification
from dlms_cosem.protocol.xdlms.general_global_cipher import GeneralGlobalCipher

from gateway.codecs.dlms.axdr import Data, DataType, structure
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.services import AttributeDescriptor, DataAccessResult, MethodDescriptor
from gateway.codecs.dlms.wrapper import WrapperParser
from gateway.config import DlmsPush
from tests.uplinks.conftest import eventually
from tests.uplinks.dlms_server.conftest import (
    KEYS,
    PUSH_SETUP,
    Client,
    gateway_event,
    heat_readings,
    serving,
)


class Listener:
    """An HES push listener: collects the DataNotifications, deciphered by dlms-cosem."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.notifications: list[TheirDataNotification] = []
        self.wports: set[tuple[int, int]] = set()
        self.titles: set[bytes] = set()
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        parser = WrapperParser()
        while data := await reader.read(65536):
            parser.receive_data(data)
            while (message := parser.next_message()) is not None:
                self.wports.add((message.source, message.destination))
                self.notifications.append(self._decipher(message.apdu))

    def _decipher(self, apdu: bytes) -> TheirDataNotification:
        ciphered = GeneralGlobalCipher.from_bytes(apdu)
        self.titles.add(bytes(ciphered.system_title))
        plain = their_security.decrypt(ciphered.security_control, ciphered.system_title,
                                       ciphered.invocation_counter, KEYS.encryption_key, ciphered.ciphered_text,
                                       KEYS.authentication_key)
        return TheirDataNotification.from_bytes(plain)

    def records(self) -> list[list]:
        out = []
        for notification in self.notifications:
            push_setup, name, records = DlmsDataParser().parse(bytes(notification.body))[0].value
            assert bytes(push_setup.value) == Obis(0, 0, 25, 9, 0).to_bytes() and bytes(name.value) == b"demogw1"
            out += [plain(record) for record in records.value]
        return out

    def seqs(self) -> list[int]:
        return [record[0] for record in self.records()]


def plain(value):
    """dlms-cosem's parsed Data as Python values (lists, bytes, ints, str, None)."""
    if isinstance(value, (theirs.DataArray, theirs.DataStructure)):
        return [plain(item) for item in value.value]
    if isinstance(value, theirs.NullData):
        return None
    raw = value.value
    return bytes(raw) if isinstance(raw, (bytes, bytearray)) else raw


@contextlib.asynccontextmanager
async def listening(port: int = 0) -> AsyncIterator[Listener]:
    listener = Listener(port)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_records_are_pushed_ciphered_in_order_and_equal_to_the_store(store) -> None:
    await store.append(heat_readings(30))
    await store.append([gateway_event("tamper.alarm")])
    async with listening() as hes:
        push = DlmsPush(destination=f"127.0.0.1:{hes.port}", interval_s=0, batch_size=25)
        async with serving(store, push=push.model_dump()) as server:
            await eventually(lambda: hes.seqs() == list(range(1, 122)))
            assert await store.cursor("dlms") == 121
            assert server.status()["push"]["pending"] == 0
    records = hes.records()
    assert len(hes.notifications) >= 5 and hes.wports == {(1, 1)} and hes.titles == {server.system_title}
    energy = records[0]
    assert energy[2:] == [16, Obis(6, 0, 1, 0, 0).to_bytes(), 123456, [0, 30]]  # 123.456 kWh = 123456 Wh
    volume = records[1]
    assert volume[3:] == [Obis(0, 0, 128, 0, 0).to_bytes(), 1000, [-2, 13]]
    alarm = records[-1]
    assert alarm[2:] == [16, Obis(0, 0, 99, 98, 0).to_bytes(), ["tamper.alarm", "warning", "meter did not answer (0)"],
                         None]
    assert [n.long_invoke_id_and_priority.long_invoke_id for n in hes.notifications][:2] == [1, 26]


async def test_pushes_resume_from_the_cursor_after_the_hes_was_away(store) -> None:
    port = free_port()
    await store.append(heat_readings(5))
    push = DlmsPush(destination=f"127.0.0.1:{port}", interval_s=1, on_event=True, retries=1, retry_delay_s=0)
    async with serving(store, push=push.model_dump()) as server:
        async with listening(port) as hes:
            await eventually(lambda: hes.seqs() == list(range(1, 21)))
        first = list(hes.seqs())
        await store.append(heat_readings(5, start=5))
        await store.append([gateway_event("comm.timeout")])  # an event: a push is tried at once, and fails
        await eventually(lambda: server.status()["push"]["failures"] >= 2)
        assert await store.cursor("dlms") == 20
        await store.append(heat_readings(5, start=10))
        async with listening(port) as again:
            await eventually(lambda: again.seqs()[-1:] == [61])
    assert first + again.seqs() == list(range(1, 62))  # nothing lost, nothing twice
    assert await store.cursor("dlms") == 61


async def test_the_hes_can_trigger_a_push_and_move_the_destination(store) -> None:
    await store.append(heat_readings(2))
    async with listening() as hes, listening() as other:
        push = DlmsPush(destination=f"127.0.0.1:{hes.port}", interval_s=0, on_event=False)
        async with serving(store, push=push.model_dump()) as server, Client(server.port) as client:
            await client.associate()
            await eventually(lambda: hes.seqs() == list(range(1, 9)))  # what waited at start
            destination = AttributeDescriptor(40, PUSH_SETUP, 3)
            moved = structure(Data(DataType.ENUM, 0), Data(DataType.OCTET_STRING, f"127.0.0.1:{other.port}".encode()),
                              Data(DataType.ENUM, 0))
            assert await client.set(destination, Data(DataType.UNSIGNED, 3)) == DataAccessResult(12)
            assert await client.set(destination, moved) == DataAccessResult(0)
            assert await client.get(destination) == moved
            await store.append(heat_readings(1, start=2))
            pending = await client.get(AttributeDescriptor(1, Obis(0, 0, 129, 2, 0), 2))
            assert [record.value[0].value for record in pending.value] == [9, 10, 11, 12]
            outcome = await client.act(MethodDescriptor(40, PUSH_SETUP, 1), Data(DataType.INTEGER, 0))
            assert outcome.result.success
            await eventually(lambda: other.seqs() == [9, 10, 11, 12])
        async with serving(store, push=push.model_dump()) as server:  # the change survives a restart
            assert server.pusher.settings.destination == f"127.0.0.1:{other.port}"
    assert hes.seqs() == list(range(1, 9))


def test_a_plaintext_push_is_refused_to_anything_but_loopback() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unencrypted"):
        DlmsPush(destination="192.0.2.1:4059", security="none")
    assert DlmsPush(destination="127.0.0.1:4059", security="none").port == 4059
    assert Decimal(1)  # (the numbers above are exact by construction)


async def test_a_value_too_large_for_a_notification_goes_without_it(store) -> None:
    from gateway.model import Reading
    from tests.uplinks.dlms_server.conftest import HEAT, T0

    await store.append([Reading(HEAT, "dump", bytes(70_000), None, T0), *heat_readings(1)])
    async with listening() as hes:
        push = DlmsPush(destination=f"127.0.0.1:{hes.port}", interval_s=0)
        async with serving(store, push=push.model_dump()):
            await eventually(lambda: hes.seqs() == [1, 2, 3, 4, 5])
    assert hes.records()[0][4] is None and hes.records()[1][4] == 123456
