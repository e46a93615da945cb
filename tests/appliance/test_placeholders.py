"""The example configuration's placeholders make the packaged service refuse to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.placeholders import is_documentation_host, placeholder_problems

EXAMPLE = Path(__file__).parents[2] / "config" / "gateway.toml"

SITE = """\
[gateway]
id = "gw-substation-7"
state_dir = "{state}"

[[uplinks.mqtt]]
name = "hes"
url = "mqtts://mqtt.utility.de:8883"

[[buses]]
name = "remote"
protocol = "mbus"
tcp = "10.1.2.3:10001"
"""


@pytest.mark.parametrize("host", ["example.com", "mqtt.hes.example.com", "hes.example.net", "x.example.org",
                                  "broker.example", "hes.invalid", "192.0.2.10", "198.51.100.1", "203.0.113.99",
                                  "2001:db8::1", "[2001:db8::1]", "MQTT.EXAMPLE.COM."])
def test_documentation_hosts_are_placeholders(host):
    assert is_documentation_host(host)


@pytest.mark.parametrize("host", ["mqtt.utility.de", "example.company.com", "notexample.com", "10.0.0.1",
                                  "127.0.0.1", "192.0.3.1", "2001:db9::1", "localhost"])
def test_real_hosts_are_not_placeholders(host):
    assert not is_documentation_host(host)


def test_the_shipped_example_is_valid_but_full_of_placeholders():
    config = load_config(EXAMPLE)
    problems = placeholder_problems(config, EXAMPLE)
    assert any(": gateway.id: " in p for p in problems)
    assert any(": uplinks.mqtt[0].url: " in p for p in problems)
    for problem in problems:
        line = int(problem.split(":")[1])
        assert line > 1, problem  # points at the setting, not the top of the file


def test_a_site_configuration_has_no_placeholders(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(SITE.format(state=tmp_path))
    assert placeholder_problems(load_config(path), path) == []


def test_each_placeholder_is_named_with_file_line_and_field(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(SITE.format(state=tmp_path).replace("gw-substation-7", "gw-example-0001")
                    .replace("10.1.2.3", "192.0.2.10"))
    assert placeholder_problems(load_config(path), path) == [
        f"{path}:2: gateway.id: 'gw-example-0001' is the example's placeholder; set this gateway's own identity",
        f"{path}:12: buses[0].tcp: 192.0.2.10:10001 is a documentation placeholder; set the TCP serial server's address",
    ]


def test_run_with_refuse_placeholders_exits_2_naming_them(tmp_path, capsys):
    path = tmp_path / "gateway.toml"
    path.write_text(SITE.format(state=tmp_path).replace("mqtt.utility.de", "mqtt.hes.example.com"))
    assert main(["run", "--config", str(path), "--refuse-placeholders"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:7: uplinks.mqtt[0].url: mqtt.hes.example.com is a documentation placeholder" in err
    assert not (tmp_path / "store.sqlite").exists()


def test_check_config_passes_the_example_and_warns_about_its_placeholders(capsys):
    assert main(["check-config", str(EXAMPLE)]) == 0
    captured = capsys.readouterr()
    assert ": ok (" in captured.out
    assert "warning: " in captured.err and "gateway.id" in captured.err
    assert "the packaged service refuses to start with it" in captured.err
