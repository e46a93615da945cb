"""Shared fixtures: where the test data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mqtt_broker import mosquitto, mosquitto_tls, pki  # noqa: F401  (shared broker fixtures)

# The independent DLMS/COSEM meter fixtures (dlms_meter, dlms_meter_serial, ...).
pytest_plugins = ("tests.dlms_peer",)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA
