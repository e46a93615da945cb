"""The simulated DLMS meter's objects behave as the Blue Book says: the disconnect control's
transitions per control mode, the limiter's types, the calendar's activation, the clock's
adjustments, the image transfer's bitmap, verification and activation; and it serves the
gateway's own client over the wrapper."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gateway.codecs.dlms.association import ClientSettings
from gateway.codecs.dlms.axdr import Data, DataType, array, octet_string, structure
from gateway.codecs.dlms.dates import CosemDateTime
from gateway.codecs.dlms.services import AttributeDescriptor
from gateway.collectors.dlms_session import SessionTarget, dlms_session
from gateway.operations.named import ACTIVITY_CALENDAR as CALENDAR
from gateway.operations.named import CLOCK, LIMITER
from gateway.operations.named import DISCONNECT_CONTROL as DISCONNECT
from gateway.operations.named import IMAGE_TRANSFER as IMAGE
from gateway.simulators.dlms import (
    LDN,
    ControlState,
    ImageStatus,
    SimulatedDlmsMeter,
    serving,
)
from gateway.transports import LineSettings, open_transport

D, C, R = ControlState.DISCONNECTED, ControlState.CONNECTED, ControlState.READY_FOR_RECONNECTION
NOW = datetime(2026, 6, 1, 12, 7, 40, tzinfo=timezone.utc)


def meter(**kwargs) -> SimulatedDlmsMeter:
    return SimulatedDlmsMeter(host_now=lambda: NOW, **kwargs)


# (mode, triggers from connected, the states after each)
@pytest.mark.parametrize("mode, triggers, states", [
    (1, ["remote_disconnect", "remote_reconnect"], [D, C]),                     # c, d
    (2, ["remote_disconnect", "remote_reconnect", "manual_reconnection"], [D, R, C]),  # c, a, e
    (2, ["manual_disconnection", "remote_disconnect"], [R, D]),                 # f, b
    (3, ["manual_disconnection", "local_disconnection"], [C, R]),               # no f in mode 3; g
    (4, ["remote_disconnect", "remote_reconnect", "remote_reconnect"], [D, R, R]),  # a, then nothing
    (5, ["local_disconnection", "local_reconnection"], [R, C]),                 # g, h
    (6, ["manual_disconnection", "local_disconnection", "local_reconnection"], [C, R, C]),
    (0, ["remote_disconnect", "local_disconnection"], [C, C]),                  # always connected
])
def test_the_disconnect_control_moves_as_its_control_mode_allows(mode, triggers, states):
    control = meter(disconnect_mode=mode).disconnect
    seen = []
    for trigger in triggers:
        control.trigger(trigger)
        seen.append(control.state)
        assert control.output_state is (control.state is C)
    assert seen == states


def test_remote_methods_answer_success_and_the_mode_is_writable():
    m = meter(disconnect_mode=1)
    assert m.action(70, DISCONNECT, 1, Data(DataType.INTEGER, 0))[0].code == 0
    assert m.get(70, DISCONNECT, 3) == Data(DataType.ENUM, 0) and m.get(70, DISCONNECT, 2).value is False
    assert m.set(70, DISCONNECT, 4, Data(DataType.ENUM, 4)).code == 0 and m.disconnect.mode == 4
    assert m.set(70, DISCONNECT, 4, Data(DataType.ENUM, 9)).code == 12
    assert m.set(70, DISCONNECT, 2, Data(DataType.BOOLEAN, True)).code == 3  # output_state is read-only
    assert m.action(70, DISCONNECT, 3, None)[0].code == 4


def test_the_limiter_takes_thresholds_of_integer_types_and_durations_as_double_long_unsigned():
    m = meter()
    assert m.set(71, LIMITER, 4, Data(DataType.LONG_UNSIGNED, 5)).code == 0
    assert m.set(71, LIMITER, 4, Data(DataType.VISIBLE_STRING, "5")).code == 12
    assert m.set(71, LIMITER, 6, Data(DataType.LONG_UNSIGNED, 5)).code == 12
    assert m.set(71, LIMITER, 6, Data(DataType.DOUBLE_LONG_UNSIGNED, 5)).code == 0
    assert m.get(71, LIMITER, 2).to_python() == [3, bytes([1, 0, 1, 7, 0, 255]), 2]  # monitors the power register
    assert m.set(71, LIMITER, 12, Data(DataType.NULL_DATA)).code == 4


def test_the_passive_calendar_becomes_active_when_the_meter_clock_reaches_its_time():
    m = meter()
    assert m.set(20, CALENDAR, 6, octet_string(b"next")).code == 0
    assert m.set(20, CALENDAR, 7, Data(DataType.OCTET_STRING, b"")).code == 12  # season_profile is an array
    at = CosemDateTime.from_datetime(NOW + timedelta(minutes=5))
    assert m.set(20, CALENDAR, 10, octet_string(at.to_bytes())).code == 0
    assert m.get(20, CALENDAR, 2).value == b"initial"
    m.clock_offset_s = 301
    assert m.get(20, CALENDAR, 2).value == b"next" and m.calendar.activations == 1
    assert m.get(20, CALENDAR, 10).value == b"\xff\xff" + b"\xff" * 7 + b"\x80\x00\xff"  # no activation pending
    assert m.set(20, CALENDAR, 2, octet_string(b"x")).code == 3  # the active calendar is read-only


def test_the_clock_adjusts_to_the_quarter_minute_and_shifts():
    m = meter()
    assert m.action(8, CLOCK, 1, Data(DataType.INTEGER, 0))[0].code == 0
    assert m.now() == datetime(2026, 6, 1, 12, 15, tzinfo=timezone.utc)  # 12:07:40 is nearer 12:15
    assert m.action(8, CLOCK, 6, Data(DataType.LONG, 100))[0].code == 0
    assert m.action(8, CLOCK, 3, Data(DataType.INTEGER, 0))[0].code == 0
    assert m.now() == datetime(2026, 6, 1, 12, 17, tzinfo=timezone.utc)  # 12:16:40 to the minute
    assert m.action(8, CLOCK, 6, Data(DataType.LONG, 1000))[0].code == 12  # beyond ±900 s
    assert m.set(8, CLOCK, 2, octet_string(CosemDateTime.from_datetime(NOW - timedelta(hours=1)).to_bytes())).code == 0
    assert m.clock_offset_s == -3600


def test_image_transfer_keeps_a_bitmap_verifies_only_a_whole_image_and_activates_it():
    m = meter(block_size=4)
    initiate = structure(octet_string(b"FW"), Data(DataType.DOUBLE_LONG_UNSIGNED, 10))
    block = lambda n, data: structure(Data(DataType.DOUBLE_LONG_UNSIGNED, n), octet_string(data))  # noqa: E731
    assert m.action(18, IMAGE, 1, initiate)[0].code == 0 and m.image.block_count == 3
    assert m.action(18, IMAGE, 2, block(0, b"abcd"))[0].code == 0
    assert m.action(18, IMAGE, 2, block(2, b"ij"))[0].code == 0
    assert m.action(18, IMAGE, 2, block(1, b"too long"))[0].code == 12
    assert str(m.get(18, IMAGE, 3).value) == "101" and m.get(18, IMAGE, 4).value == 1
    assert m.action(18, IMAGE, 3, Data(DataType.INTEGER, 0))[0].code == 250  # a block is missing
    assert m.get(18, IMAGE, 6).value == ImageStatus.VERIFICATION_FAILED
    assert m.action(18, IMAGE, 4, Data(DataType.INTEGER, 0))[0].code == 250  # nothing verified
    m.image.status = ImageStatus.INITIATED
    assert m.action(18, IMAGE, 2, block(1, b"efgh"))[0].code == 0
    assert m.action(18, IMAGE, 3, Data(DataType.INTEGER, 0))[0].code == 0
    assert m.action(18, IMAGE, 4, Data(DataType.INTEGER, 0))[0].code == 0
    assert (m.firmware, m.firmware_image) == (b"FW", b"abcdefghij")
    assert m.get(18, IMAGE, 7).to_python() == [[10, b"FW", b""]]
    m.image.enabled = False
    assert m.action(18, IMAGE, 1, initiate)[0].code == 3
    assert m.action(18, IMAGE, 9, None)[0].code == 4


def test_verification_in_the_background_is_temporary_failure_then_a_status_that_arrives():
    m = meter(block_size=4, verify_polls=2)
    m.action(18, IMAGE, 1, structure(octet_string(b"FW"), Data(DataType.DOUBLE_LONG_UNSIGNED, 4)))
    m.action(18, IMAGE, 2, structure(Data(DataType.DOUBLE_LONG_UNSIGNED, 0), octet_string(b"abcd")))
    assert m.action(18, IMAGE, 3, Data(DataType.INTEGER, 0))[0].code == 2
    assert [m.get(18, IMAGE, 6).value for _ in range(3)] == [2, 3, 3]


async def test_the_gateways_client_reads_and_writes_it_over_the_wrapper():
    sim = SimulatedDlmsMeter(name=b"SIMXYZ")
    async with serving(sim) as server:
        target = SessionTarget(interface="wrapper", client_settings=ClientSettings(), line=LineSettings(9600),
                               response_timeout_s=5)
        async with open_transport(LineSettings(9600), tcp=server.address) as transport, \
                dlms_session(transport, target) as session:
            assert (await session.get(AttributeDescriptor(1, LDN, 2))).value == b"SIMXYZ"
            calendar = array(structure(octet_string(b"s"), octet_string(b"\xff" * 12), octet_string(b"w")))
            await session.set(AttributeDescriptor(20, CALENDAR, 7), calendar)
    assert sim.calendar.passive[7] == calendar
    assert ("set", 20, CALENDAR.dotted, 7) in sim.requests
