"""``gateway read modbus`` in a subprocess against pymodbus's server on a pty: exact values
as a table or JSON, exit 1 when the meter does not answer or refuses, 2 for bad usage or
a broken map."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal

import pytest

from tests.collectors.modbus_helpers import (
    SDM630_SERIAL,
    abb_expected,
    abb_meter,
    sdm630_meter,
    sdm630_values,
    simulated_line,
)

pytestmark = pytest.mark.integration


def gateway(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", "read", "modbus", *args], capture_output=True, text=True,
                          timeout=60)


async def gateway_async(*args: str) -> tuple[int, str, str]:
    """The command in a subprocess while this event loop serves the simulated meters."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "read", "modbus", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


def test_help_lists_the_options_and_the_shipped_maps():
    done = gateway("--help")
    assert done.returncode == 0
    for text in ("--port", "--tcp", "--unit", "--map", "--map-file", "--baud", "--parity", "--stop-bits",
                 "--timeout-ms", "--retries", "--json", "Exit 0", "shipped register maps", "sdm630", "abb-b23",
                 "Eastron SDM630", "ABB B23/B24"):
        assert text in done.stdout, text


async def test_an_sdm630_read_prints_every_value_exactly_as_json():
    async with simulated_line([sdm630_meter(1)]) as line:
        code, out, err = await gateway_async("--port", line.path, "--unit", "1", "--map", "sdm630", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["device"], result["unit"], result["map"]) == (f"modbus-sdm630-{SDM630_SERIAL}", 1, "sdm630")
    values = {v["quantity"]: v["value"] for v in result["values"]}
    assert values == sdm630_values()  # the decimal strings the datastore was filled from, digit for digit
    voltage = next(v for v in result["values"] if v["quantity"] == "voltage_l1")
    assert voltage == {"quantity": "voltage_l1", "value": "230.1", "unit": "V", "obis": "1-0:32.7.0*255",
                       "status": None}
    assert result["link"]["requests"] == len(line.heard) == 11


async def test_an_abb_b23_read_prints_a_table_of_exact_scaled_values():
    async with simulated_line([abb_meter(2)]) as line:
        code, out, err = await gateway_async("--port", line.path, "--unit", "2", "--map", "abb-b23")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "modbus-abb-b23-12345678 (abb-b23)"
    assert lines[1].split() == ["quantity", "value", "unit", "obis", "status"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["active_energy_import"] == ["2013.62", "kWh", "1-0:1.8.0*255"]
    assert rows["reactive_power_l2"] == ["-122.14", "var"]
    assert rows["current_neutral"] == ["A", "1-0:91.7.0*255", "not-available"]
    expected = {name: value for name, value in abb_expected().items() if value is not None}
    assert {name: Decimal(row[0]) for name, row in rows.items() if name in expected} == expected


async def test_a_unit_that_does_not_answer_exits_1_and_says_so():
    async with simulated_line([abb_meter(2)]) as line:
        code, out, err = await gateway_async("--port", line.path, "--unit", "9", "--map", "abb-b23",
                                             "--timeout-ms", "100", "--retries", "0")
    assert (code, out) == (1, "")
    assert err.strip().startswith(f"gateway: meter at unit 9 on {line.path}: unit 9 did not answer read holding "
                                  "registers 0x5000+36 (timeout after")
    assert line.heard == [(9, 3, 0x5000, 36)]


async def test_a_read_the_meter_refuses_exits_1_with_the_exception_named():
    async with simulated_line([sdm630_meter(3).without(4, 0x00C8, 0x00CF)]) as line:
        code, _, err = await gateway_async("--port", line.path, "--unit", "3", "--map", "sdm630")
    assert code == 1
    assert err.strip() == (f"gateway: meter at unit 3 on {line.path}: unit 3 refused read input registers 0x00C8+8: "
                           "exception 2 ILLEGAL DATA ADDRESS at field exception code")


def test_a_broken_map_file_exits_2_with_the_file_line_and_entry(tmp_path):
    own = tmp_path / "own.toml"
    own.write_text('type = "uint16"\n[[registers]]\nname = "p"\naddress = 1\n[[registers]]\nname = "q"\naddress = 1\n')
    done = gateway("--port", "/dev/null", "--unit", "1", "--map-file", str(own))
    assert done.returncode == 2
    assert done.stderr.strip() == f"{own}:7: registers[1] 'q': address: registers 0x0001 overlap entry 'p' (0x0001)"


@pytest.mark.parametrize(("args", "message"), [
    (("--unit", "300", "--map", "sdm630"), "a unit address is 1..247, got '300'"),
    (("--unit", "1", "--map", "sdm120"), "no shipped map is named 'sdm120' (maps: abb-b23, sdm630)"),
    (("--unit", "1", "--map", "sdm630", "--baud", "14400"), "baud: must be one of 1200, 2400"),
], ids=["unit", "map", "baud"])
def test_bad_usage_exits_2_with_the_reason(args, message):
    done = gateway("--port", "/dev/null", *args)
    assert done.returncode == 2 and message in done.stderr
