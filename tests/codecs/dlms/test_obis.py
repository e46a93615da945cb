"""OBIS codes (IEC 62056-6-1 7): the printed forms, the 6-byte form, and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given

from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.obis import Obis

from .strategies import obis_codes


@pytest.mark.parametrize("text", ["1-0:1.8.0*255", "1-0:1.8.0", "1.0.1.8.0.255", "1-0:1.8.0.255", "0100010800FF",
                                  " 1-0:1.8.0*255 "])
def test_every_written_form_of_active_energy_import_parses_to_the_same_code(text):
    assert Obis.parse(text) == Obis(1, 0, 1, 8, 0, 255)


def test_the_printed_forms():
    code = Obis(0, 0, 96, 1, 0, 255)
    assert str(code) == "0-0:96.1.0*255"
    assert code.dotted == "0.0.96.1.0.255"
    assert code.to_bytes() == bytes.fromhex("00006001 00FF".replace(" ", ""))
    assert Obis.parse("1-0:99.1.0*101").f == 101


@given(obis_codes)
def test_parse_of_print_and_bytes_round_trip(code):
    assert Obis.parse(str(code)) == code
    assert Obis.parse(code.dotted) == code
    assert Obis.from_bytes(code.to_bytes()) == code


@pytest.mark.parametrize("text", ["1-0:1.8", "1-0:256.8.0*255", "a-b:c.d.e*f", "1.0.1.8.0", "", "1-0:1.8.0*2555"])
def test_text_that_is_not_an_obis_code_is_refused(text):
    with pytest.raises(DLMSError):
        Obis.parse(text)


def test_a_logical_name_is_six_bytes_and_groups_are_bytes():
    with pytest.raises(DLMSError, match="6 bytes"):
        Obis.from_bytes(b"\x01\x00\x01\x08\x00")
    with pytest.raises(ValueError):
        Obis(1, 0, 1, 8, 0, 256)


def test_codes_sort_by_value_groups():
    assert sorted([Obis(1, 0, 2, 8, 0), Obis(0, 0, 1, 0, 0), Obis(1, 0, 1, 8, 0)])[0] == Obis(0, 0, 1, 0, 0)
