"""The rules that turn records into COSEM: names, OBIS codes, units, exact values."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.dlms.axdr import DataType, decode_data
from gateway.codecs.dlms.obis import Obis
from gateway.uplinks.dlms_server import mapping
from gateway.uplinks.dlms_server.registry import Quantity, sap_numbers


@pytest.mark.parametrize("device,name", [
    ("KAM-12345678-1b-04", b"KAM123456781b04"),
    ("dlms-LGZ1030012345678", b"LGZ1030012345678"),
    ("dlms-MY METER", b"dlmsMYMETER"),  # a space is no part of a name
    ("EFE-00000042-00-07", b"EFE0000004200" + b"07"),
    ("a-very-long-device-identity-0001", b"averylong" + mapping.digest_name("a-very-long-device-identity-0001")[:7]
     .encode()),
])
def test_logical_device_names_follow_the_documented_rule(device, name) -> None:
    assert mapping.logical_device_name(device) == name
    assert len(name) <= 16


def test_saps_follow_the_green_books_table() -> None:
    saps = list(sap_numbers())
    assert saps[:2] == [16, 17] and 126 in saps and 127 not in saps and saps[111] == 128 and saps[-1] == 0x3FFE


@pytest.mark.parametrize("unit,expected", [
    ("Wh", (30, 0)), ("kWh", (30, 3)), ("MWh", (30, 6)), ("m^3", (13, 0)), ("m3", (13, 0)), ("°C", (9, 0)),
    ("K", (52, 0)), ("min", (6, 0)), ("ms", (7, -3)), ("mbar", (24, -3)), (None, (255, 0)), ("furlong", (254, 0)),
    ("kvarh", (32, 3)), ("l", (19, 0)), ("%", (56, 0)),
])
def test_units_map_to_the_blue_books_codes_with_prefixes_in_the_scaler(unit, expected) -> None:
    assert mapping.dlms_unit(unit) == expected


def test_reading_obis_codes_are_kept_unless_invalid_or_the_gateways_own() -> None:
    assert mapping.reading_obis("1-0:1.8.0*255") == Obis(1, 0, 1, 8, 0)
    assert mapping.reading_obis("0-0:128.0.3*255") is None
    assert mapping.reading_obis("not an obis") is None
    assert [mapping.abstract_obis(n) for n in (0, 254, 255)] == [Obis(0, 0, 128, 0, 0), Obis(0, 0, 128, 0, 254),
                                                                 Obis(0, 0, 128, 1, 0)]


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 25),
       st.integers(0, 6))
def test_a_number_at_a_finer_scaler_is_an_exact_integer_mantissa(value, finer) -> None:
    scaler = mapping.exponent(value) - finer
    mantissa = mapping.mantissa(value, -scaler)
    assert Decimal(f"{mantissa}E{scaler}") == value
    encoded = decode_data(mapping.encode_integer(mantissa))
    assert encoded.type in (DataType.DOUBLE_LONG, DataType.LONG64, DataType.LONG64_UNSIGNED, DataType.NULL_DATA)
    if encoded.type is not DataType.NULL_DATA:
        assert encoded.value == mantissa and mapping.integer_data(mantissa) == encoded


def test_values_that_cannot_travel_exactly_are_null_data() -> None:
    assert mapping.mantissa(Decimal("1.25"), 1) is None  # not an integer at scaler -1
    assert mapping.mantissa(Decimal("NaN"), 0) is None
    assert mapping.encode_integer(1 << 64) == mapping.NULL
    assert mapping.encode_integer((1 << 63) + 5)[:1] == b"\x15"
    quantity = Quantity("energy", Obis(1, 0, 1, 8, 0), "kWh", scaler=0)
    assert quantity.data(Decimal("1.5"), "kWh").value == 1500
    assert quantity.data(Decimal("1.5"), "m^3").type is DataType.NULL_DATA  # another unit: not this register


def test_other_values_become_the_matching_data() -> None:
    assert mapping.value_data("ok").type is DataType.VISIBLE_STRING
    assert mapping.value_data("grüße").type is DataType.UTF8_STRING
    assert mapping.value_data(b"\x01").value == b"\x01"
    assert mapping.value_data(True).value is True
    moment = datetime(2024, 5, 1, 14, 0, tzinfo=timezone.utc)
    assert mapping.value_data(moment).value == bytes.fromhex("07e8050103") + bytes.fromhex("0e000000") + b"\x00\x00\x00"
    assert len(mapping.value_data(date(2024, 5, 1)).value) == 5 and len(mapping.value_data(time(1, 2)).value) == 4
    assert mapping.value_data(None).type is DataType.NULL_DATA
