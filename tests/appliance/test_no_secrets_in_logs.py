"""A daemon run at DEBUG, with a broker password, a client key and its signing key
configured, logs none of them.

A redacting log filter would not be a substitute for never logging secrets; this test looks
for the secrets' actual bytes in everything the process wrote. It needs the store, signing
key, MQTT uplink and M-Bus collector modules, and runs once they have landed.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

for module in ("gateway.store", "gateway.signing", "gateway.uplinks.mqtt", "gateway.collectors.mbus"):
    pytest.importorskip(module, reason=f"{module} has not landed on this branch yet")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def secret_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def client_certificate(tmp_path: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw-secret-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now.replace(year=now.year + 1))
            .sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cert_path = tmp_path / "client.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, secret_file(tmp_path / "client.key", pem), pem


def pem_body_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM: any one of them in a log is a leak."""
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


@pytest.fixture
def broker(tmp_path: Path):
    """Mosquitto on loopback, requiring a user name and password."""
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    password = "pw-" + os.urandom(12).hex()
    passwd = tmp_path / "broker.passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "gw", password], check=True, capture_output=True)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n")
    process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port, password
    finally:
        process.terminate()
        process.wait(10)


def test_a_debug_run_logs_no_password_and_no_private_key(tmp_path: Path, broker):
    port, password = broker
    password_path = secret_file(tmp_path / "mqtt-password", password.encode())
    cert_path, key_path, client_key_pem = client_certificate(tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
id = "gw-secret-test"
state_dir = "{tmp_path / 'state'}"

[[uplinks.mqtt]]
name = "hes"
url = "mqtt://127.0.0.1:{port}"
username = "gw"
password_file = "{password_path}"

[[uplinks.mqtt]]
name = "tls"
url = "mqtts://127.0.0.1:{free_port()}"
cert_file = "{cert_path}"
key_file = "{key_path}"
password_file = "{password_path}"
username = "gw"

[[buses]]
name = "refused"
protocol = "mbus"
tcp = "127.0.0.1:{free_port()}"

[[meters]]
name = "m1"
protocol = "mbus"
bus = "refused"
address = 1
[meters.schedule]
interval_s = 1
""")
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "-v", "run", "--config", str(config)],
                                   stdout=stderr, stderr=stderr, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            time.sleep(6)  # long enough to connect, publish, fail a few polls and retries
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
    output = log.read_text(errors="replace")
    assert " DEBUG " in output, output[-2000:]  # it really logged at DEBUG

    signing_key = (tmp_path / "state" / "keys" / "signing-key.pem").read_bytes()
    secrets = {"broker password": [password],
               "client key": pem_body_lines(client_key_pem),
               "signing key": pem_body_lines(signing_key)}
    for what, needles in secrets.items():
        for needle in needles:
            assert needle not in output, f"the {what} appears in the log"
