"""From COSEM attribute values to reading values (gateway/collectors/dlms_values.py)."""

from __future__ import annotations

from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from gateway.codecs.dlms.axdr import Data, DataType, decode_data
from gateway.codecs.dlms.units import ScalerUnit
from gateway.collectors.dlms_values import decimal_seconds, reading_value

UTC = ZoneInfo("UTC")


def test_a_scaled_register_value_is_exact_whatever_the_callers_decimal_context():
    with localcontext(prec=4):
        value = reading_value(Data(DataType.LONG64, -(1 << 63)), UTC, ScalerUnit(-4, 30))
        deviation = decimal_seconds(-12345.678)
    assert value == Decimal("-922337203685477.5808") and deviation == Decimal("-12345.68")


def test_a_utf8_string_that_is_not_utf8_becomes_bytes_and_text_stays_text():
    assert reading_value(decode_data(bytes.fromhex("0C0341FF42")), UTC) == b"A\xffB"
    assert reading_value(decode_data(bytes.fromhex("0C03C2B543")), UTC) == "µC"
    assert reading_value(decode_data(bytes.fromhex("0A03C2B543")), UTC) == "\u00c2\u00b5C"  # visible-string: Latin-1
