"""The client association against an independent server: the gurux-dlms simulated meter of
tests/peers/dlms-meter over the IEC 62056-47 TCP wrapper, with every security setting it offers
(none, LLS, HLS-GMAC, ciphered, general-glo-ciphering) and both block transfers (GET-next, GBT).

The meter runs in its own virtual environment (gurux-dlms is GPL, test-only): ``GURUX_PYTHON``
names its interpreter, else tests/peers/dlms-meter/.venv is used and created on first run.
The wrapper header is written here in four lines (the product's wrapper codec lives elsewhere)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.codecs.dlms.association import (
    DEFAULT_CONFORMANCE,
    Associated,
    Authentication,
    ClientAssociation,
    ClientSettings,
    GetListResult,
    GetResult,
    NextRequest,
    Released,
    SecuritySettings,
)
from gateway.codecs.dlms.axdr import DataType
from gateway.codecs.dlms.obis import Obis
from gateway.codecs.dlms.security import MemoryInvocationCounters, SecurityKeys
from gateway.codecs.dlms.selective import EntryDescriptor
from gateway.codecs.dlms.services import AttributeDescriptor
from gateway.codecs.dlms.units import ScalerUnit
from gateway.codecs.dlms.xdlms import conformance

pytestmark = pytest.mark.integration

PEER = Path(__file__).parents[2] / "peers" / "dlms-meter"
KEYS = SecurityKeys(bytes(range(16)), bytes(range(0xD0, 0xE0)))
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")
METER_TITLE = bytes.fromhex("4752580000BC614E")
ROWS = 100


def gurux_python() -> str:
    configured = os.environ.get("GURUX_PYTHON")
    if configured:
        return configured
    venv = PEER / ".venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "gurux-dlms==1.0.203", "cryptography"], check=True, timeout=600)
    return str(python)


@pytest.fixture(scope="module")
def python() -> str:
    return gurux_python()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WrapperLink:
    """IEC 62056-47: version 1, source and destination wPort, length, then the APDU."""

    def __init__(self, port: int, client_wport: int) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.client = client_wport
        self.tags: list[int] = []

    def send(self, apdu: bytes) -> None:
        self.sock.sendall(struct.pack(">HHHH", 1, self.client, 1, len(apdu)) + apdu)

    def receive(self) -> bytes:
        _, _, _, length = struct.unpack(">HHHH", self._exact(8))
        apdu = self._exact(length)
        self.tags.append(apdu[0])
        return apdu

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError("the meter closed the connection")
            data += chunk
        return data

    def exchange(self, client: ClientAssociation, apdu: bytes):
        self.send(apdu)
        while True:
            event = client.receive_apdu(self.receive())
            if not isinstance(event, NextRequest):
                return event
            self.send(event.apdu)


@pytest.fixture
def meter(python):
    processes = []

    def start(*args: str) -> int:
        port = free_port()
        process = subprocess.Popen([python, "gx_meter_server.py", "--port", str(port), "--rows", str(ROWS), *args],
                                   cwd=PEER, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        return port

    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


CASES = {
    "public": ([], 16, ClientSettings()),
    "lls": (["--auth", "low"], 17, ClientSettings(Authentication.LOW, password=b"Gurux")),
    "hls-gmac": (["--auth", "gmac"], 1,
                 ClientSettings(Authentication.HIGH_GMAC, security=SecuritySettings(CLIENT_TITLE, KEYS))),
    "ciphered": (["--secure"], 1, ClientSettings(ciphered=True, security=SecuritySettings(CLIENT_TITLE, KEYS))),
    "hls-gmac-ciphered": (["--auth", "gmac", "--secure"], 1,
                          ClientSettings(Authentication.HIGH_GMAC, ciphered=True,
                                         security=SecuritySettings(CLIENT_TITLE, KEYS))),
    "general-glo": (["--secure"], 1,
                    ClientSettings(ciphered=True, security=SecuritySettings(CLIENT_TITLE, KEYS,
                                                                            general_protection=True))),
}
ENERGY = AttributeDescriptor(3, Obis.parse("1-0:1.8.0"), 2)
SCALER = AttributeDescriptor(3, Obis.parse("1-0:1.8.0"), 3)
NAME = AttributeDescriptor(1, Obis.parse("0-0:42.0.0"), 2)
PROFILE = AttributeDescriptor(7, Obis.parse("1-0:99.1.0"), 2)


@pytest.mark.parametrize("case", sorted(CASES))
def test_association_reads_and_releases_with_every_security_setting(meter, case):
    args, wport, settings = CASES[case]
    link = WrapperLink(meter(*args), wport)
    counters = MemoryInvocationCounters(outgoing={CLIENT_TITLE: 1})
    client = ClientAssociation(settings, counters)
    associated = link.exchange(client, client.send_aarq())
    assert isinstance(associated, Associated), associated
    if settings.security is not None:
        assert client.server_system_title == METER_TITLE
    assert link.exchange(client, client.send_get(NAME)).result.value == b"GRX0000012345678"
    value = link.exchange(client, client.send_get(ENERGY)).result
    scaler = ScalerUnit.from_data(link.exchange(client, client.send_get(SCALER)).result)
    assert (str(scaler.apply(value)), scaler.symbol) == ("123456.7", "Wh")
    listed = link.exchange(client, client.send_get_with_list([ENERGY, NAME]))
    assert isinstance(listed, GetListResult) and listed.results[0] == value
    two = link.exchange(client, client.send_get(PROFILE, EntryDescriptor(1, 2).to_access()))
    assert isinstance(two, GetResult) and len(two.result.value) == 2
    assert isinstance(link.exchange(client, client.send_release()), Released)
    if settings.ciphered:
        assert counters.last_incoming(METER_TITLE) is not None
        assert set(link.tags) <= {0xCC, 0xCF, 0xDB, 0x61, 0x63}  # every answer ciphered (0xCF: HLS pass 4)


@pytest.mark.parametrize("gbt", [False, True], ids=["get-next", "general-block-transfer"])
@pytest.mark.parametrize("ciphered", [False, True], ids=["plain", "ciphered"])
def test_a_profile_larger_than_the_pdu_comes_in_blocks_and_is_reassembled(meter, gbt, ciphered):
    args = ["--gbt"] if gbt else []
    if ciphered:
        args += ["--auth", "gmac", "--secure"]
    link = WrapperLink(meter(*args), 1 if ciphered else 16)
    settings = ClientSettings(
        Authentication.HIGH_GMAC if ciphered else Authentication.NONE,
        security=SecuritySettings(CLIENT_TITLE, KEYS) if ciphered else None,
        ciphered=ciphered,
        conformance=DEFAULT_CONFORMANCE | (conformance("general-block-transfer") if gbt else 0),
        max_receive_pdu_size=256,
    )
    client = ClientAssociation(settings, MemoryInvocationCounters(outgoing={CLIENT_TITLE: 1}))
    assert isinstance(link.exchange(client, client.send_aarq()), Associated)
    link.tags.clear()
    buffer = link.exchange(client, client.send_get(PROFILE)).result
    assert buffer.type is DataType.ARRAY and len(buffer.value) == ROWS
    assert [row.value[1].value for row in buffer.value[:3]] == [1000000, 1000250, 1000500]
    assert len(link.tags) > 3 and set(link.tags) == ({0xE0} if gbt else {0xCC if ciphered else 0xC4})
