"""Modbus lines and meters in the configuration: what loads, what is refused and where."""

from __future__ import annotations

import pytest

from gateway.app import COLLECTORS, build_collectors
from gateway.cli import main
from gateway.collectors.mbus import MBusCollector
from gateway.collectors.modbus import ModbusCollector
from gateway.config import parse_config

from tests.test_config import problems

BASE = """\
[gateway]
id = "gw-1"
state_dir = "/tmp/gw"

[[buses]]
name = "rs485"
protocol = "modbus"
port = "/dev/ttyUSB1"

[[buses]]
name = "mbus1"
protocol = "mbus"
port = "/dev/ttyUSB1"

[[meters]]
name = "sub-1"
protocol = "modbus"
bus = "rs485"
unit = 7
map = "sdm630"

[[meters]]
name = "heat-1"
protocol = "mbus"
bus = "mbus1"
address = 5
"""

MAP = """\
description = "own meter"
type = "uint16"

[[registers]]
name = "power"
address = 100
unit = "W"
"""


def test_a_modbus_line_and_meter_load_with_their_defaults():
    config = parse_config(BASE, "gw.toml")
    line, meter = config.buses[0], config.meters[0]
    assert (line.baud, line.parity, line.stop_bits, line.response_timeout_ms, line.retries,
            line.inter_request_delay_ms) == (9600, "E", 1, 1000, 2, 0)
    assert (meter.unit, meter.map, meter.map_file, meter.schedule.interval_s) == (7, "sdm630", None, 900)


def test_a_modbus_line_may_share_its_port_with_an_mbus_bus_and_both_collectors_are_built():
    config = parse_config(BASE, "gw.toml")
    assert COLLECTORS["modbus"] == "gateway.collectors.modbus:ModbusCollector"
    assert [type(c) for c in build_collectors(config, sink=None)] == [ModbusCollector, MBusCollector]


def test_an_operators_own_map_file_is_accepted(tmp_path):
    path = tmp_path / "own.toml"
    path.write_text(MAP)
    config = parse_config(BASE.replace('map = "sdm630"', f'map_file = "{path}"'), "gw.toml")
    assert config.meters[0].map_file == path
    assert [e.name for e in build_collectors(config, sink=None)[0].maps["sub-1"].entries] == ["power"]


BROKEN = [
    ("a unit address of zero (broadcast)",
     BASE.replace("unit = 7", "unit = 0"),
     "gw.toml:19: meters[0].unit: Input should be greater than or equal to 1"),
    ("a unit address above 247",
     BASE.replace("unit = 7", "unit = 248"),
     "gw.toml:19: meters[0].unit: Input should be less than or equal to 247"),
    ("a map that is not shipped",
     BASE.replace('map = "sdm630"', 'map = "sdm120"'),
     "gw.toml:20: meters[0].map: no shipped register map is named 'sdm120' (maps: abb-b23, sdm630); or give map_file"),
    ("both a shipped map and a map file",
     BASE.replace('map = "sdm630"', 'map = "sdm630"\nmap_file = "/etc/gw/x.toml"'),
     "gw.toml:15: meters[0]: give exactly one of map (a shipped map) or map_file (your own)"),
    ("no map at all",
     BASE.replace('map = "sdm630"\n', ""),
     "gw.toml:15: meters[0]: give exactly one of map (a shipped map) or map_file (your own)"),
    ("a baud rate Modbus meters do not use",
     BASE.replace('port = "/dev/ttyUSB1"\n\n[[buses]]\nname = "mbus1"',
                  'port = "/dev/ttyUSB1"\nbaud = 14400\n\n[[buses]]\nname = "mbus1"'),
     "gw.toml:9: buses[0].baud: must be one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200"),
    ("a parity that does not exist",
     BASE.replace('port = "/dev/ttyUSB1"\n\n[[buses]]\nname = "mbus1"',
                  'port = "/dev/ttyUSB1"\nparity = "M"\n\n[[buses]]\nname = "mbus1"'),
     "gw.toml:9: buses[0].parity: Input should be 'E', 'O' or 'N'"),
    ("one and a half stop bits",
     BASE.replace('port = "/dev/ttyUSB1"\n\n[[buses]]\nname = "mbus1"',
                  'port = "/dev/ttyUSB1"\nstop_bits = 1.5\n\n[[buses]]\nname = "mbus1"'),
     "gw.toml:9: buses[0].stop_bits: Input should be 1 or 2"),
    ("a response timeout too short for any meter",
     BASE.replace('port = "/dev/ttyUSB1"\n\n[[buses]]\nname = "mbus1"',
                  'port = "/dev/ttyUSB1"\nresponse_timeout_ms = 5\n\n[[buses]]\nname = "mbus1"'),
     "gw.toml:9: buses[0].response_timeout_ms: Input should be greater than or equal to 20"),
    ("a misspelt line setting",
     BASE.replace('port = "/dev/ttyUSB1"\n\n[[buses]]\nname = "mbus1"',
                  'port = "/dev/ttyUSB1"\ntimeout_ms = 500\n\n[[buses]]\nname = "mbus1"'),
     "gw.toml:9: buses[0].timeout_ms: unknown setting (check the spelling; see `gateway config schema`)"),
    ("a modbus line with no port",
     BASE.replace('protocol = "modbus"\nport = "/dev/ttyUSB1"\n', 'protocol = "modbus"\n'),
     "gw.toml:5: buses[0]: give exactly one of port (serial device) or tcp (HOST:PORT)"),
    ("two meters at one unit address of a line",
     BASE + '\n[[meters]]\nname = "sub-2"\nprotocol = "modbus"\nbus = "rs485"\nunit = 7\nmap = "abb-b23"\n',
     "gw.toml:32: meters[2].unit: meter 'sub-1' on bus 'rs485' has unit 7 too"),
    ("a modbus meter on an M-Bus",
     BASE.replace('bus = "rs485"', 'bus = "mbus1"'),
     "gw.toml:18: meters[0].bus: bus 'mbus1' is mbus, but this meter speaks modbus"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BROKEN], ids=[n for n, _, _ in BROKEN])
def test_a_broken_modbus_configuration_gives_its_exact_one_line_error(text, expected):
    assert problems(text) == [expected]


def test_a_broken_map_file_is_reported_on_the_meters_line_with_the_maps_own_file_line_and_entry(tmp_path):
    path = tmp_path / "own.toml"
    path.write_text(MAP.replace("address = 100", "address = 70000"))
    text = BASE.replace('map = "sdm630"', f'map_file = "{path}"')
    assert problems(text) == [
        f"gw.toml:20: meters[0].map_file: {path}:6: registers[0] 'power': address: "
        "Input should be less than or equal to 65535"]


def test_a_map_file_that_does_not_exist_is_named(tmp_path):
    text = BASE.replace('map = "sdm630"', f'map_file = "{tmp_path}/none.toml"')
    assert problems(text) == [
        f"gw.toml:20: meters[0].map_file: {tmp_path}/none.toml: cannot read register map: No such file or directory"]


def test_check_config_exits_2_on_a_broken_map_file(tmp_path, capsys):
    own, config = tmp_path / "own.toml", tmp_path / "gw.toml"
    own.write_text(MAP + '[[registers]]\nname = "power"\naddress = 101\n')
    config.write_text(BASE.replace('map = "sdm630"', f'map_file = "{own}"'))
    assert main(["check-config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == \
        f"{config}:20: meters[0].map_file: {own}:9: registers[1] 'power': name: 'power' is used twice; " \
        "names must be unique"
