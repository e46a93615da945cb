"""HDLC frames the DLMS link tests share: the published vectors of tests/data/dlms-vectors and
an exchange recorded with the independent meter (tests/peers/dlms-meter, gurux-dlms 1.0.203)."""

from __future__ import annotations

import json
from pathlib import Path

VECTORS = {
    v["id"]: v for v in json.loads((Path(__file__).parents[2] / "data" / "dlms-vectors" / "vectors.json").read_text())["vectors"]
}
HDLC_VECTOR_IDS = ("hdlc_snrm", "hdlc_ua_with_params", "hdlc_iframe_aarq", "hdlc_iframe_aare")


def vector_frame(vector_id: str) -> bytes:
    return bytes.fromhex(VECTORS[vector_id]["frame"])


#: The no-authentication AARQ inside the hdlc_iframe_aarq vector (after LLC E6 E6 00).
AARQ_NO_AUTH = vector_frame("hdlc_iframe_aarq")[12:-3]

# Recorded on loopback: client 16 to server 1/17 (2-byte address), the client proposing
# max info TX 16 / RX 24 so that both the AARQ and the AARE travel in three segments.
# Direction: ">" client to meter (frames this codec produced and the meter accepted),
# "<" meter to client (frames gurux produced).
RECORDED_SEGMENTED_ASSOCIATION = (
    (">", "7ea01f0223219321e0818012050110060118070400000001080400000001d40f7e"),  # SNRM
    ("<", "7ea01f21022373e6c781801205011806011007040000000108040000000178727e"),  # UA 24/16
    (">", "7ea81a02232110be51e6e600601da10906076085740508010195827e"),  # I N(S)=0 S
    ("<", "7ea008210223316c227e"),  # RR N(R)=1
    (">", "7ea81a02232112ac72be10040e01000000065f1f0400001e1d9e8c7e"),  # I N(S)=1 S
    ("<", "7ea008210223516a417e"),  # RR N(R)=2
    (">", "7ea00c022321141ab9ffff660c7e"),  # I N(S)=2, last segment
    ("<", "7ea81f2102237025d4e6e7006129a109060760857405080101a20302010061c87e"),  # I N(S)=0 S
    (">", "7ea00802232131a5e27e"),  # RR N(R)=1
    ("<", "7ea81f2102237237f7a305a103020100be10040e0800065f1f040000121d42da7e"),  # I N(S)=1 S
    (">", "7ea00802232151a3817e"),  # RR N(R)=2
    ("<", "7ea00e210223745d0cffff000711807e"),  # I N(S)=2, last segment
    (">", "7ea00802232153b1a27e"),  # DISC
    ("<", "7ea01f21022373e6c781801205011806011007040000000108040000000178727e"),  # UA
)
#: The AARE the recorded exchange carries (accepted, result 0).
RECORDED_AARE = bytes.fromhex(
    "6129a109060760857405080101a203020100a305a103020100be10040e0800065f1f040000121dffff0007"
)


def aare_result(apdu: bytes) -> int:
    """The association-result of an AARE ([2] INTEGER), found by walking its BER TLVs; bytes
    only, so the link tests do not depend on the APDU codec."""
    assert apdu[0] == 0x61, f"not an AARE: tag 0x{apdu[0]:02X}"
    pos, end = _tlv(apdu, 0)[1:]
    while pos < end:
        tag = apdu[pos]
        start, stop = _tlv(apdu, pos)[1:]
        if tag == 0xA2:
            assert apdu[start] == 0x02, "association-result is not an INTEGER"
            return int.from_bytes(apdu[start + 2 : stop], "big")
        pos = stop
    raise AssertionError("AARE has no association-result")


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the BER TLV at ``pos`` (short and long lengths)."""
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return data[pos], start, start + length


def units_from_chunks(parser, next_unit, stream: bytes, cuts: list[int]) -> list:
    """Feed ``stream`` cut at ``cuts`` (sorted offsets) to a stream parser; every unit out."""
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        parser.receive_data(stream[start:end])
        while (unit := next_unit()) is not None:
            out.append(unit)
    return out
