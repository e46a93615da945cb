"""``gateway scan mbus`` and ``gateway read mbus`` end to end: a subprocess against
simulators on pseudo-terminals, JSON checked against a direct decode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.cli.decode_mbus import decode_to_json

from tests.collectors.mbus_helpers import ROOT, frame_file, simulator_process

pytestmark = pytest.mark.integration


def gateway(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


SLAVES = {3: [frame_file("EDC")], 8: [frame_file("ACW_Itron-BM-plus-m")], 12: [frame_file("tecson")]}


@pytest.fixture(scope="module", params=["package", "peer"])
def bus(request):
    with simulator_process(request.param, SLAVES, mute=[12], baud=9600) as pty:
        yield pty


def test_read_prints_the_decoded_telegram_with_the_device(bus):
    run = gateway("read", "mbus", "--port", bus, "--baud", "9600", "--address", "3", "--json")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    expected = decode_to_json(frame_file("EDC").read_text())
    assert got["device"] == "EDC-11120895-02-04"
    assert got["header"] == expected["header"] and got["records"] == expected["records"]
    assert got["link"]["a"] == 3


def test_read_by_secondary_address_prints_the_same_shape(bus):
    run = gateway("read", "mbus", "--port", bus, "--baud", "9600", "--secondary", "1149037877040E16", "--json")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["device"] == "ACW-11490378-0e-16"
    assert got["records"] == decode_to_json(frame_file("ACW_Itron-BM-plus-m").read_text())["records"]


def test_read_of_a_silent_meter_fails_with_the_timeout_and_the_retries(bus):
    run = gateway("read", "mbus", "--port", bus, "--baud", "9600", "--address", "12", "--retries", "1")
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.strip() == "gateway: meter at address 12 did not answer (timeout after 90 ms, 1 retry)"


def test_read_without_json_prints_a_table_of_named_quantities(bus):
    run = gateway("read", "mbus", "--port", bus, "--baud", "9600", "--address", "3")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == "EDC-11120895-02-04 (status 00)"
    assert "flow_temperature;subunit=1" in run.stdout


def test_secondary_scan_lists_every_answering_meter_and_says_what_to_do_next(bus):
    run = gateway("scan", "mbus", "--port", bus, "--baud", "9600", "--secondary", "--json", "--retries", "0")
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert sorted((m["address"], m["secondary"], m["manufacturer"], m["id"]) for m in got["meters"]) == [
        (3, "1112089583140204", "EDC", "11120895"), (8, "1149037877040E16", "ACW", "11490378")]
    assert got["collisions"] == []
    assert 'secondary = "1149037877040E16"' in run.stderr and "[[meters]]" in run.stderr


def test_primary_scan_table_lists_address_secondary_address_and_medium():
    # 251 addresses at ~60 ms each: once, against the independent simulator.
    with simulator_process("peer", SLAVES, mute=[12]) as pty:
        run = gateway("scan", "mbus", "--port", pty, "--baud", "38400", "--retries", "0")
    assert run.returncode == 0, run.stderr
    header, *rows = run.stdout.splitlines()
    assert header.split() == ["address", "secondary", "address", "manufacturer", "id", "version", "medium"]
    assert [row.split()[:4] for row in rows] == [["3", "1112089583140204", "EDC", "11120895"],
                                                 ["8", "1149037877040E16", "ACW", "11490378"]]
    assert "address = 3" in run.stderr


def test_a_port_that_cannot_be_opened_exits_1_with_the_reason():
    run = gateway("scan", "mbus", "--port", "/dev/no-such-tty")
    assert run.returncode == 1
    assert run.stderr.strip() == "gateway: cannot open serial port /dev/no-such-tty: No such file or directory"


def test_bad_usage_exits_2():
    assert gateway("read", "mbus", "--port", "/dev/null").returncode == 2  # no --address nor --secondary
    assert gateway("read", "mbus", "--port", "/dev/null", "--address", "251").returncode == 2
    run = gateway("read", "mbus", "--port", "/dev/null", "--secondary", "12345")
    assert run.returncode == 2 and "8 digits or 16 hex digits" in run.stderr


@pytest.mark.parametrize("verb", ["scan", "read"])
def test_help_explains_every_option(verb):
    run = gateway(verb, "mbus", "--help")
    assert run.returncode == 0
    for option in ("--port", "--tcp", "--baud", "--json", "--retries", "--extra-timeout-ms", "--secondary"):
        assert option in run.stdout
