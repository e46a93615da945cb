"""Register maps: the shipped ones load and read in few requests; a broken map is refused
with one exact line per problem naming the file, the entry and the reason."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from gateway.errors import ConfigError
from gateway.modbus_maps import MapError, load_map_file, parse_map, shipped_map, shipped_maps

VALID = """\
description = "test meter"
function = 4
type = "float32"

[[registers]]
name = "voltage"
address = 0x0000
unit = "V"
obis = "1.0.32.7.0.255"

[[registers]]
name = "energy"
address = 0x0002
type = "uint32"
scale = 0.01
unit = "kWh"
"""


def problems(text: str, path: str = "m.toml") -> list[str]:
    with pytest.raises(MapError) as info:
        parse_map(text, path)
    return info.value.problems


def test_a_valid_map_loads_with_its_defaults_applied():
    register_map = parse_map(VALID, "/etc/gw/meter-x.toml")
    voltage, energy = register_map.entries
    assert register_map.name == "meter-x"
    assert (voltage.function, voltage.data_type.name, voltage.word_order, voltage.obis) == \
        (4, "float32", "big", "1-0:32.7.0*255")
    assert (energy.data_type.name, energy.factor, energy.unit) == ("uint32", Decimal("0.01"), "kWh")


def test_a_toml_float_scale_is_taken_as_written_not_as_its_binary_value():
    entry = parse_map(VALID.replace("scale = 0.01", "scale = 0.1")).entries[1]
    assert entry.factor == Decimal("0.1") and str(entry.factor) == "0.1"


def test_a_power_of_ten_scaler_is_an_exact_factor():
    assert parse_map(VALID.replace("scale = 0.01", "scaler = -3")).entries[1].factor == Decimal("0.001")


BROKEN = [
    ("address beyond the last register",
     VALID.replace("address = 0x0002", "address = 0x10000"),
     "m.toml:13: registers[1] 'energy': address: Input should be less than or equal to 65535"),
    ("unknown key in an entry",
     VALID.replace('unit = "V"', 'unit = "V"\nregister = 5'),
     "m.toml:9: registers[0] 'voltage': register: unknown setting (check the spelling; see `gateway config schema`)"),
    ("unknown data type",
     VALID.replace('type = "uint32"', 'type = "uint24"'),
     "m.toml:14: registers[1] 'energy': type: Input should be 'int16', 'uint16', 'int32', 'uint32', 'int64', "
     "'uint64', 'float32' or 'float64'"),
    ("function that reads no registers",
     VALID.replace("function = 4", "function = 1"),
     "m.toml:2: function: Input should be 3 or 4"),
    ("word order misspelt",
     VALID.replace('type = "uint32"', 'type = "uint32"\nword_order = "swapped"'),
     "m.toml:15: registers[1] 'energy': word_order: Input should be 'big' or 'little'"),
    ("scale and scaler together",
     VALID.replace("scale = 0.01", "scale = 0.01\nscaler = -2"),
     "m.toml:11: registers[1] 'energy': give scale (a factor) or scaler (a power of ten), not both"),
    ("scale that is no number",
     VALID.replace("scale = 0.01", 'scale = "one hundredth"'),
     "m.toml:15: registers[1] 'energy': scale: 'one hundredth' is not a decimal number"),
    ("scale of zero",
     VALID.replace("scale = 0.01", "scale = 0"),
     "m.toml:15: registers[1] 'energy': scale: must be a finite number other than zero"),
    ("OBIS code with a value group above 255",
     VALID.replace("1.0.32.7.0.255", "1.0.32.7.0.256"),
     "m.toml:9: registers[0] 'voltage': obis: OBIS value group above 255 in '1.0.32.7.0.256' at field obis"),
    ("quantity name with a space",
     VALID.replace('name = "voltage"', 'name = "voltage l1"'),
     "m.toml:6: registers[0] 'voltage l1': name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.:;-]{0,127}$'"),
    ("entry without an address",
     VALID.replace("address = 0x0000\n", ""),
     "m.toml:5: registers[0] 'voltage': address: required setting is missing"),
    ("entry without a type and no default",
     VALID.replace('type = "float32"\n', ""),
     "m.toml:1: (top level): entry 'voltage' has no type and the map sets no default type"),
    ("map without entries",
     'description = "empty"\ntype = "uint16"\nregisters = []\n',
     "m.toml:3: registers: List should have at least 1 item after validation, not 0"),
    ("two entries with one name",
     VALID.replace('name = "energy"', 'name = "voltage"'),
     "m.toml:12: registers[1] 'voltage': name: 'voltage' is used twice; names must be unique"),
    ("a float32 on the second register of another",
     VALID.replace("address = 0x0002", "address = 0x0001"),
     "m.toml:13: registers[1] 'energy': address: registers 0x0001..0x0002 overlap entry 'voltage' (0x0000..0x0001)"),
    ("an entry past register 0xFFFF",
     VALID.replace("address = 0x0002", "address = 0xFFFF"),
     "m.toml:13: registers[1] 'energy': address: a uint32 at 0xFFFF runs past register 0xFFFF"),
    ("serial number entry that does not exist",
     'serial_number = "serial"\n' + VALID,
     "m.toml:1: serial_number: no entry is named 'serial' (entries: voltage, energy)"),
    ("serial number that is a float",
     'serial_number = "voltage"\n' + VALID,
     "m.toml:1: serial_number: entry 'voltage' is a float32: a serial number is an unscaled integer"),
    ("serial number with a scale",
     'serial_number = "energy"\n' + VALID,
     "m.toml:1: serial_number: entry 'energy' is a uint32 with a scale: a serial number is an unscaled integer"),
    ("more registers per read than Modbus allows",
     "max_registers = 126\n" + VALID,
     "m.toml:1: max_registers: Input should be less than or equal to 125"),
    ("not-available marker wider than a register",
     "not_available = 0x1FFFF\n" + VALID,
     "m.toml:1: not_available: Input should be less than or equal to 65535"),
    ("TOML syntax error",
     VALID.replace("address = 0x0000", "address = = 0"),
     "m.toml:7: TOML syntax: Invalid value (at line 7, column 11)"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BROKEN], ids=[n for n, _, _ in BROKEN])
def test_a_broken_map_gives_its_exact_one_line_error(text, expected):
    assert problems(text) == [expected]


def test_every_problem_of_a_map_is_reported_at_once():
    text = VALID.replace("address = 0x0002", "address = 0x10000").replace('type = "uint32"', 'type = "uint24"')
    assert len(problems(text)) == 2


def test_a_missing_map_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_map_file(tmp_path / "none.toml")
    assert info.value.problems == [f"{tmp_path / 'none.toml'}: cannot read register map: No such file or directory"]


# -- grouping into reads ------------------------------------------------------------------------

def blocks_of(text: str) -> list[tuple[int, int, int, list[str]]]:
    return [(b.function, b.address, b.count, [e.name for e in b.entries]) for b in parse_map(text).blocks()]


GROUPING = """\
type = "uint16"
{settings}
[[registers]]
name = "a"
address = 10
[[registers]]
name = "b"
address = 11
type = "uint32"
[[registers]]
name = "c"
address = 15
[[registers]]
name = "d"
address = 13
[[registers]]
name = "e"
address = 11
function = 4
"""


@pytest.mark.parametrize(("settings", "expected"), [
    ("", [(3, 10, 4, ["a", "b", "d"]), (3, 15, 1, ["c"]), (4, 11, 1, ["e"])]),
    ("max_gap = 1", [(3, 10, 6, ["a", "b", "d", "c"]), (4, 11, 1, ["e"])]),
    ("max_gap = 1\nmax_registers = 4", [(3, 10, 4, ["a", "b", "d"]), (3, 15, 1, ["c"]), (4, 11, 1, ["e"])]),
    ("max_registers = 2", [(3, 10, 1, ["a"]), (3, 11, 2, ["b"]), (3, 13, 1, ["d"]), (3, 15, 1, ["c"]),
                           (4, 11, 1, ["e"])]),
], ids=["adjacent only", "gaps of one", "gaps and a limit", "limit of two"])
def test_entries_are_grouped_into_as_few_reads_as_the_map_allows(settings, expected):
    assert blocks_of(GROUPING.format(settings=settings)) == expected


def test_a_read_never_exceeds_125_registers():
    entries = "".join(f'[[registers]]\nname = "r{i}"\naddress = {i}\n' for i in range(300))
    blocks = parse_map('type = "uint16"\n' + entries).blocks()
    assert [b.count for b in blocks] == [125, 125, 50]


# -- the shipped maps -------------------------------------------------------------------------

def test_the_gateway_ships_the_sdm630_and_abb_b23_maps():
    assert {"sdm630", "abb-b23"} <= set(shipped_maps())


@pytest.mark.parametrize("name", sorted(shipped_maps()))
def test_every_shipped_map_is_valid_and_names_its_source(name):
    register_map = shipped_map(name)
    assert register_map.serial_entry is not None and register_map.description
    assert re.search(r"^# Sources?:", shipped_maps()[name].read_text(), re.MULTILINE)


def test_the_sdm630_map_reads_input_register_floats_and_its_serial_number_in_twelve_requests():
    register_map = shipped_map("sdm630")
    by_name = {e.name: e for e in register_map.entries}
    assert (by_name["voltage_l1"].function, by_name["voltage_l1"].address, by_name["voltage_l1"].data_type.name) == \
        (4, 0x0000, "float32")
    assert (by_name["active_energy_import"].address, by_name["active_energy_import"].obis) == (0x0048, "1-0:1.8.0*255")
    assert (by_name["frequency"].address, by_name["current_neutral"].address) == (0x0046, 0x00E0)
    assert (by_name["serial_number"].function, by_name["serial_number"].address) == (3, 0xFC00)
    blocks = register_map.blocks()
    assert max(b.count for b in blocks) <= 80  # the manual: at most 40 parameters per request
    assert [(b.function, b.address, b.count) for b in blocks][:2] == [(3, 0xFC00, 2), (4, 0x0000, 44)]
    assert len(blocks) == 11


def test_the_abb_b23_map_reads_scaled_holding_registers_in_three_requests():
    register_map = shipped_map("abb-b23")
    by_name = {e.name: e for e in register_map.entries}
    assert (by_name["active_energy_import"].address, by_name["active_energy_import"].data_type.name,
            by_name["active_energy_import"].factor) == (0x5000, "uint64", Decimal("0.01"))
    assert (by_name["voltage_l1"].address, by_name["voltage_l1"].factor) == (0x5B00, Decimal("0.1"))
    assert (by_name["active_power_total"].address, by_name["active_power_total"].data_type.name) == (0x5B14, "int32")
    assert (by_name["frequency"].address, by_name["power_factor_total"].address) == (0x5B2C, 0x5B3A)
    assert [(b.function, b.address, b.count) for b in register_map.blocks()] == \
        [(3, 0x5000, 36), (3, 0x5B00, 62), (3, 0x8900, 2)]
