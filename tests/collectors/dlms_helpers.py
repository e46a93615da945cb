"""Shared by the DLMS collector and command-line tests: configurations for the gurux meter
(tests/dlms_peer.py) and key files."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config import DlmsLine, DlmsMeter

ENERGY = "1.0.1.8.0.255"
PROFILE = "1.0.99.1.0.255"
METER_TITLE = bytes.fromhex("4752580000BC614E")
CLIENT_TITLE = "4D4D4D0000000001"
#: The gurux meter's keys (published test keys: fine for tests, refused in production).
EK = "000102030405060708090A0B0C0D0E0F"
AK = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
DEVICE = "dlms-GRX0000012345678"
#: The security cases of the issue: none, LLS and HLS-GMAC with suite 0 ciphering.
SECURITY = {
    "none": ({}, {"client_sap": 16}),
    "lls": ({"auth": "low"}, {"client_sap": 17, "authentication": "low"}),
    "hls-gmac": ({"auth": "gmac", "secure": True}, {"client_sap": 1, "authentication": "gmac"}),
}


def secret_file(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return str(path)


def key_files(directory: Path, ek: str = EK, ak: str = AK, password: str = "Gurux") -> dict[str, str]:
    return {"ek_file": secret_file(directory, "ek", ek), "ak_file": secret_file(directory, "ak", ak),
            "password_file": secret_file(directory, "password", password)}


def line(*, tcp: str | None = None, port: str | None = None, interface: str = "wrapper", **kwargs) -> DlmsLine:
    kwargs.setdefault("response_timeout_ms", 2000)
    kwargs.setdefault("session_timeout_s", 20)
    return DlmsLine(name="dlms1", protocol="dlms", tcp=tcp, port=port, interface=interface, **kwargs)


def meter(directory: Path, name: str = "m1", *, security: str = "none", keys: dict | None = None,
          **kwargs) -> DlmsMeter:
    _, options = SECURITY[security]
    files = keys if keys is not None else key_files(directory)
    if options.get("authentication") != "low":
        files = {k: v for k, v in files.items() if k != "password_file"}
    if security != "hls-gmac":
        files = {k: v for k, v in files.items() if k == "password_file"}
    settings = {"objects": [ENERGY], "system_title": CLIENT_TITLE, "schedule": {"interval_s": 86400},
                **options, **files, **kwargs}
    return DlmsMeter(name=name, protocol="dlms", bus="dlms1", **settings)
