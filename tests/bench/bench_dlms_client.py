"""Secured GETs per second on loopback against the gurux meter: the gateway's DLMS client
(the collector's session driver over its asyncio TCP transport) beside dlms-cosem's client
(DlmsClient over its blocking TCP I/O), in the same run, against the same meter.

    python tests/bench/bench_dlms_client.py [GETS]

Both associate with HLS-GMAC and security suite 0 (every APDU authenticated and encrypted;
dlms-cosem speaks general-glo-ciphering, the gateway the service-specific glo- APDUs), then
read the Register 1.0.1.8.0.255 value GETS times and decode it. The meter runs in its own
process, so the process CPU time measured around the GET loop is the client side's alone.
Prints one JSON line: GETs per second (wall clock) and microseconds of client CPU per GET
for each, and the ratio dlms-cosem / gateway (above 1: the gateway needs less CPU).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).parents[2]))

from dlms_cosem import cosem, enumerations  # noqa: E402
from dlms_cosem import security as their_security  # noqa: E402
from dlms_cosem.client import DlmsClient  # noqa: E402
from dlms_cosem.cosem.obis import Obis as TheirObis  # noqa: E402
from dlms_cosem.dlms_data import DlmsDataParser  # noqa: E402
from dlms_cosem.io import BlockingTcpIO, TcpTransport as TheirTcp  # noqa: E402

from gateway.codecs.dlms.association import Authentication, ClientSettings, SecuritySettings  # noqa: E402
from gateway.codecs.dlms.obis import Obis  # noqa: E402
from gateway.codecs.dlms.security import SecurityKeys  # noqa: E402
from gateway.codecs.dlms.services import AttributeDescriptor  # noqa: E402
from gateway.collectors.dlms import MemoryState  # noqa: E402
from gateway.dlms_counters import InvocationCounterStore  # noqa: E402
from gateway.collectors.dlms_session import SessionTarget, dlms_session  # noqa: E402
from gateway.transports import LineSettings, open_transport  # noqa: E402
from tests.dlms_peer import _stop, start_meter  # noqa: E402

# dlms-cosem logs every APDU through structlog; measure the client, not the log printing.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

EK = bytes(range(16))
AK = bytes(range(0xD0, 0xE0))
OUR_TITLE = bytes.fromhex("4D4D4D0000000001")
THEIR_TITLE = bytes.fromhex("4D4D4D0000000002")
REGISTER = (1, 0, 1, 8, 0, 255)
VALUE = 1234567
ROUNDS = 5
#: Kept across rounds: the meter refuses a counter it has seen.
COUNTERS = InvocationCounterStore(MemoryState())


async def ours(address: tuple[str, int], gets: int) -> tuple[float, float]:
    settings = ClientSettings(Authentication.HIGH_GMAC, ciphered=True,
                              security=SecuritySettings(OUR_TITLE, SecurityKeys(EK, AK)))
    target = SessionTarget("wrapper", settings, LineSettings(9600, 8, "N", 1), client_wport=1, name="bench")
    counters = COUNTERS.for_meter("bench")
    attribute = AttributeDescriptor(3, Obis(*REGISTER), 2)
    async with open_transport(target.line, tcp="%s:%d" % address) as transport:
        async with dlms_session(transport, target, counters) as session:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(gets):
                value = await session.get(attribute)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert value.value == VALUE
    return cpu, wall


def theirs(address: tuple[str, int], gets: int, first_counter: int) -> tuple[float, float]:
    client = DlmsClient(
        transport=TheirTcp(client_logical_address=1, server_logical_address=1, io=BlockingTcpIO(*address)),
        authentication=their_security.HighLevelSecurityGmacAuthentication(challenge_length=16),
        encryption_key=EK, authentication_key=AK, client_system_title=THEIR_TITLE,
        client_initial_invocation_counter=first_counter)
    attribute = cosem.CosemAttribute(enumerations.CosemInterface.REGISTER, TheirObis(*REGISTER), 2)
    with client.session():
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(gets):
            value = DlmsDataParser().parse(client.get(attribute))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert value[0].value == VALUE, value
    return cpu, wall


def main() -> int:
    gets = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as logs:
        meter = start_meter(Path(logs), auth="gmac", secure=True)
        try:
            runs = {"gateway": [], "dlms_cosem": []}
            for round_ in range(ROUNDS):  # alternate, best of each
                runs["gateway"].append(asyncio.run(ours(meter.address, gets)))
                # Each round starts above the last one's counters (the meter refuses replays).
                runs["dlms_cosem"].append(theirs(meter.address, gets, 1 + round_ * (gets + 10)))
        finally:
            _stop(meter.process)
    figures = {"bench": "dlms_client_secured_get", "gets": gets, "meter": "gurux (HLS-GMAC, suite 0, wrapper)"}
    for name, results in runs.items():
        cpu = min(c for c, _ in results)
        wall = min(w for _, w in results)
        figures[f"{name}_gets_per_s"] = round(gets / wall)
        figures[f"{name}_cpu_us_per_get"] = round(cpu / gets * 1e6, 1)
    figures["cpu_ratio_dlms_cosem_over_gateway"] = round(
        figures["dlms_cosem_cpu_us_per_get"] / figures["gateway_cpu_us_per_get"], 2)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
