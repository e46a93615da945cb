"""A real MQTT broker for tests: Mosquitto on a free loopback port, its TLS material, a
subscriber that collects what arrives, and a TCP proxy that can cut connections.

Reusable by every test that needs a broker::

    def test_x(mosquitto):                 # plain listener, anonymous
        mosquitto.url                      # "mqtt://127.0.0.1:PORT"
        mosquitto.stop(); mosquitto.start()  # same port again

    def test_y(mosquitto_tls):             # TLS, client certificate required
        mosquitto_tls.pki.ca_file, .client_cert_file, .client_key_file

    async with Subscriber(mosquitto, "metering/#") as sub:
        messages = await sub.wait_for(lambda ms: len(ms) >= 3)

Under ``CI=true`` a missing ``mosquitto`` binary fails the test; elsewhere it skips, saying
so. Certificates and keys are generated at fixture time with ``cryptography`` (never
committed); keys are written with mode 0600 as the gateway insists.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.uplinks.mqtt_client import cancellable
from tests.environment import unavailable

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def mosquitto_binary() -> str:
    """The broker's path, or fail (CI) / skip (elsewhere) the calling test."""
    for candidate in (shutil.which("mosquitto"), *MOSQUITTO_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    unavailable("mosquitto is not installed (apt-get install mosquitto)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- TLS material -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """Files of a test CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, all signed by that CA."""

    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gateway tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key, issuer: x509.Name | None, issuer_key, *, ca: bool = False,
                 sans: list[x509.GeneralName] | None = None, usage=None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer or _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(directory: Path, name: str = "test-ca") -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA: its PEM file, certificate and key."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _key()
    cert = _certificate(name, key, None, key, ca=True)
    return _write(directory / f"{name}.pem", _pem(cert)), cert, key


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_pki(directory: Path, client_name: str = "gw-test",
             server_names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Pki:
    """A CA, a server certificate valid for ``server_names`` (IP addresses or DNS names),
    and a client certificate whose common name is ``client_name``."""
    ca_file, ca_cert, ca_key = make_ca(directory)
    server_key, client_key = _key(), _key()
    server = _certificate(server_names[0], server_key, ca_cert.subject, ca_key,
                          sans=[_san(name) for name in server_names], usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _certificate(client_name, client_key, ca_cert.subject, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return Pki(
        ca_file=ca_file,
        server_cert_file=_write(directory / "server.pem", _pem(server)),
        server_key_file=_write(directory / "server.key", _key_pem(server_key), 0o600),
        client_cert_file=_write(directory / "client.pem", _pem(client)),
        client_key_file=_write(directory / "client.key", _key_pem(client_key), 0o600),
    )


# --- the broker ---------------------------------------------------------------------------


class MosquittoBroker:
    """One Mosquitto process on a fixed loopback port that survives ``stop()``/``start()``.

    ``start()`` and ``stop()`` block for a bounded time (the broker starts in milliseconds);
    they may be called from async tests to simulate an outage.
    """

    def __init__(self, directory: Path, *, pki: Pki | None = None, require_certificate: bool = False,
                 password_file: Path | None = None, persistence: bool = False, extra: str = "") -> None:
        self.binary = mosquitto_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.pki = pki
        self.config_file = directory / "mosquitto.conf"
        self.log_file = directory / "mosquitto.log"
        self.persistence = persistence
        self.config_file.write_text(self._config(require_certificate, password_file, extra))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.pki else 'mqtt'}://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _config(self, require_certificate: bool, password_file: Path | None, extra: str) -> str:
        lines = [
            # Staying the current user keeps the generated files readable: started as root,
            # Mosquitto would otherwise switch to the "mosquitto" user.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} {self.host}",
            # With persistence, a clean stop (SIGTERM) keeps sessions and queued messages
            # for the next start, as a production broker would.
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            # Subscribers in tests may lag a fast publisher: never drop their QoS 1 backlog.
            "max_queued_messages 1000000",
        ]
        if password_file is None:
            lines.append("allow_anonymous true")
        else:
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        if self.pki:
            lines += [
                f"cafile {self.pki.ca_file}",
                f"certfile {self.pki.server_cert_file}",
                f"keyfile {self.pki.server_key_file}",
                f"require_certificate {'true' if require_certificate else 'false'}",
            ]
        return "\n".join(lines) + "\n" + extra

    def start(self) -> None:
        if self.running:
            return
        log = (self.directory / "mosquitto.stderr").open("ab")
        try:
            self._process = subprocess.Popen([self.binary, "-c", str(self.config_file)],
                                             stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self._process.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return
            time.sleep(0.02)
        self.stop(kill=True)
        raise RuntimeError(f"mosquitto did not accept connections within {START_TIMEOUT_S} s: {self.log_tail()}")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (clean) or SIGKILL (a crash)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def restart(self, *, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.log_file, self.directory / "mosquitto.stderr"):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_broker(directory: Path, **options) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(directory, **options)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A plain, anonymous Mosquitto on a free loopback port."""
    with running_broker(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def mosquitto_tls(tmp_path: Path, pki: Pki) -> Iterator[MosquittoBroker]:
    """Mosquitto with TLS only, requiring a client certificate signed by ``pki``'s CA."""
    with running_broker(tmp_path / "broker-tls", pki=pki, require_certificate=True) as broker:
        yield broker


# --- helpers ------------------------------------------------------------------------------


def client_tls_context(pki: Pki) -> ssl.SSLContext:
    """A verifying TLS context for test clients, with the client certificate."""
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(pki.client_cert_file, pki.client_key_file)
    return context


class Subscriber:
    """Collects every message on ``topic_filter`` (QoS 1) in arrival order, reconnecting
    when the broker goes away.

    ``persistent=True`` keeps an MQTT 5 session (fixed client id, session expiry one hour)
    so that, with a broker started with ``persistence=True``, nothing published while the
    subscriber was reconnecting is lost. ``wait_for(predicate)`` returns the messages once
    ``predicate(messages)`` holds, or raises TimeoutError after ``timeout`` seconds (a
    bound, never an assertion on time).
    """

    def __init__(self, broker: MosquittoBroker, topic_filter: str, *, tls: ssl.SSLContext | None = None,
                 persistent: bool = False) -> None:
        self.broker = broker
        self.topic_filter = topic_filter
        self.tls = tls if tls is not None else (client_tls_context(broker.pki) if broker.pki else None)
        self.persistent = persistent
        self.messages: list[aiomqtt.Message] = []
        self.connections = 0
        self._changed = asyncio.Condition()
        self._ready = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()

    def _client(self) -> aiomqtt.Client:
        properties = None
        if self.persistent:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
        client = aiomqtt.Client(
            self.broker.host, self.broker.port, protocol=aiomqtt.ProtocolVersion.V5, tls_context=self.tls,
            identifier=f"test-subscriber-{id(self)}", properties=properties, timeout=10,
            # paho's "clean start first only" restarts at every connect() aiomqtt makes.
            clean_start=not self.persistent,
        )
        # The collector acknowledges thousands of QoS 1 messages; aiomqtt would warn.
        client.pending_calls_threshold = 1 << 30
        return client

    async def __aenter__(self) -> Subscriber:
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._task = group.create_task(self._collect(self._client()))
        try:
            async with asyncio.timeout(10):
                await self._ready.wait()
        except BaseException:
            self._task.cancel()
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._task.cancel()
        await self._stack.__aexit__(*exc_info)

    async def _collect(self, client: aiomqtt.Client) -> None:
        while True:
            try:
                async with client:
                    await cancellable(client.subscribe(self.topic_filter, qos=1))
                    self.connections += 1
                    self._ready.set()
                    async for message in client.messages:
                        async with self._changed:
                            self.messages.append(message)
                            self._changed.notify_all()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    async def wait_for(self, predicate: Callable[[list[aiomqtt.Message]], bool],
                       timeout: float = 20.0) -> list[aiomqtt.Message]:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.messages))
            return list(self.messages)


class TcpProxy:
    """A loopback TCP relay in front of a broker; ``cut()`` aborts every connection at
    once (a network failure as the broker sees it: no DISCONNECT, just a reset)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self._transports: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.connections = 0

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._relay, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()

    def cut(self) -> None:
        for writer in self._transports:
            writer.transport.abort()
        self._transports.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(5):
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        self._transports += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        async with asyncio.TaskGroup() as group:
            group.create_task(pump(reader, up_writer))
            group.create_task(pump(up_reader, writer))


@contextlib.asynccontextmanager
async def first_bytes_server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP listener that records the first bytes each client sends, then closes: to show
    what a client puts on the wire before any handshake could succeed."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(5):
                received.append(await reader.read(4096))
        writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        await server.wait_closed()


class SilentServer:
    """A TCP listener that accepts and never answers (a broker that hangs before CONNACK);
    ``closed`` counts connections the client closed."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        with contextlib.suppress(OSError):
            while await reader.read(4096):
                pass
        self.closed += 1
        writer.transport.abort()
