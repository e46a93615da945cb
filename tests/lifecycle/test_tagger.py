"""What the lifecycle adds to records on their way into the store: tags of registered
devices, alarms on a change of status flags (not per telegram, not again after a restart),
clock drift once, and the observations that change a device's life."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from gateway.collectors.dlms import MemoryState
from gateway.lifecycle.declaration import Declaration
from gateway.lifecycle.disturbances import error_flags, reported_flags, status_flags
from gateway.lifecycle.tagger import DeviceTags, Tagger
from gateway.model import Event, Reading, Severity

AT = datetime(2026, 3, 1, 10, 30, 20, tzinfo=timezone.utc)
DEVICE = "GWY-12345678-01-07"


def telegram(status: str = "00", *, device: str = DEVICE, meter_time=None, flags=(), extra=()) -> list[Reading]:
    return [Reading(device, "volume", Decimal("1.5"), "m^3", AT, meter_time=meter_time, status=status, flags=flags),
            Reading(device, "time_point_date_and_time", meter_time, None, AT, meter_time=meter_time, status=status,
                    flags=flags), *extra]


def tags(**kwargs) -> DeviceTags:
    options = {"name": "water-1", "entry": "e1", "state": "in service", "point": "MP-1",
               "declaration": Declaration(metrological=["volume*"]), "tolerance_s": 60, "check_clock": True}
    options.update(kwargs)
    return DeviceTags(**options)


@pytest.mark.parametrize(("status", "flags"), [
    (0x00, set()), (0x01, {"application_busy"}), (0x02, {"application_error"}), (0x03, {"abnormal_condition"}),
    (0x04, {"power_low"}), (0x08, {"permanent_error"}), (0x10, {"temporary_error"}),
    (0xE0, {"manufacturer_bit_5", "manufacturer_bit_6", "manufacturer_bit_7"}),
    (0x0E, {"application_error", "power_low", "permanent_error"}),
])
def test_the_status_byte_bits_are_named_as_en_13757_3_table_4_has_them(status, flags):
    assert status_flags(status) == flags


def test_an_error_flags_record_is_one_flag_per_bit_and_a_status_of_another_protocol_is_not_read():
    assert error_flags(b"\x05\x01") == {"error_flag_0", "error_flag_2", "error_flag_8"}
    assert error_flags(Decimal(0)) == set()
    dlms = [Reading("dlms-X", "active_energy_import", Decimal(1), "Wh", AT, status="08")]
    assert reported_flags(dlms) is None


async def test_a_registered_devices_readings_get_their_point_and_metrological_tag():
    tagger = Tagger()
    tagger.devices[DEVICE] = tags(calibrating=True)
    volume, stamp = await tagger.tag(telegram())
    assert (volume.point, volume.metrological, volume.flags) == ("MP-1", True, ("calibration",))
    assert (stamp.point, stamp.metrological) == ("MP-1", False)
    other = await tagger.tag(telegram(device="GWY-99999999-01-07"))
    assert all(r.point is None and r.metrological is None for r in other)


async def test_tagging_keeps_every_other_field_of_a_reading():
    tagger = Tagger()
    tagger.devices[DEVICE] = tags()
    original = Reading(DEVICE, "volume", Decimal("2"), "m^3", AT, meter_time=AT, obis="8-0:1.0.0*255", status="04",
                       raw=b"\x44\x93", protection="encrypted:wmbus-mode5", flags=("previous_key",))
    (tagged, *_alarm) = await tagger.tag([original])
    assert tagged == replace(original, point="MP-1", metrological=True)


async def test_a_change_of_flags_is_one_alarm_not_one_per_telegram_and_not_again_after_a_restart():
    state, noted = MemoryState(), []
    state.state_items = lambda prefix: _items(state, prefix)
    tagger = Tagger(state, notify=lambda what, t, details: noted.append(what))
    tagger.devices[DEVICE] = tags()
    assert _alarms(await tagger.tag(telegram("00"))) == []
    (raised,) = _alarms(await tagger.tag(telegram("0C")))
    assert (raised.details["set"], raised.details["cleared"], raised.severity) == ("permanent_error,power_low", "",
                                                                                   Severity.ERROR)
    assert _alarms(await tagger.tag(telegram("0C"))) == []
    assert noted == ["fault"]

    restarted = Tagger(state)
    await restarted.load()
    assert _alarms(await restarted.tag(telegram("0C"))) == []
    (cleared,) = _alarms(await restarted.tag(telegram("04")))
    assert (cleared.details["set"], cleared.details["cleared"], cleared.severity) == ("", "permanent_error",
                                                                                      Severity.WARNING)


async def test_a_drifting_clock_is_reported_once_until_it_is_back_within_its_tolerance():
    tagger = Tagger()
    tagger.devices[DEVICE] = tags()
    late = (AT - timedelta(minutes=5)).replace(second=0)
    assert len(_drift(await tagger.tag(telegram(meter_time=late)))) == 1
    assert _drift(await tagger.tag(telegram(meter_time=late))) == []
    assert _drift(await tagger.tag(telegram(meter_time=AT.replace(second=0)))) == []
    (again,) = _drift(await tagger.tag(telegram(meter_time=late)))
    assert again.details["deviation_s"] == "-320.0"


async def test_the_first_reading_under_a_new_key_is_noted_once():
    noted = []
    tagger = Tagger(notify=lambda what, t, details: noted.append((what, details)))
    tagger.devices[DEVICE] = tags(awaiting_key=2)
    await tagger.tag(telegram(flags=("previous_key",)))
    assert noted == []
    await tagger.tag(telegram())
    await tagger.tag(telegram())
    assert noted == [("key_switched", {"generation": 2})]


def _alarms(records) -> list[Event]:
    return [r for r in records if isinstance(r, Event) and r.code == "meter.alarm"]


def _drift(records) -> list[Event]:
    return [r for r in records if isinstance(r, Event) and r.code == "clock.drift"]


async def _items(state: MemoryState, prefix: str) -> dict[str, str]:
    return {k: v for k, v in state.values.items() if k.startswith(prefix)}
