"""DLMS lines and meters in the configuration: what loads, what is refused and where."""

from __future__ import annotations

import pytest

from gateway.app import COLLECTORS, build_collectors
from gateway.collectors.dlms import DlmsCollector
from gateway.collectors.mbus import MBusCollector
from gateway.config import derived_system_title, parse_config
from gateway.errors import ConfigError

from tests.collectors.dlms_helpers import AK, EK, secret_file

BASE = """\
[gateway]
id = "{gateway_id}"
state_dir = "/tmp/gw"

[[buses]]
name = "rs485"
protocol = "dlms"
port = "/dev/ttyUSB1"
baud = 9600

[[buses]]
name = "mbus1"
protocol = "mbus"
port = "/dev/ttyUSB0"

[[meters]]
name = "elec-1"
protocol = "dlms"
bus = "rs485"
client_sap = 1
server_physical = 17
authentication = "gmac"
ek_file = "{ek}"
ak_file = "{ak}"
objects = ["1.0.1.8.0.255", "0.0.96.3.10.255:70:2"]
event_logs = ["0.0.99.98.0.255"]
[[meters.profiles]]
obis = "1.0.99.1.0.255"
capture_period_s = 900
[meters.clock_sync]
threshold_s = 10
set = true

[[meters]]
name = "heat-1"
protocol = "mbus"
bus = "mbus1"
address = 5
"""


def config_text(tmp_path, gateway_id="gw-1", ek="11" * 16, ak="22" * 16) -> str:
    return BASE.format(gateway_id=gateway_id, ek=secret_file(tmp_path, "ek", ek), ak=secret_file(tmp_path, "ak", ak))


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.toml")
    return info.value.problems


def test_a_dlms_line_and_meter_load_with_their_defaults(tmp_path):
    config = parse_config(config_text(tmp_path), "gw.toml")
    line, meter = config.buses[0], config.meters[0]
    assert (line.interface, line.baud, line.mode_e, line.response_timeout_ms) == ("hdlc", 9600, False, 3000)
    assert meter.effective_security == "authenticated+encrypted"
    assert meter.system_title == derived_system_title("gw-1").hex().upper()
    assert meter.profiles[0].obis == "1.0.99.1.0.255" and meter.clock_sync.set


def test_the_app_builds_a_dlms_collector_beside_the_mbus_one_and_hands_both_the_state(tmp_path):
    config = parse_config(config_text(tmp_path), "gw.toml")
    state = object()
    collectors = build_collectors(config, sink=None, state=state)
    assert [type(c) for c in collectors] == [DlmsCollector, MBusCollector]
    assert collectors[0].state is state
    assert COLLECTORS["dlms"] == "gateway.collectors.dlms:DlmsCollector"


@pytest.mark.parametrize("which", ["ek", "ak"])
def test_published_test_keys_are_refused_in_a_production_configuration(tmp_path, which):
    text = config_text(tmp_path, ek=EK if which == "ek" else "11" * 16, ak=AK if which == "ak" else "22" * 16)
    [problem] = problems(text)
    assert problem.startswith(f"gw.toml:{23 if which == 'ek' else 24}: meters[0].{which}_file: ")
    assert "published test key" in problem and "gateway.demo = true" in problem
    assert EK not in problem and AK not in problem


@pytest.mark.parametrize("gateway_id, extra", [("demo-box", ""), ("gw-1", "demo = true\n")])
def test_a_demo_gateway_may_use_the_test_keys(tmp_path, gateway_id, extra):
    text = config_text(tmp_path, gateway_id=gateway_id, ek=EK, ak=AK).replace(
        'state_dir = "/tmp/gw"\n', 'state_dir = "/tmp/gw"\n' + extra)
    assert parse_config(text, "gw.toml").meters[0].ek_file


BROKEN = [
    ("wrapper on a serial port", ('port = "/dev/ttyUSB1"\n', 'port = "/dev/ttyUSB1"\ninterface = "wrapper"\n'),
     "gw.toml:5: buses[0]: the wrapper (IEC 62056-47) runs over TCP"),
    ("gmac without keys", ('ek_file = "', '# ek_file = "'),
     "gw.toml:16: meters[0]: HLS-GMAC and ciphering need ek_file and ak_file"),
    ("a bad object", ('"1.0.1.8.0.255", ', '"1.0.1.8", '),
     "gw.toml:25: meters[0].objects: '1.0.1.8' is not OBIS[:CLASS:ATTR]"),
    ("a bad system title", ("client_sap = 1\n", 'client_sap = 1\nsystem_title = "XYZ"\n'),
     "gw.toml:21: meters[0].system_title: must be 16 hex digits (8 bytes)"),
    ("both physical address and serial", ("server_physical = 17\n", "server_physical = 17\nserial_number = 1234\n"),
     "gw.toml:16: meters[0]: give server_physical or serial_number, not both"),
]


@pytest.mark.parametrize("name, change, expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_dlms_settings_are_refused_with_file_line_and_field(tmp_path, name, change, expected):
    text = config_text(tmp_path).replace(*change, 1)
    assert any(p.startswith(expected) for p in problems(text)), problems(text)
