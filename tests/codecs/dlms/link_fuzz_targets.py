"""Fuzz targets of the DLMS lower layers, shared by tests/codecs/dlms/test_link_fuzz.py (a few
thousand examples per run) and tests/bench/fuzz_dlms_link.py (a long run).

Each target takes bytes and a chunk size, feeds the bytes to one decoder or connection and
drains it; it returns how many DLMSErrors were raised on the way. Any other exception, or a
decoder that does not come to rest, is a bug.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.codecs.dlms.errors import DLMSError
from gateway.codecs.dlms.hdlc import HdlcParameters, HdlcParser, decode_frame
from gateway.codecs.dlms.hdlc_connection import HdlcConnection, HdlcServerConnection, HdlcSettings
from gateway.codecs.dlms.link_events import NeedData
from gateway.codecs.dlms.mode_e import ModeEOpening, decode_identification
from gateway.codecs.dlms.wrapper import WrapperConnection, WrapperParser, decode_wrapper
from tests.codecs.dlms.hdlc_vectors import HDLC_VECTOR_IDS, RECORDED_SEGMENTED_ASSOCIATION, vector_frame

#: Valid inputs to mutate: the HDLC vectors, a recorded exchange, a wrapper message, an
#: identification.
SEEDS = (
    *(vector_frame(v) for v in HDLC_VECTOR_IDS),
    b"".join(bytes.fromhex(frame) for _, frame in RECORDED_SEGMENTED_ASSOCIATION),
    bytes.fromhex("000100010010000b61098001000102030405060708"),
    b"/?!\r\n/ISk5\\2MT382-1000\r\n",
)


def _drain(step: Callable[[], object], budget: int) -> int:
    """Call ``step`` until it returns None or NeedData; count DLMSErrors. ``budget`` bounds the
    calls: every call must consume input or end, so more calls than bytes means a loop."""
    errors = 0
    for _ in range(budget):
        try:
            result = step()
        except DLMSError:
            errors += 1
            continue
        if result is None or isinstance(result, NeedData):
            return errors
    raise AssertionError("decoder did not come to rest: it loops without consuming input")


def _feed(receive: Callable[[bytes], None], step: Callable[[], object], data: bytes, chunk: int) -> int:
    errors = 0
    for i in range(0, len(data), chunk):
        receive(data[i : i + chunk])
        errors += _drain(step, 4 * len(data) + 16)
    return errors


def _strict(decode: Callable[[bytes], object], data: bytes) -> int:
    try:
        decode(data)
    except DLMSError:
        return 1
    return 0


def hdlc_parser(data: bytes, chunk: int) -> int:
    parser = HdlcParser()
    errors = _feed(parser.receive_data, parser.next_frame, data, chunk)
    return errors + _strict(decode_frame, data) + _strict(HdlcParameters.from_info, data)


def hdlc_connections(data: bytes, chunk: int) -> int:
    errors = 0
    client = HdlcConnection(HdlcSettings(server_physical=17))
    client.connect()
    server = HdlcServerConnection(HdlcSettings(server_physical=17))
    for conn in (client, server):
        errors += _feed(conn.receive_data, conn.next_event, data, chunk)
    return errors


def wrapper(data: bytes, chunk: int) -> int:
    parser = WrapperParser(max_apdu_length=1024)
    conn = WrapperConnection()
    errors = _feed(parser.receive_data, parser.next_message, data, chunk)
    errors += _feed(conn.receive_data, conn.next_event, data, chunk)
    return errors + _strict(decode_wrapper, data)


def mode_e(data: bytes, chunk: int) -> int:
    opening = ModeEOpening()
    errors = _feed(opening.receive_data, opening.next_event, data, chunk)
    return errors + _strict(decode_identification, data)


TARGETS = {"hdlc_parser": hdlc_parser, "hdlc_connections": hdlc_connections, "wrapper": wrapper, "mode_e": mode_e}


def mutate(seed: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 flip bits, 1 insert, 2 delete, 3 truncate."""
    data = bytearray(seed)
    for kind, position, value in edits:
        pos = position % (len(data) + 1)
        if kind == 0 and data:
            data[pos % len(data)] ^= value or 1
        elif kind == 1:
            data[pos:pos] = bytes([value])
        elif kind == 2 and data:
            del data[pos % len(data)]
        elif kind == 3:
            del data[pos:]
    return bytes(data)
