"""``gateway keys generate|export``."""

from __future__ import annotations

import json
import stat

from jwcrypto import jwk

from gateway.cli import main
from gateway.signing import SigningKey
from tests.cli.local_state import write_config


def test_generate_creates_a_private_key_and_prints_only_its_kid(tmp_path, capsys):
    assert main(["keys", "generate", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "keys" / "signing-key.pem"
    assert out == SigningKey.load(path).kid + "\n"
    assert "PRIVATE" not in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_generate_keeps_an_existing_key_unless_forced(tmp_path, capsys):
    main(["keys", "generate", "--state-dir", str(tmp_path)])
    first = capsys.readouterr().out
    assert main(["keys", "generate", "--state-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == first and "exists already" in captured.err
    assert main(["keys", "generate", "--force", "--state-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out != first and first.strip() in captured.err


def test_the_key_path_comes_from_the_configuration_when_given(tmp_path, capsys):
    config = write_config(tmp_path, tmp_path / "from-config")
    assert main(["keys", "generate", "--config", str(config), "--state-dir", str(tmp_path / "ignored")]) == 0
    assert (tmp_path / "from-config" / "keys" / "signing-key.pem").exists()
    assert not (tmp_path / "ignored").exists()


def test_export_prints_the_public_pem_and_jwk_with_the_kid(tmp_path, capsys):
    main(["keys", "generate", "--state-dir", str(tmp_path)])
    kid = capsys.readouterr().out.strip()
    assert main(["keys", "export", "--state-dir", str(tmp_path)]) == 0
    pem = capsys.readouterr().out
    assert pem.startswith(f"kid: {kid}\n-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in pem
    assert jwk.JWK.from_pem(pem.encode()).thumbprint() == kid
    assert main(["keys", "export", "--format", "jwk", "--state-dir", str(tmp_path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["kid"] == kid and "d" not in document
    assert jwk.JWK(**document).thumbprint() == kid


def test_without_a_state_location_the_command_says_what_to_give(capsys):
    assert main(["keys", "export"]) == 2
    assert "--config FILE or --state-dir DIR" in capsys.readouterr().err


def test_exporting_a_missing_key_says_how_to_create_it(tmp_path, capsys):
    assert main(["keys", "export", "--state-dir", str(tmp_path)]) == 2
    assert "gateway keys generate" in capsys.readouterr().err
