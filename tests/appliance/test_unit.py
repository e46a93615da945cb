"""The systemd unit passes `systemd-analyze verify` and rates OK (exposure <= 2.0) in
`systemd-analyze security --offline=true`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "gateway.service"
EXECUTABLE = "/usr/bin/gateway"
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)")


def systemd_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: apt-get install systemd"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit, with ExecStart pointing to this environment's `gateway` script.

    `systemd-analyze verify` checks that the ExecStart binary exists; /usr/bin/gateway exists
    only where the package is installed, so the copy names the one pip installed beside this
    Python. Nothing else in the unit is changed.
    """
    script = Path(sys.executable).with_name("gateway")
    assert script.exists(), f"{script} is missing: pip install -e . first"
    text = UNIT.read_text()
    assert f"ExecStart={EXECUTABLE} " in text
    copy = tmp_path / "gateway.service"
    copy.write_text(text.replace(f"ExecStart={EXECUTABLE} ", f"ExecStart={script} "))
    return copy


def test_the_unit_passes_systemd_analyze_verify(unit_copy: Path):
    result = systemd_analyze("verify", str(unit_copy))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_verify_fails_on_a_unit_whose_executable_is_missing(tmp_path: Path):
    broken = tmp_path / "gateway.service"
    broken.write_text(UNIT.read_text().replace(EXECUTABLE, str(tmp_path / "no-such-gateway")))
    result = systemd_analyze("verify", str(broken))
    assert result.returncode != 0
    assert "no-such-gateway" in result.stderr


def test_the_unit_is_rated_ok_with_exposure_at_most_2(unit_copy: Path):
    result = systemd_analyze("security", "--offline=true", str(unit_copy))
    match = EXPOSURE.search(result.stdout)
    assert match, result.stdout + result.stderr
    exposure, rating = float(match.group(1)), match.group(2)
    assert exposure <= 2.0, result.stdout
    assert rating == "OK"


def test_the_hardening_the_brief_asks_for_is_all_there():
    settings = [line.strip() for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#")]
    for expected in (
        "Type=notify", "Restart=on-failure", "User=gateway", "SupplementaryGroups=dialout",
        "StateDirectory=gateway", "StateDirectoryMode=0700", "ConfigurationDirectory=gateway",
        "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
        "CapabilityBoundingSet=", "AmbientCapabilities=", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service", "SystemCallArchitectures=native", "DevicePolicy=closed",
        "MemoryDenyWriteExecute=yes", "UMask=0077", "LockPersonality=yes", "RestrictNamespaces=yes",
    ):
        assert expected in settings, expected
    assert any(s.startswith("WatchdogSec=") for s in settings)
    assert any(s.startswith("LoadCredential=") for s in settings)
    devices = [s.removeprefix("DeviceAllow=").split()[0] for s in settings if s.startswith("DeviceAllow=")]
    assert sorted(devices) == ["char-ttyACM", "char-ttyAMA", "char-ttyS", "char-ttyUSB"]
