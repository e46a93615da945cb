"""``gateway listen wmbus`` end to end: a subprocess against the simulated dongle (itself a
process), JSON Lines per telegram, the table, the advice, and the failures' exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest

from gateway.cli import main

from tests.collectors.mbus_helpers import ROOT, announced_pty
from tests.collectors.wmbus_helpers import KEY, key_file

pytestmark = pytest.mark.integration


def dongle(*args: str):
    """``python -m gateway.simulators.wmbus ARGS`` in its own process; yields its pty."""
    return announced_pty([sys.executable, "-m", "gateway.simulators.wmbus", *args])


@pytest.fixture
def keys(tmp_path):
    directory = tmp_path / "keys"
    directory.mkdir()
    key_file(directory, "11111111.key")
    return directory


def test_listen_prints_one_json_line_per_telegram_heard_and_decrypts_with_the_keys_given(keys):
    with dongle("--dongle", "imst", "--meter", f"11111111:{KEY}", "--meter", "22222222",
                "--meter", f"33333333:{KEY}", "--interval", "0.2", "--repeat", "--garbage", "9") as pty:
        run = subprocess.run([sys.executable, "-m", "gateway", "listen", "wmbus", "--port", pty, "--dongle", "imst",
                              "--seconds", "2.5", "--json", "--key-dir", str(keys)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    by_id: dict[str, list[dict]] = {}
    for line in lines:
        by_id.setdefault(line["id"], []).append(line)
    assert set(by_id) == {"11111111", "22222222", "33333333"}
    good = by_id["11111111"]
    assert all(t["encrypted"] and t["decrypted"] and t["problem"] is None for t in good)
    assert [t["duplicate"] for t in good[:2]] == [False, True]  # every telegram came twice
    for telegram in good:
        volume = {r["quantity"]: r for r in telegram["readings"]}["volume"]
        assert Decimal(volume["value"]) == Decimal("123.456") + Decimal("0.007") * telegram["access_number"]
        assert volume["unit"] == "m^3" and telegram["rssi_dbm"] == -60 and telegram["device"] == "GWY-11111111-01-07"
    assert all(not t["encrypted"] and t["readings"] for t in by_id["22222222"])
    assert all(t["encrypted"] and not t["decrypted"] and "no key" in t["problem"] for t in by_id["33333333"])
    assert 'id = "33333333"' in run.stderr and "key_file" in run.stderr and "gateway check-config" in run.stderr


def test_listen_prints_a_table_of_the_meters_heard_at_the_end(keys, capsys):
    with dongle("--dongle", "cul", "--meter", f"11111111:{KEY}", "--meter", "22222222", "--interval", "0.2") as pty:
        code = main(["listen", "wmbus", "--port", pty, "--dongle", "cul", "--seconds", "1.5", "--key-dir", str(keys)])
    out, err = capsys.readouterr()
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["id", "manufacturer", "device"]
    table = {row.split()[0]: row.split() for row in rows}
    assert table["11111111"][-2:] == ["yes", "yes"]  # encrypted, decrypted
    assert table["22222222"][-2:] == ["no", "-"]
    assert "To collect these meters" in err


def test_a_port_that_cannot_be_opened_exits_1_with_the_reason(tmp_path, capsys):
    assert main(["listen", "wmbus", "--port", str(tmp_path / "ttyNONE"), "--dongle", "amber", "--seconds", "1"]) == 1
    assert "cannot open serial port" in capsys.readouterr().err


def test_a_dongle_of_another_kind_exits_1_saying_it_did_not_answer(capsys):
    with dongle("--dongle", "imst", "--meters", "1") as pty:
        assert main(["listen", "wmbus", "--port", pty, "--dongle", "amber", "--seconds", "5"]) == 1
    assert "the amber dongle did not answer CMD_GET_REQ 0x05 within 2 s" in capsys.readouterr().err


def test_a_cul_asked_for_two_modes_is_bad_usage(capsys):
    assert main(["listen", "wmbus", "--port", "/dev/null", "--dongle", "cul", "--mode", "c1+t1"]) == 2
    assert "listens to one mode at a time" in capsys.readouterr().err


def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path, capsys):
    directory = tmp_path / "keys"
    directory.mkdir()
    path = key_file(directory, "11111111.key", mode=0o644)
    assert main(["listen", "wmbus", "--port", "/dev/null", "--dongle", "imst", "--key-dir", str(directory)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{path}: secret file is readable by other users (mode 644); run: chmod 600 {path}")


def test_the_help_explains_every_option_and_what_to_do_next():
    run = subprocess.run([sys.executable, "-m", "gateway", "listen", "wmbus", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert run.returncode == 0
    for option in ("--port", "--tcp", "--dongle", "--mode", "--baud", "--seconds", "--key-dir", "--json"):
        assert option in run.stdout
    assert "gateway check-config" in run.stdout and "chmod 600" in run.stdout
