"""Throughput of the DLMS server: secured GETs per second, and a 10,000-row profile by range.

    python tests/bench/bench_dlms_server.py [SECONDS]

The server runs in this process (asyncio, a real Store in a temporary directory); clients
run in separate processes so their CPU is not the server's: the gateway's own client
association over the wrapper on loopback, associated with HLS-GMAC and every APDU
authenticated and encrypted (security suite 0), reading a Register's value in a loop, one
request outstanding per connection. Figures:

* ``gets_per_s_1_client``: one connection;
* ``gets_per_s_20_clients``: 20 connections (4 client processes × 5);
* ``gurux_gets_per_s_1_client``: the same client, the same GET and security, against the
  gurux-dlms meter of tests/peers/dlms-meter in the same run (it serves one connection at a
  time, so it has no 20-client figure); ``ratio_*`` is ours over gurux's;
* ``profile_10000_rows_s``: a client GETs a meter profile of 10,000 captures (4 quantities
  each) by range, in blocks of its 65535-byte PDU; the time from request to last block
  (``profile_10000_rows_1k_pdu_s`` with a 1024-byte PDU).

Each GET figure is the best of ``ROUNDS`` windows of SECONDS (default 4). One JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gateway.codecs.dlms.association import (  # noqa: E402
    Authentication,
    ClientAssociation,
    ClientSettings,
    GetResult,
    NextRequest,
    SecuritySettings,
)
from gateway.codecs.dlms.dates import CosemDateTime  # noqa: E402
from gateway.codecs.dlms.link_events import ApduReceived  # noqa: E402
from gateway.codecs.dlms.obis import Obis  # noqa: E402
from gateway.codecs.dlms.security import MemoryInvocationCounters, SecurityKeys  # noqa: E402
from gateway.codecs.dlms.selective import RangeDescriptor  # noqa: E402
from gateway.codecs.dlms.services import AttributeDescriptor  # noqa: E402
from gateway.codecs.dlms.wrapper import WrapperConnection  # noqa: E402

KEYS = SecurityKeys(bytes(range(16)), bytes(range(0xD0, 0xE0)))
ROUNDS = 2
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
OUR_REGISTER = AttributeDescriptor(3, Obis(1, 0, 1, 8, 0), 2)
GURUX_REGISTER = AttributeDescriptor(3, Obis(1, 0, 1, 8, 0), 2)
PROFILE = AttributeDescriptor(7, Obis(0, 0, 99, 1, 0), 2)
PROFILE_ROWS = 10_000


# --- the client side (runs in its own process) -------------------------------------------


class Connection:
    """One blocking association over the wrapper."""

    def __init__(self, port: int, server_sap: int, title: bytes, pdu: int = 0xFFFF) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.link = WrapperConnection(client_wport=1, server_wport=server_sap)
        settings = ClientSettings(Authentication.HIGH_GMAC, ciphered=True, security=SecuritySettings(title, KEYS),
                                  max_receive_pdu_size=pdu)
        self.client = ClientAssociation(settings, MemoryInvocationCounters(outgoing={title: 1}))

    def send(self, apdu: bytes) -> None:
        self.sock.sendall(self.link.send_apdu(apdu))

    def feed(self) -> object | None:
        """Read what arrived; the association's event once an APDU is complete."""
        event = self.link.next_event()
        while not isinstance(event, ApduReceived):
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError("closed")
            self.link.receive_data(data)
            event = self.link.next_event()
        return self.client.receive_apdu(event.apdu)

    def run(self, apdu: bytes):
        self.send(apdu)
        while True:
            event = self.feed()
            if not isinstance(event, NextRequest):
                return event
            self.send(event.apdu)


def client_main(args: list[str]) -> None:
    """``client PORT SAP CONNECTIONS START SECONDS TITLE_BASE``: GET the register in a loop
    on every connection from START (wall clock) for SECONDS; print how many answers came."""
    port, sap, count, start, seconds, base = int(args[0]), int(args[1]), int(args[2]), float(args[3]), \
        float(args[4]), int(args[5])
    register = GURUX_REGISTER if sap == 1 else OUR_REGISTER
    connections = [Connection(port, sap, b"MMM" + (base + n).to_bytes(5, "big")) for n in range(count)]
    for connection in connections:
        connection.run(connection.client.send_aarq())
    time.sleep(max(0.0, start - time.time()))
    end = start + seconds
    done = 0
    by_socket = {c.sock: c for c in connections}
    for connection in connections:
        connection.send(connection.client.send_get(register))
    while time.time() < end:
        readable, _, _ = select.select(list(by_socket), [], [], 0.5)
        for sock in readable:
            connection = by_socket[sock]
            event = connection.feed()
            if isinstance(event, NextRequest):
                connection.send(event.apdu)
                continue
            assert isinstance(event, GetResult) and not hasattr(event.result, "code"), event
            done += 1
            connection.send(connection.client.send_get(register))
    print(json.dumps({"gets": done, "seconds": seconds}))


def profile_main(args: list[str]) -> None:
    """``profile PORT SAP PDU``: read the profile by range once; print the time it took."""
    port, sap, pdu = int(args[0]), int(args[1]), int(args[2])
    connection = Connection(port, sap, b"PRF" + pdu.to_bytes(5, "big"), pdu)
    connection.run(connection.client.send_aarq())
    window = RangeDescriptor.by_time(CosemDateTime.from_datetime(T0),
                                     CosemDateTime.from_datetime(T0 + timedelta(minutes=15 * PROFILE_ROWS)))
    started = time.perf_counter()
    result = connection.run(connection.client.send_get(PROFILE, window.to_access()))
    elapsed = time.perf_counter() - started
    assert len(result.result.value) == PROFILE_ROWS, result
    print(json.dumps({"seconds": elapsed, "rows": len(result.result.value)}))


# --- the server side ------------------------------------------------------------------------


async def spawn(*args: str) -> dict:
    process = await asyncio.create_subprocess_exec(sys.executable, __file__, *args, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"client {args[0]} failed ({process.returncode})")
    return json.loads(out)


async def gets_per_second(port: int, sap: int, processes: int, per_process: int, seconds: float, base: int) -> float:
    best = 0.0
    for round_ in range(ROUNDS):
        start = time.time() + 2.0 + 0.2 * processes * per_process  # after every association
        results = await asyncio.gather(*(
            spawn("client", str(port), str(sap), str(per_process), str(start), str(seconds),
                  str(base + 1000 * round_ + per_process * n)) for n in range(processes)))
        best = max(best, sum(r["gets"] for r in results) / seconds)
    return best


def start_gurux(port: int) -> subprocess.Popen:
    peer = REPO / "tests" / "peers" / "dlms-meter"
    python = REPO / ".venv-peers" / "bin" / "python"
    interpreter = str(python) if python.exists() else sys.executable  # gurux-dlms is a test dependency
    process = subprocess.Popen([interpreter, str(peer / "gx_meter_server.py"), "--port", str(port), "--auth", "gmac",
                                "--secure"], cwd=peer, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the gurux meter did not start")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def fill(store) -> None:
    from gateway.model import Reading

    await store.append([Reading("BENCH-REGISTER", "energy", Decimal("12345.678"), "kWh", T0, obis="1-0:1.8.0*255")])
    batch = []
    for n in range(PROFILE_ROWS):
        at = T0 + timedelta(minutes=15 * n)
        batch += [Reading("BENCH-PROFILE", "energy", Decimal(100000 + n).scaleb(-3), "kWh", at, obis="1-0:1.8.0*255"),
                  Reading("BENCH-PROFILE", "volume", Decimal(5000 + n).scaleb(-2), "m^3", at),
                  Reading("BENCH-PROFILE", "flow temperature", Decimal(600 + n % 50).scaleb(-1), "°C", at),
                  Reading("BENCH-PROFILE", "power", Decimal(n % 977), "W", at)]
        if len(batch) >= 4000:
            await store.append(batch)
            batch = []
    if batch:
        await store.append(batch)


async def main(seconds: float) -> dict:
    from gateway.config import DlmsUplink, StoreSection
    from gateway.store import Store
    from gateway.uplinks.dlms_server import DlmsServer

    figures: dict = {"bench": "dlms_server", "seconds": seconds, "rounds": ROUNDS, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as directory:
        async with Store(Path(directory) / "store.sqlite", StoreSection(synchronous="normal")) as store:
            await fill(store)
            server = DlmsServer(DlmsUplink(port=0, idle_timeout_s=600), gateway_id="bench-gw", store=store,
                                keys=KEYS)
            async with asyncio.TaskGroup() as group:
                task = group.create_task(server.run())
                await server.listening.wait()
                try:
                    sap = next(m.sap for m in server.registry.meters() if m.device == "BENCH-REGISTER")
                    profile_sap = next(m.sap for m in server.registry.meters() if m.device == "BENCH-PROFILE")
                    figures["gets_per_s_1_client"] = round(await gets_per_second(server.port, sap, 1, 1, seconds,
                                                                                 1000))
                    figures["gets_per_s_20_clients"] = round(await gets_per_second(server.port, sap, 4, 5, seconds,
                                                                                   10_000))
                    for pdu, name in ((0xFFFF, "profile_10000_rows_s"), (1024, "profile_10000_rows_1k_pdu_s")):
                        profile = await spawn("profile", str(server.port), str(profile_sap), str(pdu))
                        figures[name] = round(profile["seconds"], 3)
                finally:
                    task.cancel()
    gurux_port = free_port()
    gurux = start_gurux(gurux_port)
    try:
        figures["gurux_gets_per_s_1_client"] = round(await gets_per_second(gurux_port, 1, 1, 1, seconds, 50_000))
    finally:
        gurux.terminate()
        gurux.wait(10)
    for name in ("1_client", "20_clients"):
        figures[f"ratio_{name}"] = round(figures[f"gets_per_s_{name}"] / figures["gurux_gets_per_s_1_client"], 1)
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        client_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "profile":
        profile_main(sys.argv[2:])
    else:
        print(json.dumps(asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0))))
