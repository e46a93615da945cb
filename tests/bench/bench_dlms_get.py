"""CPU per GET of the gateway's DLMS client against dlms-cosem's (both sans-IO, same bytes).

    python tests/bench/bench_dlms_get.py [ROUNDS]

For each case a client builds the GET request, takes the server's response bytes and
returns the decoded value (our Data; dlms-cosem's parsed DLMS data), in a ready
association: a register value, a 24-row profile buffer (555 bytes, the published vector),
and the register read over general-glo-ciphering (AES-GCM both ways). Prints one JSON line of
microseconds of process CPU time per GET (best of 5 runs) and the ratio theirs/ours."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).parents[2]))

from dlms_cosem import cosem, enumerations  # noqa: E402
from dlms_cosem.connection import DlmsConnection  # noqa: E402
from dlms_cosem.cosem.obis import Obis as TheirObis  # noqa: E402
from dlms_cosem.dlms_data import DlmsDataParser  # noqa: E402
from dlms_cosem.protocol import xdlms  # noqa: E402
from dlms_cosem.protocol.xdlms.conformance import Conformance  # noqa: E402

from gateway.codecs.dlms.association import ClientAssociation, ClientSettings, SecuritySettings  # noqa: E402
from gateway.codecs.dlms.axdr import Data, DataType  # noqa: E402
from gateway.codecs.dlms.obis import Obis  # noqa: E402
from gateway.codecs.dlms.security import MemoryInvocationCounters, SecurityKeys, cipher_apdu  # noqa: E402
from gateway.codecs.dlms.services import (  # noqa: E402
    AttributeDescriptor,
    InvokeIdAndPriority,
)
from gateway.codecs.dlms.xdlms import InitiateResponse  # noqa: E402

# dlms-cosem logs every APDU through structlog; measure the codec, not the log printing.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

VECTORS = {v["id"]: v for v in json.loads(
    (Path(__file__).parents[1] / "data" / "dlms-vectors" / "vectors.json").read_text())["vectors"]}
PROFILE = bytes.fromhex(VECTORS["axdr_profile_generic_buffer_24rows"]["data"])[1:]
EK = bytes(range(16))
AK = bytes(range(0xD0, 0xE0))
CLIENT = bytes.fromhex("4D4D4D0000000001")
METER = bytes.fromhex("4D4D4D0000BC614E")
REGISTER = Data(DataType.DOUBLE_LONG_UNSIGNED, 1234567)
CONFORMANCE = 0x00FE1F


def responses(value: bytes, rounds: int, ciphered: bool) -> list[bytes]:
    """The server's answers, one per GET, invoke-ids 1..15 cycling, counters increasing."""
    out = []
    for n in range(rounds):
        invoke = InvokeIdAndPriority.of((n + 1) & 0x0F)
        plain = b"\xc4\x01" + bytes((invoke.value,)) + b"\x00" + value
        if ciphered:
            plain = cipher_apdu(plain, keys=SecurityKeys(EK, AK), system_title=METER, invocation_counter=1000 + n,
                                general=True).to_bytes()
        out.append(plain)
    return out


def ours(value: bytes, rounds: int, ciphered: bool) -> float:
    settings = ClientSettings(ciphered=ciphered, security=SecuritySettings(CLIENT, SecurityKeys(EK, AK),
                                                                           general_protection=True))
    client = ClientAssociation.pre_established(settings, InitiateResponse(CONFORMANCE, 0xFFFF),
                                               MemoryInvocationCounters(), server_system_title=METER)
    attribute = AttributeDescriptor(3, Obis(1, 0, 1, 8, 0, 255), 2)
    answers = responses(value, rounds, ciphered)
    start = time.process_time()
    for answer in answers:
        client.send_get(attribute)
        event = client.receive_apdu(answer)
    elapsed = time.process_time() - start
    assert event.result.to_bytes() == value
    return elapsed / rounds


def theirs(value: bytes, rounds: int, ciphered: bool) -> float:
    connection = DlmsConnection.with_pre_established_association(
        conformance=Conformance.from_bytes(CONFORMANCE.to_bytes(3, "big")) if hasattr(Conformance, "from_bytes")
        else Conformance(),
        global_encryption_key=EK if ciphered else None,
        global_authentication_key=AK if ciphered else None,
        client_system_title=CLIENT,
        meter_system_title=METER,
        client_invocation_counter=0,
        meter_invocation_counter=0,
    )
    attribute = cosem.CosemAttribute(interface=enumerations.CosemInterface.REGISTER,
                                     instance=TheirObis(1, 0, 1, 8, 0, 255), attribute=2)
    answers = responses(value, rounds, ciphered)
    start = time.process_time()
    for answer in answers:
        connection.send(xdlms.GetRequestNormal(cosem_attribute=attribute))
        connection.receive_data(answer)
        response = connection.next_event()
        parsed = DlmsDataParser().parse(response.data)
    elapsed = time.process_time() - start
    assert bytes(response.data) == value and len(parsed) == 1
    return elapsed / rounds


def best(function, *args) -> float:
    return min(function(*args) for _ in range(5))


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    figures = {"bench": "dlms_get_cpu", "rounds": rounds}
    for name, value, ciphered in (("register", REGISTER.to_bytes(), False), ("profile_24_rows", PROFILE, False),
                                  ("register_ciphered", REGISTER.to_bytes(), True)):
        us_ours = best(ours, value, rounds, ciphered) * 1e6
        us_theirs = best(theirs, value, rounds, ciphered) * 1e6
        figures[f"{name}_ours_us"] = round(us_ours, 1)
        figures[f"{name}_dlms_cosem_us"] = round(us_theirs, 1)
        figures[f"{name}_ratio"] = round(us_theirs / us_ours, 2)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
