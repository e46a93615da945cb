"""The commissioning checks and the declaration they compare with: pure functions of one
observation."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import assume, given, strategies as st

from gateway.errors import ConfigError
from gateway.lifecycle.checks import Observation, commissioning_checks, first_failure, within
from gateway.lifecycle.declaration import Declaration, declaration_of
from gateway.model import Reading

AT = datetime(2026, 3, 1, 10, 30, 20, tzinfo=timezone.utc)


def reading(quantity: str, value, *, obis=None, meter_time=None, protection="encrypted:wmbus-mode5") -> Reading:
    return Reading("GWY-12345678-01-07", quantity, value, None, AT, meter_time=meter_time, obis=obis,
                   protection=protection)


def check(observation: Observation, declaration: Declaration | None = None, **kwargs):
    options = {"expected_device": "GWY-12345678-01-07", "keyed": True, "tolerance_s": 60}
    options.update(kwargs)
    return commissioning_checks(observation, declaration=declaration or Declaration(), **options)


def test_a_read_that_failed_is_the_one_failing_check_with_its_reason():
    checks = check(Observation(None, failure="security: authentication failed (check the key)"))
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("read", False, "security: authentication failed (check the key)")]


def test_a_device_that_answers_in_clear_although_keys_were_installed_fails():
    failed = first_failure(check(Observation("GWY-12345678-01-07", (reading("volume", Decimal(1), protection="none"),))))
    assert failed.name == "protection" and "volume came without protection" in failed.detail


def test_another_device_answering_fails_the_identity_check():
    failed = first_failure(check(Observation("GWY-99999999-01-07", (reading("volume", Decimal(1)),))))
    assert (failed.name, failed.detail) == ("identity", "GWY-99999999-01-07 answered, not GWY-12345678-01-07")


@pytest.mark.parametrize(("stamp", "ok"), [
    ("10:29:00", True),    # whole minutes, 80 s behind: within 60 s and the minute it may lag
    ("10:28:00", False),   # 140 s behind
    ("10:31:19", True),    # 59 s ahead
    ("10:31:21", False),   # 61 s ahead
    ("10:29:19", False),   # 61 s behind, with seconds: no minute to lag
])
def test_a_clock_stamped_in_whole_minutes_may_lag_a_minute_more_than_the_tolerance(stamp, ok):
    meter_time = datetime.combine(AT.date(), datetime.strptime(stamp, "%H:%M:%S").time(), timezone.utc)
    checks = check(Observation("GWY-12345678-01-07", (reading("volume", Decimal(1), meter_time=meter_time),)))
    (clock,) = [c for c in checks if c.name == "clock"]
    assert clock.ok is ok


def test_a_clock_the_gateway_set_is_judged_after_the_set_and_both_deviations_are_reported():
    checks = check(Observation("dlms-X", (reading("energy", Decimal(1)),), clock_before_s=300.2, clock_after_s=0.4),
                   expected_device="dlms-X", tolerance_s=30)
    (clock,) = [c for c in checks if c.name == "clock"]
    assert clock.ok and clock.detail == "off by +300.2 s, set: +0.4 s after (tolerance 30 s)"


def test_the_metrological_identification_must_match_and_must_be_reported():
    readings = (reading("firmware_version", b"FW-1.2.3", obis="1-0:0.2.0*255"),
                reading("x", bytes.fromhex("a1b2c3d4"), obis="1-0:0.2.8*255"), reading("volume", Decimal(1)))
    declared = Declaration(firmware_version="fw-1.2.3", firmware_checksum="A1B2C3D4", software_version="7")
    checks = {c.name: c for c in check(Observation("GWY-12345678-01-07", readings), declared)}
    assert checks["firmware_version"].ok and checks["firmware_version"].detail == "reported FW-1.2.3"
    assert checks["firmware_checksum"].ok
    assert not checks["software_version"].ok
    assert checks["software_version"].detail == "declared 7, but the device does not report it"


def test_an_mbus_firmware_version_record_is_compared_as_a_number():
    checks = check(Observation("GWY-12345678-01-07", (reading("firmware_version", Decimal(12)),)),
                   Declaration(firmware_version="12"))
    assert all(c.ok for c in checks)


def test_a_calibration_date_is_read_from_the_declared_object():
    readings = (reading("c", datetime(2025, 4, 1, tzinfo=timezone.utc), obis="0-0:96.2.5*255"),)
    declared = Declaration(calibration_date=date(2025, 4, 1), calibration_date_obis="0.0.96.2.5.255")
    assert all(c.ok for c in check(Observation("GWY-12345678-01-07", readings), declared))


def test_the_declaration_says_which_quantities_are_metrological():
    declared = Declaration(metrological=["volume*", "1.0.1.8.0.255"])
    assert declared.is_metrological("volume;storage=1", None)
    assert declared.is_metrological("active_energy_import", "1-0:1.8.0*255")
    assert not declared.is_metrological("flow_temperature", None)
    assert not Declaration().is_metrological("clock_deviation_s", "0-0:1.0.0*255")
    assert not Declaration().is_metrological("time_point_date_and_time", None)
    assert Declaration().is_metrological("energy;tariff=2", None)


def test_a_bad_declaration_names_its_field():
    with pytest.raises(ConfigError, match=r"declaration.clock_tolerance_s: Input should be greater than 0"):
        declaration_of({"clock_tolerance_s": -1})
    with pytest.raises(ConfigError, match=r"declaration.colour: Extra inputs are not permitted"):
        declaration_of({"colour": "blue"})


@given(st.integers(min_value=-1_000_000, max_value=1_000_000), st.integers(min_value=1, max_value=500))
def test_within_is_symmetric_for_clocks_with_seconds(offset_ms, tolerance_s):
    stamp = AT + timedelta(milliseconds=offset_ms)
    assume(stamp.second or stamp.microsecond)  # a whole-minute stamp may lag a minute more (the test above)
    assert within(stamp, AT, tolerance_s) == (abs(offset_ms) <= tolerance_s * 1000)
