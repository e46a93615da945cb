"""``gateway read dlms`` in a subprocess against the gurux meter: one JSON object with exact
values, exit 1 when the meter does not answer or refuses, 2 for bad usage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.collectors.dlms_helpers import key_files

pytestmark = pytest.mark.integration


def gateway(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", "read", "dlms", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_explains_every_option():
    done = gateway("--help")
    assert done.returncode == 0
    for option in ("--tcp", "--port", "--baud", "--mode-e", "--client-sap", "--server-address", "--auth", "--secure",
                   "--system-title", "--ek-file", "--ak-file", "--password-file", "--profile", "--from", "--to",
                   "--state-dir", "OBIS[:CLASS:ATTR]", "Exit 0", "dlms-counters.json"):
        assert option in done.stdout, option


def test_a_secured_read_prints_exact_values_and_a_profile_and_a_second_run_goes_on_counting(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(auth="gmac", secure=True)
    keys = key_files(tmp_path)
    args = ("--tcp", "%s:%d" % peer.address, "--auth", "gmac", "--secure", "--ek-file", keys["ek_file"],
            "--ak-file", keys["ak_file"], "--state-dir", str(tmp_path / "state"), "--max-pdu-size", "128",
            "1.0.1.8.0.255", "1-0:1.8.0*255:3:3", "0.0.1.0.0.255:8:2",
            "--profile", "1.0.99.1.0.255", "--from", "2024-01-01T00:15:00+00:00", "--to", "2024-01-01T00:45")
    first = gateway(*args)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["device"] == "dlms-GRX0000012345678"
    energy, scaler_unit, clock = out["values"]
    assert energy == {"obis": "1.0.1.8.0.255", "class": 3, "attribute": 2, "value": "123456.7", "unit": "Wh"}
    assert json.loads(scaler_unit["value"]) == [-1, 30]
    assert clock["value"][-6:] in ("+00:00", "Z") or clock["value"][19] in "+-"
    profile = out["profile"]
    assert profile["obis"] == "1.0.99.1.0.255"
    assert [(c["obis"], c["class"], c["attribute"], c["unit"]) for c in profile["columns"]] == [
        ("0.0.1.0.0.255", 8, 2, None), ("1.0.1.8.0.255", 3, 2, "Wh")]
    assert profile["rows"] == [["2024-01-01T00:15:00+00:00", "100025.0"], ["2024-01-01T00:30:00+00:00", "100050.0"],
                               ["2024-01-01T00:45:00+00:00", "100075.0"]]
    assert "published test key" in first.stderr
    # The meter refuses replayed counters: a second run works only because they were kept.
    second = gateway(*args)
    assert second.returncode == 0, second.stderr
    counters = json.loads((tmp_path / "state" / "dlms-counters.json").read_text())
    assert int(counters[f"dlms.ic.out.{_host_title()}"]) == 2000


def _host_title() -> str:
    from gateway.cli.dlms_read import _host_title as title

    return title().lower()


def test_hdlc_over_a_serial_line_with_lls(request, tmp_path):
    request.node.add_marker(pytest.mark.dlms_meter(auth="low"))
    tty = request.getfixturevalue("dlms_meter_serial")
    keys = key_files(tmp_path)
    done = gateway("--port", tty, "--auth", "low", "--client-sap", "17", "--password-file", keys["password_file"],
                   "--state-dir", str(tmp_path), "1.0.1.8.0.255")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["values"][0]["value"] == "123456.7"
    assert json.loads(done.stdout)["profile"] is None


def test_a_silent_meter_exits_1_with_one_line(silent_tcp_server, tmp_path):
    done = gateway("--tcp", "%s:%d" % silent_tcp_server, "--timeout-ms", "200", "--state-dir", str(tmp_path),
                   "1.0.1.8.0.255")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"gateway: meter at {'%s:%d' % silent_tcp_server}: TCP serial server {'%s:%d' % silent_tcp_server}: "
        "nothing received within 200 ms"]


def test_wrong_keys_exit_1_and_name_no_key(start_dlms_meter, tmp_path):
    peer = start_dlms_meter(auth="gmac", secure=True)
    keys = key_files(tmp_path, ek="11" * 16)
    done = gateway("--tcp", "%s:%d" % peer.address, "--auth", "gmac", "--secure", "--ek-file", keys["ek_file"],
                   "--ak-file", keys["ak_file"], "--state-dir", str(tmp_path), "1.0.1.8.0.255")
    assert done.returncode == 1 and "association refused" in done.stderr
    assert "11" * 16 not in done.stderr.lower()


@pytest.mark.parametrize("args, message", [
    (("--tcp", "127.0.0.1:1", "1.0.1.8"), "not an OBIS code"),
    (("--tcp", "127.0.0.1:1"), "name at least one object"),
    (("--tcp", "127.0.0.1:1", "--auth", "gmac", "1.0.1.8.0.255"), "need ek_file and ak_file"),
    (("--tcp", "127.0.0.1:1", "--profile", "1.0.99.1.0.255", "--from", "yesterday"), "not an ISO 8601"),
])
def test_bad_usage_exits_2_with_the_reason(args, message):
    done = gateway(*args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
