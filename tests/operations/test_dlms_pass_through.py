"""An HES's SET and ACTION on a meter's logical device of the gateway's DLMS/COSEM server are
carried out on the real (simulated) meter and answered with the meter's own result: each
named operation's requests with the gateway's own client association, a SET and an ACTION
with dlms-cosem's client; a meter that cannot be
reached is temporary-failure within the bounded wait, queued or not as configured; refusals
are read-write-denied and security events."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import pytest
import structlog
from dlms_cosem import cosem as their_cosem
from dlms_cosem import enumerations as their_enums
from dlms_cosem import security as their_security
from dlms_cosem.client import DlmsClient
from dlms_cosem.cosem.obis import Obis as TheirObis

from gateway.codecs.dlms.association import ActionOutcome, Associated
from gateway.codecs.dlms.axdr import Data, DataType, octet_string, structure
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.services import AttributeDescriptor, MethodDescriptor
from gateway.operations.named import build
from gateway.simulators.dlms import ControlState, ImageStatus, SimulatedDlmsMeter
from tests.operations.e2e import running_gateway
from tests.operations.helpers import SIM_DEVICE, events_of
from tests.uplinks.dlms_server.conftest import KEYS, Client
from tests.uplinks.dlms_server.test_interop import WrapperTransport

pytestmark = pytest.mark.integration
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

DISCONNECT = Obis(0, 0, 96, 3, 10)
LIMITER = Obis(0, 0, 17, 0, 0)
MESSAGE = Obis(0, 0, 96, 13, 0)
IMAGE = Obis(0, 0, 44, 0, 0)
CALENDAR = Obis(0, 0, 13, 0, 0)
CLOCK = Obis(0, 0, 1, 0, 0)
NO_PARAMETERS = Data(DataType.INTEGER, 0)
PERMITTED = """
[[operations.permissions]]
identity = "dlms:1"
operations = ["disconnect", "reconnect", "limiter", "firmware"]
"""


async def meter_sap(g) -> int:
    """Read the meter once (so the server has its logical device) and find its SAP."""
    await g.gateway.read_now("m1")
    server = g.dlms_server
    async with asyncio.timeout(20):
        while server.registry.meter_of(SIM_DEVICE) is None:
            await asyncio.sleep(0.05)
    return server.registry.meter_of(SIM_DEVICE).sap


async def test_every_named_operation_done_by_a_dlms_client_through_the_gateway_reaches_the_meter(tmp_path):
    everything = '[[operations.permissions]]\nidentity = "dlms:1"\noperations = ["*"]\n'
    image = bytes(range(150))
    async with running_gateway(tmp_path, None, SimulatedDlmsMeter(clock_offset_s=-900), operations=everything) as g:
        sap = await meter_sap(g)
        async with Client(g.dlms_server.port, sap, counter=10) as hes:
            await hes.associate()

            async def act(class_id, obis, method, parameters=NO_PARAMETERS) -> int:
                return (await hes.act(MethodDescriptor(class_id, obis, method), parameters)).result.code

            async def write(class_id, obis, attribute, value) -> int:
                return (await hes.set(AttributeDescriptor(class_id, obis, attribute), value)).code

            assert await act(70, DISCONNECT, 1) == 0 and not g.meter.disconnect.output_state      # disconnect
            assert await act(70, DISCONNECT, 2) == 0 and g.meter.disconnect.output_state          # reconnect
            assert await write(71, LIMITER, 5, Data(DataType.DOUBLE_LONG_UNSIGNED, 3000)) == 0    # limiter
            calendar = build("calendar", {"name": "hes", "seasons": [], "weeks": [], "days": [],
                                          "activate_at": "now"})[0]
            for step in calendar[:-1]:                                                            # calendar
                assert await write(20, CALENDAR, step.index, step.data) == 0
            assert await act(20, CALENDAR, 1) == 0 and g.meter.calendar.active[2].value == b"hes"
            now = CosemDateTime.from_datetime(datetime.now(timezone.utc))                          # clock-set
            assert await write(8, CLOCK, 2, octet_string(now.to_bytes())) == 0
            assert abs(g.meter.clock_offset_s) < 2
            assert await write(1, MESSAGE, 2, octet_string(b"pay now")) == 0                      # message
            assert g.meter.message.get(2).value == b"pay now"
            initiate = structure(octet_string(b"FW-HES"), Data(DataType.DOUBLE_LONG_UNSIGNED, len(image)))
            assert await act(18, IMAGE, 1, initiate) == 0                                         # firmware
            for number in range(3):
                block = structure(Data(DataType.DOUBLE_LONG_UNSIGNED, number),
                                  octet_string(image[number * 64:(number + 1) * 64]))
                assert await act(18, IMAGE, 2, block) == 0
            assert await act(18, IMAGE, 3) == 0 and await act(18, IMAGE, 4) == 0
            assert g.meter.firmware == b"FW-HES" and g.meter.firmware_image == image
        results = [(e.details["operation"], e.details["outcome"])
                   for e in await events_of(g.gateway.store, "operation.result")]
        assert results == [("disconnect", "success"), ("reconnect", "success"), ("limiter", "success"),
                           *[("calendar", "success")] * 5, ("clock-set", "success"), ("set", "success"),
                           *[("firmware", "success")] * 6]


async def test_the_meters_refusals_unreachability_and_permissions_come_back_as_result_codes(tmp_path):
    async with running_gateway(tmp_path, None, operations=PERMITTED, relay={"dlms_wait_s": 1}) as g:
        sap = await meter_sap(g)
        async with Client(g.dlms_server.port, sap, counter=10) as hes:
            assert isinstance(await hes.associate(), Associated)
            outcome = await hes.act(MethodDescriptor(70, DISCONNECT, 1), NO_PARAMETERS)
            assert isinstance(outcome, ActionOutcome) and outcome.result.code == 0
            assert g.meter.disconnect.state is ControlState.DISCONNECTED
            # the meter's own refusals come back as they are
            assert (await hes.set(AttributeDescriptor(71, LIMITER, 4), Data(DataType.LONG_UNSIGNED, 900))).code == 0
            assert g.meter.limiter.values[4] == Data(DataType.LONG_UNSIGNED, 900)
            assert (await hes.set(AttributeDescriptor(71, LIMITER, 4), Data(DataType.BOOLEAN, True))).code == 12
            outcome = await hes.act(MethodDescriptor(18, IMAGE, 4), NO_PARAMETERS)  # activate, nothing verified
            assert outcome.result.code == 250 and g.meter.image.status is ImageStatus.NOT_INITIATED
            # not permitted: a generic SET of the message text
            assert (await hes.set(AttributeDescriptor(1, MESSAGE, 2), Data(DataType.OCTET_STRING, b"x"))).code == 3
            assert g.meter.message.get(2).value == b""
            # the meter is down: temporary-failure within dlms_wait_s, and not carried out later
            await g.meter_server.stop()
            outcome = await hes.act(MethodDescriptor(70, DISCONNECT, 2), NO_PARAMETERS)
            assert outcome.result.code == 2
            await g.meter_server.start()
            await asyncio.sleep(1.0)
            assert g.meter.disconnect.state is ControlState.DISCONNECTED
        store = g.gateway.store
        results = [e.details for e in await events_of(store, "operation.result")]
        assert [(d["operation"], d["outcome"]) for d in results] == [
            ("disconnect", "success"), ("limiter", "success"), ("limiter", "data-access-result"),
            ("firmware", "data-access-result"), ("set", "refused"), ("reconnect", "expired")]
        assert {(d["identity"], d["source"]) for d in results} == {("dlms:1", "dlms:dlms")}
        [refusal] = [e for e in await events_of(store, "security.refused") if e.details.get("operation")]
        assert refusal.details["identity"] == "dlms:1" and refusal.details["operation"] == "set"


async def test_with_dlms_queue_an_operation_for_an_unreachable_meter_is_carried_out_later(tmp_path):
    async with running_gateway(tmp_path, None, operations=PERMITTED,
                               relay={"dlms_wait_s": 1, "dlms_queue": True}) as g:
        sap = await meter_sap(g)
        await g.meter_server.stop()
        async with Client(g.dlms_server.port, sap, counter=10) as hes:
            await hes.associate()
            outcome = await hes.act(MethodDescriptor(70, DISCONNECT, 1), NO_PARAMETERS)
            assert outcome.result.code == 2  # temporary-failure now ...
        await g.meter_server.start()
        async with asyncio.timeout(20):  # ... and carried out when the meter is back
            while g.meter.disconnect.state is not ControlState.DISCONNECTED:
                await asyncio.sleep(0.05)
        [event] = await events_of(g.gateway.store, "operation.result")
        assert event.details["outcome"] == "success" and event.details["source"] == "dlms:dlms"


def cosem_operations(port: int, sap: int) -> dict:
    client = DlmsClient(transport=WrapperTransport(port, 1, sap),
                        authentication=their_security.HighLevelSecurityGmacAuthentication(challenge_length=16),
                        encryption_key=KEYS.encryption_key, authentication_key=KEYS.authentication_key,
                        client_system_title=bytes.fromhex("434F534D00000001"), client_initial_invocation_counter=1)
    seen = {}
    with client.session() as session:
        limiter = their_cosem.CosemAttribute(their_enums.CosemInterface.LIMITER, TheirObis.from_string(
            "0.0.17.0.0.255"), 5)
        seen["set"] = session.set(limiter, Data(DataType.DOUBLE_LONG_UNSIGNED, 1234).to_bytes())
        method = their_cosem.CosemMethod(their_enums.CosemInterface.DISCONNECT_CONTROL,
                                         TheirObis.from_string("0.0.96.3.10.255"), 1)
        seen["action"] = session.action(method, NO_PARAMETERS.to_bytes())
    return seen


async def test_dlms_cosems_client_sets_and_acts_on_the_meter_through_the_gateway(tmp_path):
    async with running_gateway(tmp_path, None, operations=PERMITTED) as g:
        sap = await meter_sap(g)
        seen = await asyncio.to_thread(cosem_operations, g.dlms_server.port, sap)
        assert g.meter.limiter.values[5] == Data(DataType.DOUBLE_LONG_UNSIGNED, 1234)
        assert g.meter.disconnect.state is ControlState.DISCONNECTED
        assert type(seen["set"]).__name__ == "SetResponseNormal" and seen["action"] is None
        outcomes = [e.details["outcome"] for e in await events_of(g.gateway.store, "operation.result")]
        assert outcomes == ["success", "success"]
