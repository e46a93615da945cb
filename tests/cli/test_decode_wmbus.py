"""``gateway decode wmbus``: one telegram to one JSON object, JSON Lines from stdin with state
carried across lines, refusals by reason, and keys never printed."""

from __future__ import annotations

import io
import json

import pytest

from gateway.cli import main

from ..codecs.mbus import wmbus_builders as build
from ..codecs.mbus.wmbus_corpus import oms_examples
from ..codecs.mbus.test_wmbus_compact import COMPACT, FULL

OMS = oms_examples()["examples"]
PROFILE_A = OMS["security_profile_a"]
PROFILE_B = OMS["security_profile_b"]


def run(capsys, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["decode", "wmbus", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_mode5_telegram_with_its_key_gives_link_tpl_security_header_and_records(capsys):
    code, out, err = run(capsys, PROFILE_A["hex"], "--key", PROFILE_A["key"])
    assert (code, err) == (0, "")
    (line,) = out.splitlines()
    obj = json.loads(line)
    assert list(obj)[:4] == ["link", "tpl", "security", "header"]
    assert obj["link"] == {
        "c": "0x44", "function": "SND_NR", "manufacturer": "ELS", "id": "12345678", "version": 51,
        "device_type": "0x03", "ci": "0x7A", "frame_format": "a",
    }  # fmt: skip
    assert obj["tpl"]["security_mode"] == 5 and obj["tpl"]["encrypted_blocks"] == 2
    assert obj["security"]["decrypted"] is True and obj["security"]["decrypted_by"] == "key"
    assert {k: obj["header"][k] for k in ("id", "manufacturer", "version", "medium", "access_number")} == {
        "id": "12345678", "manufacturer": "ELS", "version": 51, "medium": 3, "access_number": 42,
    }  # fmt: skip
    volume = obj["records"][0]
    assert (volume["value"], volume["unit"]) == ("28504.27", "m^3")
    assert PROFILE_A["key"].lower() not in out.lower()


def test_a_mode7_telegram_shows_ell_afl_and_a_verified_mac(capsys):
    code, out, _ = run(capsys, PROFILE_B["hex"], "--key", PROFILE_B["key"])
    obj = json.loads(out)
    assert code == 0 and list(obj)[:5] == ["link", "ell", "afl", "tpl", "security"]
    assert obj["afl"]["message_counter"] == 2739 and obj["security"]["mac_verified"] is True
    assert obj["records"][0]["value"] == "28504.27"


def test_a_wrong_key_exits_2_with_one_line_and_never_prints_the_key(capsys):
    wrong = "000102030405060708090A0B0C0D0E0E"
    code, out, err = run(capsys, PROFILE_B["hex"], "--key", wrong)
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert line.startswith("gateway: AFL MAC does not match") and wrong.lower() not in line.lower()


def test_an_encrypted_telegram_without_key_is_refused(capsys):
    code, _, err = run(capsys, PROFILE_A["hex"])
    assert code == 2 and "encrypted (security mode 5) and no key is configured" in err


def test_a_plaintext_telegram_with_a_key_is_refused(capsys):
    code, _, err = run(capsys, OMS["frame_format_b"]["hex"], "--key", "00" * 16)
    assert code == 2 and "not encrypted but a key is configured" in err


def test_decrypted_takes_a_telegram_a_receiver_already_decrypted(capsys):
    code, out, _ = run(capsys, build.mode5_telegram(bytes(16), plaintext=True).hex(), "--decrypted")
    obj = json.loads(out)
    assert code == 0 and obj["security"]["decrypted_by"] == "receiver"
    assert obj["records"][0]["unit"] == "m^3"


def test_format_options_decide_how_crc_blocks_are_read(capsys):
    hexa = PROFILE_A["hex"]
    assert run(capsys, hexa, "--key", PROFILE_A["key"], "--format", "a")[0] == 0
    code, _, err = run(capsys, hexa, "--key", PROFILE_A["key"], "--format", "b")
    assert code == 2 and "CRC" in err
    code, _, err = run(capsys, hexa, "--key", PROFILE_A["key"], "--format", "stripped")
    assert code == 2


def test_a_key_file_works_like_key(capsys, tmp_path):
    path = tmp_path / "meter.key"
    path.write_text(PROFILE_A["key"] + "\n")
    assert run(capsys, PROFILE_A["hex"], "--key-file", str(path))[0] == 0


def test_a_bad_key_is_a_usage_error_that_does_not_repeat_it(capsys):
    code, _, err = run(capsys, PROFILE_A["hex"], "--key", "00112233445566778899AABBCCDDEEXX")
    assert code == 2 and "bad key" in err and "XX" not in err


def test_stdin_lines_carry_state_so_a_compact_frame_after_its_full_frame_decodes(capsys, monkeypatch):
    lines = "\n".join(
        [
            f"{COMPACT.hex()} decrypted",  # before the full frame: its format is unknown
            f"{FULL.hex()} decrypted",
            f"{COMPACT.hex()} decrypted",
            f"{PROFILE_A['hex']} {PROFILE_A['key']}",
            PROFILE_A["hex"],
            "zz",
            "",
        ]
    )
    code, out, _ = run(capsys, "-", stdin=lines, monkeypatch=monkeypatch)
    objs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(objs) == 6
    assert "no full frame of that format" in objs[0]["rejected"]
    assert objs[2]["compact"]["format_signature"] == "0x82DD"
    assert [r["value"] for r in objs[2]["records"]] == [r["value"] for r in objs[1]["records"]]
    assert objs[3]["records"][0]["value"] == "28504.27"
    assert "no key is configured" in objs[4]["rejected"]
    assert "not hexadecimal" in objs[5]["rejected"]


def test_help_says_how_the_frame_format_is_chosen(capsys):
    with pytest.raises(SystemExit):
        main(["decode", "wmbus", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--format {auto,a,b,stripped}" in out and "auto, detects A and B where that is unambiguous and takes stripped otherwise" in out
