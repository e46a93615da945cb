"""EN 13757-3 data records: DIF/DIFE, VIF/VIFE tables, data field types, special DIFs."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.codecs.mbus import datatypes, tables
from gateway.codecs.mbus.errors import MBusFrameError
from gateway.codecs.mbus.records import decode_records, encode_record, make_record


def one(hex_text: str):
    block = decode_records(bytes.fromhex(hex_text))
    assert len(block.records) == 1
    return block.records[0]


# --- data field types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_text", "value"),
    [
        ("01 13 FF", Decimal("-0.001")),  # 8-bit integer, signed
        ("02 13 00 80", Decimal("-32.768")),
        ("03 13 FF FF 7F", Decimal("8388.607")),  # 24-bit
        ("04 13 78 56 34 12", Decimal("305419.896")),
        ("06 13 01 00 00 00 00 80", Decimal(-(1 << 47) + 1) / 1000),  # 48-bit
        ("07 13 FF FF FF FF FF FF FF 7F", Decimal((1 << 63) - 1) / 1000),  # 64-bit
    ],
)
def test_integers_of_every_width_are_signed_little_endian_and_exact(hex_text, value):
    record = one(hex_text)
    assert record.value == value and isinstance(record.value, Decimal)


@pytest.mark.parametrize(
    ("hex_text", "value"),
    [
        ("09 13 42", Decimal("0.042")),
        ("0A 13 34 12", Decimal("1.234")),
        ("0B 13 56 34 12", Decimal("123.456")),
        ("0C 13 78 56 34 12", Decimal("12345.678")),
        ("0E 13 12 90 78 56 34 12", Decimal("123456789.012")),
        ("0C 13 78 56 34 F2", Decimal("-2345.678")),  # 0xF in the top nibble: negative
    ],
)
def test_bcd_of_every_width_including_negative(hex_text, value):
    assert one(hex_text).value == value


def test_bcd_with_hex_digits_has_no_value_and_says_why():
    record = one("0C 2B BD EB DD DD")
    assert record.value is None
    assert record.value_error == "BCD digits are not decimal: DDDDEBBD"
    assert record.data == bytes.fromhex("BDEBDDDD")


def test_real_is_its_shortest_decimal_times_the_vif_scale():
    record = one("05 2E 20 D7 AC 41")  # 21.605042 (float32) × 10^3 W
    assert record.value == Decimal("21605.042")
    assert datatypes.decode_real(bytes.fromhex("20D7AC41")) == Decimal("21.605042")


@pytest.mark.parametrize(
    ("lvar_and_data", "value"),
    [
        ("03 43 42 41", "ABC"),  # text, reversed on the wire
        ("C2 34 12", Decimal("1234")),  # positive BCD, 4 digits
        ("D2 34 12", Decimal("-1234")),  # negative BCD
        ("E3 01 02 03", bytes.fromhex("010203")),  # binary, transmission order
        ("F0" + " 5A" * 16, bytes([0x5A]) * 16),  # F0: 16 bytes
        ("F4" + " 01" * 32, bytes([1]) * 32),  # F4: 32 bytes
        ("F5" + " 02" * 48, bytes([2]) * 48),
        ("F6" + " 03" * 64, bytes([3]) * 64),
    ],
)
def test_variable_length_data_in_all_its_ranges(lvar_and_data, value):
    record = one("0D FD 11 " + lvar_and_data)  # customer
    assert record.value == value
    assert encode_record(record) == record.raw


@pytest.mark.parametrize("lvar", [0xCA, 0xDA, 0xF7, 0xFF])
def test_reserved_lvar_values_are_rejected_with_offset(lvar):
    with pytest.raises(MBusFrameError, match=f"reserved LVAR 0x{lvar:02X}") as info:
        decode_records(bytes([0x0D, 0x13, lvar, 0, 0]), offset=100)
    assert (info.value.offset, info.value.field) == (102, "LVAR")


def test_binary_lvar_f0_sixteen_bytes_as_in_the_corpus_trap():
    record = one("0D 7C 02 57 50 F0 96 07 5B 2A 27 A6 93 01 3D B5 1A B3 DC D1 3E 17")
    assert record.plain_text_unit == "PW" and record.value == bytes.fromhex("96075B2A27A693013DB51AB3DCD13E17")


# --- DIF and DIFE --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dif", "function"),
    [(0x04, "instantaneous value"), (0x14, "maximum value"), (0x24, "minimum value"), (0x34, "value during error state")],
)
def test_function_field(dif, function):
    assert one(f"{dif:02X} 13 00 00 00 00").function == function


def test_storage_tariff_and_subunit_are_built_across_all_difes():
    # DIF: storage LSB 1; DIFE 1: subunit 1, tariff 1, storage 0xF; DIFE 2: tariff 2, storage 5.
    record = one("C4 DF 25 13 00 00 00 00")
    assert (record.storage, record.tariff, record.subunit) == (1 | 0xF << 1 | 5 << 5, 1 | 2 << 2, 1)
    assert record.dife == (0xDF, 0x25) and record.header_bytes == bytes.fromhex("C4DF2513")


def test_manufacturer_data_after_0f_is_kept_raw_in_transmission_order():
    block = decode_records(bytes.fromhex("04 13 01 00 00 00 0F 01 02 03"), offset=19)
    assert len(block.records) == 1 and not block.more_records_follow
    assert block.manufacturer_data == bytes.fromhex("010203") and block.manufacturer_data_offset == 26


def test_dif_1f_says_more_records_follow():
    block = decode_records(bytes.fromhex("1F AA"))
    assert block.more_records_follow and block.manufacturer_data == b"\xaa" and block.records == ()


def test_idle_fillers_are_skipped():
    block = decode_records(bytes.fromhex("2F 2F 04 13 01 00 00 00 2F"))
    assert [r.offset for r in block.records] == [2]


def test_reserved_special_function_dif_is_rejected():
    with pytest.raises(MBusFrameError, match="reserved special function DIF 0x3F") as info:
        decode_records(bytes.fromhex("3F 00"))
    assert info.value.field == "DIF"


def test_no_data_and_readout_selection_records_have_no_value():
    block = decode_records(bytes.fromhex("00 13 08 13"))
    assert [r.value for r in block.records] == [None, None]


# --- VIF and VIFE ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_text", "quantity", "unit", "value"),
    [
        ("04 06 01 00 00 00", "Energy", "Wh", Decimal(1000)),
        ("04 0E 01 00 00 00", "Energy", "J", Decimal(1000000)),
        ("04 1B 05 00 00 00", "Mass", "kg", Decimal(5)),
        ("04 22 02 00 00 00", "On time", "s", Decimal(7200)),  # hours to seconds, exactly
        ("04 27 01 00 00 00", "Operating time", "s", Decimal(86400)),
        ("02 5A 2C 01", "Flow temperature", "°C", Decimal("30.0")),
        ("02 61 E8 03", "Temperature difference", "K", Decimal("10.00")),
        ("02 69 64 00", "Pressure", "bar", Decimal("1.00")),
        ("02 3B 10 00", "Volume flow", "m^3/h", Decimal("0.016")),
        ("01 7A 08", "Bus address", None, Decimal(8)),
        ("04 FB 00 05 00 00 00", "Energy", "Wh", Decimal(500000)),  # 0.1 MWh
        ("04 FB 0D 01 00 00 00", "Energy", "cal", Decimal(10**6)),  # 1 MCal
        ("02 FD 48 E8 08", "Voltage", "V", Decimal("228.0")),
        ("02 FD 59 10 27", "Current", "A", Decimal("10.000")),
        ("02 FD 17 04 00", "Error flags", None, Decimal(4)),
        ("04 FD 0E 01 02 03 04", "Firmware version", None, Decimal(0x04030201)),
    ],
)
def test_vif_tables_give_quantity_unit_and_exact_value(hex_text, quantity, unit, value):
    record = one(hex_text)
    assert (record.quantity, record.unit, record.value) == (quantity, unit, value)


def test_reserved_vif_7b_is_kept_as_data_not_dropped():
    record = one("0C 7B 02 03 00 00")
    assert (record.quantity, record.unit, record.value) == ("reserved", None, Decimal(302))


def test_plain_text_vif_reads_the_reversed_unit_then_the_vifes():
    record = one("02 FC 03 48 52 25 74 D4 11")
    assert (record.plain_text_unit, record.quantity, record.unit) == ("%RH", "%RH", "%RH")
    assert record.value == Decimal("45.64")  # VIFE 0x74: × 10^-2
    assert record.vife == (0x74,) and encode_record(record) == record.raw


def test_manufacturer_specific_vif_keeps_its_vifes_raw():
    record = one("02 FF 92 00 01 02")
    assert record.quantity == "Manufacturer specific" and record.manufacturer_specific
    assert record.modifiers == ("manufacturer specific VIFE 0x92", "manufacturer specific VIFE 0x00")
    assert record.value == Decimal(0x0201)


@pytest.mark.parametrize(
    ("vifes", "modifiers", "value"),
    [
        ("22", ("per hour",), Decimal("0.001")),
        ("7D", ("multiplicative correction factor 10^3",), Decimal(1)),
        ("73", ("multiplicative correction factor 10^-3",), Decimal("0.000001")),
        ("79", ("additive correction constant 10^-2 (unit of VIF)",), Decimal("0.011")),
        ("16", ("error: data overflow",), Decimal("0.001")),
        ("FC 01", ("at phase L1",), Decimal("0.001")),
        ("FC 10", ("accumulation of abs value for both positive and negative contribution",), Decimal("0.001")),
        ("FF 01", ("manufacturer specific", "manufacturer specific VIFE 0x01"), Decimal("0.001")),
    ],
)
def test_combinable_vifes_qualify_or_rescale_the_value(vifes, modifiers, value):
    record = one(f"01 93 {vifes} 01")  # 1 × 10^-3 m^3 with VIFEs
    assert record.modifiers == modifiers and record.value == value and record.quantity == "Volume"


#: VIF 87 (energy, 10^4 Wh, extended), nine VIFEs F7 (×10 each) and VIFE 78 (+10^-3 Wh).
LONG_CHAIN = "87" + " F7" * 9 + " 78"


def test_a_long_vife_chain_of_factors_and_a_correction_keeps_every_digit():
    # (2^63 − 1) × 10^13 + 0.001: 35 significant digits, more than the default context's 28.
    assert one(f"07 {LONG_CHAIN} FF FF FF FF FF FF FF 7F").value == Decimal("92233720368547758070000000000000.001")
    assert one(f"0E {LONG_CHAIN} 99 99 99 99 99 99").value == Decimal("9999999999990000000000000.001")


@given(st.integers(-(1 << 63), (1 << 63) - 1), st.integers(1, 28))
def test_integer_values_are_exact_whatever_the_callers_decimal_context(mantissa, precision):
    with localcontext(prec=precision):
        value = one(f"07 {LONG_CHAIN} " + mantissa.to_bytes(8, "little", signed=True).hex()).value
    assert value == Decimal(f"{mantissa * 10**16 + 1}E-3")  # built from text: exact


def test_too_many_vifes_and_difes_are_rejected():
    with pytest.raises(MBusFrameError, match="more than 10 VIFEs"):
        decode_records(bytes.fromhex("01 93" + " A2" * 10 + " 22 01"))
    with pytest.raises(MBusFrameError, match="more than 10 DIFEs"):
        decode_records(bytes.fromhex("81" + " 80" * 10 + " 00 13 01"))


@pytest.mark.parametrize(
    ("hex_text", "reason", "field", "offset"),
    [
        ("84", "DIFE expected", "DIFE", 1),
        ("04", "VIF expected", "VIF", 1),
        ("04 93", "VIFE expected", "VIFE", 2),
        ("04 13 01 02", "4 data bytes expected, 2 left", "data", 2),
        ("0D 13", "LVAR byte expected", "LVAR", 2),
        ("02 FC", "plain-text VIF length expected", "VIF", 2),
        ("02 FC 05 41", "plain-text VIF of 5 characters runs past the end", "VIF", 2),
    ],
)
def test_premature_ends_name_the_field_and_offset(hex_text, reason, field, offset):
    with pytest.raises(MBusFrameError, match=reason) as info:
        decode_records(bytes.fromhex(hex_text))
    assert (info.value.field, info.value.offset) == (field, offset)


# --- date and time types -----------------------------------------------------------------------


def test_type_f_datetime_with_invalid_and_summer_time_bits_reported():
    record = one("04 6D A1 95 E9 17")  # IV set, SU set, 2015-07-09 21:33
    assert record.value == datetime(2015, 7, 9, 21, 33)
    assert record.time_invalid is True and record.summer_time is True
    assert record.time.as_dict() == {
        "type": "F", "year": 2015, "month": 7, "day": 9, "hour": 21, "minute": 33, "invalid": True, "summer_time": True,
    }


def test_type_f_hundred_year_bits_count_centuries():
    assert datatypes.time_value("F", bytes([0, 0x20 | 1, 0x21, 0x01])) == datetime(2001, 1, 1, 1, 0)  # hundred 1
    assert datatypes.time_value("F", bytes([0, 0, 0x01 | 0x60, 0x01 | 0xC0])) == datetime(1999, 1, 1, 0, 0)


def test_type_g_date_and_an_all_zero_date_without_calendar_value():
    assert one("02 6C 1F 2C").value == date(2016, 12, 31)
    zero = one("42 6C 00 00")
    assert zero.value is None and (zero.time.year, zero.time.month, zero.time.day) == (2000, 0, 0)


def test_type_i_six_byte_datetime_with_seconds_and_its_flags():
    data = datatypes.encode_time_value(datetime(2024, 2, 29, 23, 59, 58), 6, summer_time=True)
    record = one("06 6D " + data.hex())
    assert record.value == datetime(2024, 2, 29, 23, 59, 58)
    fields = record.time
    assert (fields.kind, fields.leap_year, fields.summer_time, fields.invalid) == ("I", True, True, False)
    assert (fields.day_of_week, fields.week) == (4, 9)


def test_type_j_time_of_day():
    assert one("03 6D 3B 1E 17").value == time(23, 30, 59)


def test_type_k_daylight_saving_fields():
    record = one("04 FD 72 02 9F 9B A3")  # begin 03-31 02h, end 10-27, +1 h, local +0, enabled
    assert record.value is None
    assert record.time.as_dict() == {
        "type": "K", "month": 3, "day": 31, "hour": 2, "end_month": 10, "end_day": 27,
        "dst_deviation_hours": 0, "local_deviation_hours": 0, "enabled": True,
    }


def test_a_date_of_vife_turns_a_number_into_a_date():
    record = one("94 10 DA 6F 32 14 7A 18")  # max flow temperature, "date of last end"
    assert record.value == datetime(2011, 8, 26, 20, 50)
    assert record.quantity == "Flow temperature" and record.storage == 0 and record.tariff == 1


# --- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "hex_text"),
    [
        ({"vif": 0x13, "value": Decimal("1.234")}, "02 13 D2 04"),
        ({"vif": 0x13, "value": Decimal("1.234"), "data_field": 0xC}, "0C 13 34 12 00 00"),
        ({"vif": 0x06, "value": Decimal(5000), "storage": 3, "tariff": 2, "subunit": 1}, "C1 61 06 05"),
        ({"vif": 0x6C, "value": date(2016, 12, 31)}, "02 6C 1F 2C"),
        ({"vif": 0xFD, "vife": (0x11,), "value": "cust"}, "0D FD 11 04 74 73 75 63"),
        ({"vif": 0x6D, "value": datetime(2015, 7, 9, 21, 33), "summer_time": True}, "04 6D 21 95 E9 17"),
        ({"vif": 0x5B, "value": Decimal("21.5"), "data_field": 0x5, "function": "maximum value"}, "15 5B 00 00 AC 41"),
    ],
)
def test_make_record_encodes_what_the_standard_says(kwargs, hex_text):
    record = make_record(**kwargs)
    assert record.raw == bytes.fromhex(hex_text)
    assert record.value == kwargs["value"]


def test_a_value_between_steps_of_the_vif_cannot_be_encoded():
    with pytest.raises(ValueError, match="not a whole multiple"):
        make_record(0x13, Decimal("0.0001"))


def test_bcd_encoding_round_trips_negative_values():
    assert datatypes.encode_bcd(-123, 2) == bytes.fromhex("23F1")
    assert datatypes.decode_bcd(bytes.fromhex("23F1")) == -123
    with pytest.raises(ValueError):
        datatypes.encode_bcd(12345, 2)


def test_every_table_has_an_entry_for_every_code():
    assert len(tables.PRIMARY_VIFS) == len(tables.FD_VIFS) == len(tables.FB_VIFS) == 128
    assert len(tables.COMBINABLE_VIFES) == len(tables.COMBINABLE_EXTENSION_VIFES) == 128
    assert tables.FD_VIFS[0x17].quantity == "Error flags" and tables.FB_VIFS[0x00].scaler == 5


def test_the_largest_float32_has_a_shortest_decimal_too():
    record = one("05 2B FF FF 7F 7F")
    assert record.value == Decimal("3.4028235e+38")
    assert encode_record(record) == record.raw
