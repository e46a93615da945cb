"""``gateway decode mbus``: one frame to one JSON object, or JSON Lines from stdin."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main

DATA = Path(__file__).parents[1] / "data" / "mbus-libmbus"
EDC = (DATA / "test-frames" / "EDC.hex").read_text().strip()
ALL_FRAMES = sorted(DATA.glob("*-frames/*.hex"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["decode", "mbus", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_one_frame_gives_one_json_object_with_link_header_and_records(capsys):
    code, out, err = run(capsys, EDC)
    assert (code, err) == (0, "")
    (line,) = out.splitlines()
    obj = json.loads(line)
    assert obj["link"]["function"] == "RSP_UD" and obj["link"]["a"] == 1
    assert {k: obj["header"][k] for k in ("id", "manufacturer", "version", "medium", "ci")} == {
        "id": "11120895", "manufacturer": "EDC", "version": 2, "medium": 4, "ci": "0x72",
    }
    first = obj["records"][0]
    assert {k: first[k] for k in ("function", "storage", "tariff", "subunit", "quantity", "value", "unit", "dif", "vif")} == {
        "function": "instantaneous value", "storage": 0, "tariff": 0, "subunit": 0, "quantity": "Energy",
        "value": "35000", "unit": "Wh", "dif": "0x84", "vif": "0x86",
    }
    assert all(isinstance(r["value"], (str, type(None))) for r in obj["records"])


def test_hex_with_or_without_spaces_and_split_over_arguments_is_the_same(capsys):
    _, spaced, _ = run(capsys, EDC)
    _, packed, _ = run(capsys, EDC.replace(" ", ""))
    _, split, _ = run(capsys, *EDC.split())
    assert spaced == packed == split


def test_an_application_error_frame_gives_an_error_object_and_exit_0(capsys):
    code, out, _ = run(capsys, (DATA / "error-frames" / "application_busy.hex").read_text())
    assert code == 0
    assert json.loads(out)["error"] == {"ci": "0x70", "code": 8, "text": "Application busy"}


def test_a_malformed_frame_exits_2_with_one_line_naming_reason_and_offset(capsys):
    code, out, err = run(capsys, (DATA / "error-frames" / "too_many_dife.hex").read_text())
    assert (code, out) == (2, "")
    assert err.splitlines() == ["gateway: more than 10 DIFEs at field DIFE, offset 40"]


def test_text_that_is_not_hex_exits_2(capsys):
    code, _, err = run(capsys, "68", "zz")
    assert code == 2 and "not hexadecimal: 'zz'" in err


def test_stdin_lines_give_json_lines_in_order_with_rejections_in_place(capsys, monkeypatch):
    lines = [path.read_text().strip() for path in ALL_FRAMES]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n\n"))
    code, out, err = run(capsys, "-")
    assert (code, err) == (0, "")
    objects = [json.loads(line) for line in out.splitlines()]
    assert len(objects) == len(lines) == 103
    for path, obj in zip(ALL_FRAMES, objects):
        if path.parent.name == "test-frames":
            assert "records" in obj, path.stem
        elif path.with_suffix(".xml").exists():
            assert "error" in obj, path.stem
        elif path.stem != "svm_f22_telegram2":
            assert set(obj) == {"rejected"}, path.stem
            assert " offset " in obj["rejected"] or "hex digits" in obj["rejected"], path.stem
    # Same order, same content as one frame at a time.
    for index in (20, 50, 80):
        assert objects[index] == json.loads(main_json(capsys, lines[index]))


def main_json(capsys, hex_text: str) -> str:
    main(["decode", "mbus", hex_text])
    return capsys.readouterr().out


def test_help_explains_the_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["decode", "mbus", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "JSON Lines" in out and "EN 13757-3" in out and "rejected" in out


def test_the_installed_command_runs_in_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "decode", "mbus", EDC], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["header"]["manufacturer"] == "EDC"
