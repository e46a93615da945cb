"""``gateway readings``: stored readings as JSON Lines, CSV or a table, read-only."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import timedelta

import pytest

from gateway.cli import main
from tests.cli.local_state import make_store, write_config
from tests.store_helpers import START, event, readings


@pytest.fixture
def state(tmp_path):
    make_store(tmp_path, readings(3, device="A") + [event()] + readings(2, device="B", at=START + timedelta(minutes=15)))
    return tmp_path


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_prints_one_reading_per_line_in_the_form_the_hes_receives(state, capsys):
    assert main(["readings", "--state-dir", str(state), "--format", "json"]) == 0
    rows = lines(capsys.readouterr().out)
    assert [row["seq"] for row in rows] == [1, 2, 3, 5, 6]  # the event (4) is no reading
    assert rows[0] == {
        "seq": 1,
        "kind": "reading",
        "device": "A",
        "quantity": "energy",
        "obis": "1-0:1.8.0*255",
        "value": "0.000",
        "unit": "Wh",
        "meter_time": "2024-05-01T13:00:00+01:00",
        "captured_at": "2024-05-01T12:00:00+00:00",
        "status": "00",
        "point": None,
        "metrological": None,
        "protection": None,
        "flags": [],
    }


def test_since_device_and_limit_select_readings(state, capsys):
    main(["readings", "--state-dir", str(state), "--format", "json", "--since", "1", "--limit", "2"])
    assert [row["seq"] for row in lines(capsys.readouterr().out)] == [2, 3]
    main(["readings", "--state-dir", str(state), "--format", "json", "--device", "B"])
    assert [(row["seq"], row["device"]) for row in lines(capsys.readouterr().out)] == [(5, "B"), (6, "B")]


def test_csv_has_a_header_and_one_row_per_reading(state, capsys):
    assert main(["readings", "--state-dir", str(state), "--format", "csv", "--device", "B"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(row["seq"], row["value"], row["captured_at"]) for row in rows] == [
        ("5", "0.000", "2024-05-01T12:15:00+00:00"),
        ("6", "0.001", "2024-05-01T12:15:00+00:00"),
    ]


def test_table_lists_the_readings_for_people(state, capsys):
    assert main(["readings", "--state-dir", str(state), "--format", "table"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["seq", "device", "quantity", "obis", "value", "unit", "meter_time", "captured_at", "status",
                              "point"]
    assert len(out) == 6 and out[-1].split()[:2] == ["6", "B"]


def test_json_lines_are_the_default_when_stdout_is_no_terminal(state, capsys):
    main(["readings", "--state-dir", str(state)])
    assert len(lines(capsys.readouterr().out)) == 5


def test_the_store_is_found_through_the_configuration(state, tmp_path, capsys):
    config = write_config(tmp_path, state)
    assert main(["readings", "--config", str(config), "--format", "json"]) == 0
    assert len(lines(capsys.readouterr().out)) == 5


def test_readings_are_read_while_a_writer_holds_the_store(state, capsys):
    writer = sqlite3.connect(state / "store.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # as the daemon does in the middle of a commit
    writer.execute("INSERT INTO state VALUES ('x', 'y')")
    try:
        assert main(["readings", "--state-dir", str(state), "--format", "json"]) == 0
        assert len(lines(capsys.readouterr().out)) == 5
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_state_directory_without_a_store_is_bad_usage(tmp_path, capsys):
    assert main(["readings", "--state-dir", str(tmp_path)]) == 2
    assert f"no store at {tmp_path / 'store.sqlite'}" in capsys.readouterr().err


def test_a_broken_configuration_is_reported_with_its_line(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nid = "gw"\nbogus = 1\n')
    assert main(["readings", "--config", str(config)]) == 2
    assert f"{config}:3: gateway.bogus: unknown setting" in capsys.readouterr().err


def test_point_selects_the_readings_of_a_metering_point_whichever_device_served_it(tmp_path, capsys):
    from dataclasses import replace

    old = [replace(r, point="MP-1") for r in readings(2, device="A")]
    new = [replace(r, point="MP-1") for r in readings(2, device="B", at=START + timedelta(minutes=15))]
    make_store(tmp_path, old + readings(1, device="C") + new)
    assert main(["readings", "--state-dir", str(tmp_path), "--format", "json", "--point", "MP-1"]) == 0
    assert [(row["seq"], row["device"], row["point"]) for row in lines(capsys.readouterr().out)] == [
        (1, "A", "MP-1"), (2, "A", "MP-1"), (4, "B", "MP-1"), (5, "B", "MP-1")]
