"""Broken configurations are refused with one exact line each: file:line: field: reason."""

from __future__ import annotations

import textwrap

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

VALID = """\
[gateway]
id = "gw-1"
state_dir = "/tmp/gw"
timezone = "Europe/Berlin"

[store]
max_bytes = 104857600

[[uplinks.mqtt]]
url = "mqtts://hes.example.com"

[[buses]]
name = "bus1"
protocol = "mbus"
port = "/dev/ttyUSB0"

[[meters]]
name = "heat-1"
protocol = "mbus"
bus = "bus1"
address = 5
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.toml")
    return info.value.problems


def test_the_valid_example_loads():
    config = parse_config(VALID, "gw.toml")
    assert config.meters[0].address == 5
    assert str(config.store_path) == "/tmp/gw/store.sqlite"


BROKEN = [
    ("gateway id with a space",
     VALID.replace('id = "gw-1"', 'id = "gw 1"'),
     "gw.toml:2: gateway.id: must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
    ("unknown time zone",
     VALID.replace("Europe/Berlin", "Mars/Olympus"),
     "gw.toml:4: gateway.timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Berlin)"),
    ("missing gateway section",
     VALID.replace('[gateway]\nid = "gw-1"\nstate_dir = "/tmp/gw"\ntimezone = "Europe/Berlin"\n', ""),
     "gw.toml:1: gateway: required setting is missing"),
    ("missing gateway id",
     VALID.replace('id = "gw-1"\n', ""),
     "gw.toml:1: gateway.id: required setting is missing"),
    ("misspelt store setting",
     VALID.replace("max_bytes = 104857600", "max_byte = 104857600"),
     "gw.toml:7: store.max_byte: unknown setting (check the spelling; see `gateway config schema`)"),
    ("store bound too small",
     VALID.replace("max_bytes = 104857600", "max_bytes = 10"),
     "gw.toml:7: store.max_bytes: Input should be greater than or equal to 1048576"),
    ("store synchronous mode unknown",
     VALID.replace("max_bytes = 104857600", 'synchronous = "off"'),
     "gw.toml:7: store.synchronous: Input should be 'full' or 'normal'"),
    ("store age not positive",
     VALID.replace("max_bytes = 104857600", "max_age_days = 0"),
     "gw.toml:7: store.max_age_days: Input should be greater than 0"),
    ("plaintext MQTT to a remote broker",
     VALID.replace("mqtts://hes.example.com", "mqtt://hes.example.com"),
     "gw.toml:9: uplinks.mqtt[0]: plaintext MQTT to hes.example.com would send meter data unencrypted; "
     "use mqtts:// or set allow_plaintext = true"),
    ("MQTT URL with a wrong scheme",
     VALID.replace("mqtts://hes.example.com", "http://hes.example.com"),
     "gw.toml:10: uplinks.mqtt[0].url: scheme must be mqtt:// or mqtts://"),
    ("MQTT URL with a bad port",
     VALID.replace("mqtts://hes.example.com", "mqtts://hes.example.com:99999"),
     "gw.toml:10: uplinks.mqtt[0].url: the port is not a number from 1 to 65535"),
    ("client certificate without its key",
     VALID.replace('url = "mqtts://hes.example.com"', 'url = "mqtts://hes.example.com"\ncert_file = "/etc/gw/c.pem"'),
     "gw.toml:9: uplinks.mqtt[0]: cert_file and key_file go together (client certificate and its key)"),
    ("MQTT batch size zero",
     VALID.replace('url = "mqtts://hes.example.com"', 'url = "mqtts://hes.example.com"\nbatch_size = 0'),
     "gw.toml:11: uplinks.mqtt[0].batch_size: Input should be greater than or equal to 1"),
    ("bus with an unknown protocol",
     VALID.replace('protocol = "mbus"\nport', 'protocol = "zigbee"\nport'),
     "gw.toml:12: buses[0]: unknown protocol 'zigbee'"),
    ("bus with a non-standard baud rate",
     VALID.replace('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nbaud = 1234'),
     "gw.toml:16: buses[0].baud: must be one of 300, 600, 1200, 2400, 4800, 9600, 19200, 38400"),
    ("bus with both a port and a TCP server",
     VALID.replace('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\ntcp = "10.0.0.5:10001"'),
     "gw.toml:12: buses[0]: give exactly one of port (serial device) or tcp (HOST:PORT)"),
    ("bus with neither a port nor a TCP server",
     VALID.replace('port = "/dev/ttyUSB0"\n', ""),
     "gw.toml:12: buses[0]: give exactly one of port (serial device) or tcp (HOST:PORT)"),
    ("TCP serial server without a port number",
     VALID.replace('port = "/dev/ttyUSB0"', 'tcp = "10.0.0.5"'),
     "gw.toml:15: buses[0].tcp: must be HOST:PORT"),
    ("meter address above 250",
     VALID.replace("address = 5", "address = 300"),
     "gw.toml:21: meters[0].address: Input should be less than or equal to 250"),
    ("meter with both addresses",
     VALID.replace("address = 5", 'address = 5\nsecondary = "12345678"'),
     "gw.toml:17: meters[0]: give exactly one of address (primary) or secondary"),
    ("meter with a malformed secondary address",
     VALID.replace("address = 5", 'secondary = "12A4"'),
     "gw.toml:21: meters[0].secondary: must be an 8-digit identification number or 16 hex digits"),
    ("meter on a bus that does not exist",
     VALID.replace('bus = "bus1"', 'bus = "bus9"'),
     "gw.toml:20: meters[0].bus: no bus is named 'bus9' (buses: bus1)"),
    ("two meters with one name",
     VALID + '\n[[meters]]\nname = "heat-1"\nprotocol = "mbus"\nbus = "bus1"\naddress = 6\n',
     "gw.toml:24: meters[1].name: 'heat-1' is used twice; names must be unique"),
    ("schedule offset beyond its interval",
     VALID + "[meters.schedule]\ninterval_s = 60\noffset_s = 60\n",
     "gw.toml:22: meters[0].schedule: offset_s must be smaller than interval_s"),
    ("interval of zero seconds",
     VALID + "[meters.schedule]\ninterval_s = 0\n",
     "gw.toml:23: meters[0].schedule.interval_s: Input should be greater than or equal to 1"),
    ("TOML syntax error",
     VALID.replace('address = 5', 'address = = 5'),
     "gw.toml:21: TOML syntax: Invalid value (at line 21, column 11)"),
    ("a value of the wrong type",
     VALID.replace("address = 5", 'address = "five"'),
     "gw.toml:21: meters[0].address: Input should be a valid integer, unable to parse string as an integer"),
]


WIRELESS = VALID + """
[[buses]]
name = "radio"
protocol = "wmbus"
port = "/dev/ttyACM0"
dongle = "imst"

[[meters]]
name = "water-1"
protocol = "wmbus"
bus = "radio"
id = "12345678"
expected_interval_s = 120
"""

WIRELESS_BROKEN = [
    ("unknown dongle",
     WIRELESS.replace('dongle = "imst"', 'dongle = "rtl-sdr"'),
     "gw.toml:27: buses[1].dongle: Input should be 'imst', 'amber' or 'cul'"),
    ("a cul asked for two modes",
     WIRELESS.replace('dongle = "imst"', 'dongle = "cul"\nmode = "c1+t1"'),
     "gw.toml:23: buses[1]: a cul stick (culfw) listens to one mode at a time: t1, c1 or s1"),
    ("unknown link mode",
     WIRELESS.replace('dongle = "imst"', 'dongle = "imst"\nmode = "t2"'),
     "gw.toml:28: buses[1].mode: Input should be 't1', 'c1', 's1' or 'c1+t1'"),
    ("a dongle at a speed no dongle uses",
     WIRELESS.replace('dongle = "imst"', 'dongle = "imst"\nbaud = 4800'),
     "gw.toml:28: buses[1].baud: must be one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600"),
    ("a silence timeout of zero",
     WIRELESS.replace('dongle = "imst"', 'dongle = "imst"\nsilence_timeout_s = 0'),
     "gw.toml:28: buses[1].silence_timeout_s: Input should be greater than 0"),
    ("a wireless meter on a wired M-Bus",
     WIRELESS.replace('bus = "radio"', 'bus = "bus1"'),
     "gw.toml:32: meters[1].bus: bus 'bus1' is mbus, but this meter speaks wmbus"),
    ("a wired meter on a radio dongle",
     WIRELESS.replace('bus = "bus1"', 'bus = "radio"'),
     "gw.toml:20: meters[0].bus: bus 'radio' is wmbus, but this meter speaks mbus"),
    ("an identification that is not 8 digits",
     WIRELESS.replace('id = "12345678"', 'id = "1234567"'),
     'gw.toml:33: meters[1].id: must be the meter\'s 8-digit identification number, e.g. "12345678"'),
    ("a manufacturer that is not 3 letters",
     WIRELESS.replace('id = "12345678"', 'id = "12345678"\nmanufacturer = "KAMS"'),
     'gw.toml:34: meters[1].manufacturer: must be the 3-letter manufacturer code, e.g. "KAM"'),
    ("a wireless meter without its transmission interval",
     WIRELESS.replace("expected_interval_s = 120\n", ""),
     "gw.toml:29: meters[1].expected_interval_s: required setting is missing"),
    ("two meters a telegram cannot tell apart",
     WIRELESS + '\n[[meters]]\nname = "water-2"\nprotocol = "wmbus"\nbus = "radio"\nid = "12345678"\n'
                'manufacturer = "KAM"\nexpected_interval_s = 120\n',
     "gw.toml:40: meters[2].id: meter 'water-1' on bus 'radio' has the same identification; set manufacturer, "
     "version or device_type to tell them apart"),
]
BROKEN += WIRELESS_BROKEN


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in BROKEN], ids=[n for n, _, _ in BROKEN])
def test_broken_configuration_gives_its_exact_one_line_error(text, expected):
    assert problems(text) == [expected]


def test_there_are_at_least_twenty_broken_configurations():
    assert len(BROKEN) >= 20


def test_every_problem_is_reported_at_once():
    text = VALID.replace("Europe/Berlin", "Nowhere").replace("address = 5", "address = 999")
    assert len(problems(text)) == 2


def test_check_config_exits_2_and_prints_each_problem(tmp_path, capsys):
    path = tmp_path / "gw.toml"
    path.write_text(VALID.replace("address = 5", "address = 300"))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"{path}:21: meters[0].address: Input should be less than or equal to 250"


def test_check_config_of_a_valid_file_exits_0(tmp_path, capsys):
    path = tmp_path / "gw.toml"
    path.write_text(VALID)
    assert main(["check-config", str(path)]) == 0
    assert "ok" in capsys.readouterr().out


def test_a_missing_file_is_named_in_the_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.problems == [f"{tmp_path / 'nope.toml'}: cannot read configuration: No such file or directory"]


def test_the_schema_is_json_with_every_section(capsys):
    import json

    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"gateway", "store", "uplinks", "buses", "meters", "signing"} <= set(schema["properties"])


def test_a_secret_file_readable_by_others_is_refused(tmp_path):
    from gateway.config import read_secret

    secret = tmp_path / "password"
    secret.write_text("hunter2")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        read_secret(secret)
    assert "hunter2" not in str(info.value)
    secret.chmod(0o600)
    assert read_secret(secret) == b"hunter2"


def test_a_systemd_credential_is_read_from_the_credentials_directory(tmp_path, monkeypatch):
    from gateway.config import read_secret

    (tmp_path / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret("credential:mqtt-password") == b"s3cret"


def test_the_documented_example_configuration_is_valid():
    from pathlib import Path

    example = Path(__file__).parents[1] / "config" / "gateway.toml"
    config = load_config(example)
    assert config.gateway.id == "gw-example-0001" and config.meters


# -- wireless M-Bus ---------------------------------------------------------------------------------

def test_a_wireless_dongle_and_meter_load_with_their_defaults():
    config = parse_config(WIRELESS, "gw.toml")
    radio, meter = config.buses[1], config.meters[1]
    assert (radio.dongle, radio.mode, radio.line_baud, radio.silence_timeout_s, radio.store_unknown) == \
        ("imst", "t1", 57600, 600, False)
    assert radio.link_modes == ("T1",)
    assert (meter.id, meter.key_file, meter.not_heard_after, meter.expected_interval_s) == ("12345678", None, 3, 120)


@pytest.mark.parametrize("dongle, baud", [("imst", 57600), ("amber", 9600), ("cul", 38400)])
def test_each_dongle_defaults_to_its_own_line_speed(dongle, baud):
    assert parse_config(WIRELESS.replace('dongle = "imst"', f'dongle = "{dongle}"')).buses[1].line_baud == baud




def test_two_meters_with_one_identification_are_fine_when_their_manufacturers_differ():
    text = WIRELESS.replace('id = "12345678"', 'id = "12345678"\nmanufacturer = "ELS"')
    text += '\n[[meters]]\nname = "water-2"\nprotocol = "wmbus"\nbus = "radio"\nid = "12345678"\nmanufacturer = "KAM"\n'
    text += "expected_interval_s = 120\n"
    assert len(parse_config(text, "gw.toml").meters) == 3


@pytest.mark.parametrize("content, mode, reason", [
    ("000102030405060708090A0B0C0D0E0F\n", 0o644,
     "{path}: secret file is readable by other users (mode 644); run: chmod 600 {path}"),
    ("not a key", 0o600, "{path}: an AES-128 key file holds 32 hex digits, this one does not"),
    (None, None, "{path}: cannot read secret file: No such file or directory"),
], ids=["readable by others", "not hex", "missing"])
def test_a_meter_key_file_that_cannot_be_used_is_named_with_the_reason(tmp_path, content, mode, reason):
    path = tmp_path / "water-1.key"
    if content is not None:
        path.write_text(content)
        path.chmod(mode)
    text = WIRELESS.replace("expected_interval_s = 120", f'expected_interval_s = 120\nkey_file = "{path}"')
    assert problems(text) == [f"gw.toml:35: meters[1].key_file: {reason.format(path=path)}"]


def test_a_meter_key_file_only_the_service_can_read_is_accepted_and_never_quoted(tmp_path):
    path = tmp_path / "water-1.key"
    path.write_text("000102030405060708090a0b0c0d0e0f\n")
    path.chmod(0o600)
    text = WIRELESS.replace("expected_interval_s = 120", f'expected_interval_s = 120\nkey_file = "{path}"')
    config = parse_config(text, "gw.toml")
    assert config.meters[1].key_file == str(path) and "0001020304" not in repr(config)


def test_check_config_counts_the_wireless_bus_and_meter(tmp_path, capsys):
    path = tmp_path / "gw.toml"
    path.write_text(WIRELESS)
    assert main(["check-config", str(path)]) == 0
    assert "2 buses, 2 meters" in capsys.readouterr().out
