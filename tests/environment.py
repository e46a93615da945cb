"""What a test needs from the machine, and what happens when it is missing.

Under CI (``CI=true``, which ``.ci/run`` sets) a missing tool, peer or privilege is a
failure: CI installs everything, so a skip there would hide a test that proved nothing.
Elsewhere (a developer's laptop without root or mosquitto) the test is skipped with the
reason and what to install.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """A failure under CI=true, a skip with ``reason`` elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(f"{reason} (set CI=true to make this a failure)")


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "2m") mounted at ``path``, for running out of disk for
    real; needs root."""
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {result.stderr.decode().strip()} (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)
