"""TLS and credentials of the MQTT uplink: server verification against a test CA, client
certificates, refusals that are clear and retried, and nothing ever sent in plaintext."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from gateway.config import MqttUplink
from gateway.errors import ConfigError, UplinkError
from gateway.uplinks.mqtt_tls import credentials, tls_context
from tests.environment import unavailable
from tests.mqtt_broker import Pki, Subscriber, first_bytes_server, make_ca, make_pki, running_broker
from tests.uplinks.conftest import eventually, readings, running
from tests.uplinks.test_mqtt import DATA, covers

pytestmark = pytest.mark.integration


def client_cert(pki: Pki) -> dict[str, object]:
    return {"ca_file": pki.ca_file, "cert_file": pki.client_cert_file, "key_file": str(pki.client_key_file)}


def secret_file(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_with_the_test_ca_and_a_client_certificate_delivers(mosquitto_tls, pki, store, make_publisher,
                                                                     host) -> None:
    await store.append(readings(50))
    publisher = make_publisher(f"mqtts://{host}:{mosquitto_tls.port}", **client_cert(pki))
    async with Subscriber(mosquitto_tls, DATA) as sub, running(publisher):
        await sub.wait_for(covers(50))
        await eventually(lambda: publisher.counters.cursor == 50)
    assert publisher.counters.connect_failures == 0


async def test_without_a_client_certificate_the_broker_refuses_and_the_uplink_keeps_trying(
        mosquitto_tls, pki, store, make_publisher) -> None:
    await store.append(readings(5))
    publisher = make_publisher(mosquitto_tls.url, ca_file=pki.ca_file, connect_timeout_s=1)
    async with running(publisher) as task:
        await eventually(lambda: publisher.counters.connect_failures >= 2)
        assert not task.done()
    assert "certificate required" in publisher.counters.last_error.lower()
    assert publisher.counters.messages_published == 0


async def test_a_broker_certificate_from_another_ca_is_refused_and_nothing_is_published(
        mosquitto_tls, pki, store, make_publisher, tmp_path) -> None:
    other_ca, _, _ = make_ca(tmp_path / "other-ca", "other-ca")
    await store.append(readings(5))
    publisher = make_publisher(mosquitto_tls.url, **{**client_cert(pki), "ca_file": other_ca})
    async with Subscriber(mosquitto_tls, "#") as everything, running(publisher) as task:
        await eventually(lambda: publisher.counters.connect_failures >= 3)
        assert not task.done()  # refused, retried, never crashed
    assert "certificate verify failed" in publisher.counters.last_error
    assert publisher.counters.last_error.startswith(f"cannot connect to 127.0.0.1:{mosquitto_tls.port}")
    assert everything.messages == []
    assert publisher.counters.messages_published == 0 and await store.cursor("mqtt") == 0


async def test_a_broker_certificate_for_another_name_is_refused(tmp_path, store, make_publisher) -> None:
    pki = make_pki(tmp_path / "pki", server_names=("broker.example",))
    with running_broker(tmp_path / "broker", pki=pki) as broker:
        publisher = make_publisher(broker.url, **client_cert(pki))
        async with running(publisher):
            await eventually(lambda: publisher.counters.connect_failures >= 1)
    assert "mismatch" in publisher.counters.last_error  # "IP address mismatch": hostname checking is on


async def test_an_mqtts_uplink_speaks_tls_first_even_to_a_plaintext_listener(pki, make_publisher) -> None:
    async with first_bytes_server() as (port, received):
        publisher = make_publisher(f"mqtts://127.0.0.1:{port}", **client_cert(pki), connect_timeout_s=1)
        async with running(publisher):
            await eventually(lambda: len(received) >= 2 and publisher.counters.connect_failures >= 2)
    assert all(first[:1] == b"\x16" for first in received)  # a TLS handshake record (ClientHello)
    assert not any(b"MQTT" in first for first in received)  # never a plaintext CONNECT


async def test_username_and_password_come_from_the_password_file(tmp_path, store, make_publisher) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        unavailable("mosquitto_passwd is not installed (it ships with mosquitto)")
    passwords = tmp_path / "broker-passwords"
    subprocess.run([tool, "-b", "-c", str(passwords), "gw-test", "s3cret pass"], check=True, capture_output=True)
    with running_broker(tmp_path / "broker", password_file=passwords) as broker:
        await store.append(readings(5))
        good = make_publisher(broker.url, username="gw-test", password_file=secret_file(tmp_path / "pw", "s3cret pass\n"))
        async with running(good):
            await eventually(lambda: good.counters.cursor == 5)  # connected and acknowledged
        bad = make_publisher(broker.url, username="gw-test", password_file=secret_file(tmp_path / "bad", "wrong"),
                             client_id="bad")
        async with running(bad):
            await eventually(lambda: bad.counters.connect_failures >= 1)
    assert "not authori" in bad.counters.last_error.lower() or "bad user" in bad.counters.last_error.lower()


async def test_a_password_file_others_can_read_is_refused_with_the_fix(tmp_path, make_publisher) -> None:
    loose = secret_file(tmp_path / "pw", "secret", 0o644)
    publisher = make_publisher("mqtt://127.0.0.1:1", username="gw", password_file=loose)
    async with running(publisher) as task:
        await eventually(lambda: publisher.counters.last_error is not None)
        assert not task.done()
    assert f"chmod 600 {loose}" in publisher.counters.last_error


def test_tls_context_verifies_the_server_and_its_name(pki) -> None:
    context = tls_context(MqttUplink(url="mqtts://broker.example:8883", **client_cert(pki)))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert tls_context(MqttUplink(url="mqtt://127.0.0.1:1883")) is None


def test_tls_context_names_the_file_it_cannot_load(tmp_path, pki) -> None:
    with pytest.raises(UplinkError, match="cannot load ca_file .*missing.pem"):
        tls_context(MqttUplink(url="mqtts://h:8883", ca_file=tmp_path / "missing.pem"))
    with pytest.raises(UplinkError, match="cannot load client certificate"):
        tls_context(MqttUplink(url="mqtts://h:8883", ca_file=pki.ca_file, cert_file=pki.ca_file,
                               key_file=str(pki.client_key_file)))
    (tmp_path / "loose.key").write_bytes(pki.client_key_file.read_bytes())
    (tmp_path / "loose.key").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        tls_context(MqttUplink(url="mqtts://h:8883", ca_file=pki.ca_file, cert_file=pki.client_cert_file,
                               key_file=str(tmp_path / "loose.key")))


def test_a_password_needs_a_username(tmp_path) -> None:
    config = MqttUplink(url="mqtt://127.0.0.1:1883", password_file=secret_file(tmp_path / "pw", "x"))
    with pytest.raises(ConfigError, match="password_file is set but username is not"):
        credentials(config)
    assert credentials(MqttUplink(url="mqtt://127.0.0.1:1883", username="u")) == ("u", None)
