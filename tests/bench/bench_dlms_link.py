#!/usr/bin/env python3
"""Throughput of the DLMS lower layers, one JSON line.

    .venv/bin/python tests/bench/bench_dlms_link.py [--seconds S]

* ``hdlc_128_frames_per_s``: one I-frame with a 128-byte information field encoded to bytes
  and decoded back by the stream parser;
* ``hdlc_1k_segmented_*``: a 1 KiB APDU sent by the client connection to the server
  connection with the default parameters (max info 128, window 1): 9 segments, the first 8
  answered with RR, reassembled on the far side, then a short reply; frames counts I-frames
  and RRs;
* ``wrapper_1k_messages_per_s``: the same APDU through the TCP wrapper.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.codecs.dlms.hdlc import LLC_COMMAND, Control, HdlcAddress, HdlcFrame, HdlcParser  # noqa: E402
from gateway.codecs.dlms.hdlc_connection import HdlcConnection, HdlcServerConnection  # noqa: E402
from gateway.codecs.dlms.link_events import ApduReceived, DataToSend, NeedData  # noqa: E402
from gateway.codecs.dlms.wrapper import WrapperConnection  # noqa: E402


def rate(step, seconds: float) -> tuple[float, int]:
    """Calls of ``step`` per second over about ``seconds``; also the sum of what it returned."""
    count = total = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            total += step()
        count += 50
    return count / elapsed, total


def hdlc_128(parser: HdlcParser, frame: HdlcFrame) -> int:
    parser.receive_data(frame.to_bytes())
    return parser.next_frame() is not None


def pump(conn, data: bytes) -> tuple[list, int]:
    """Feed ``data``; return the events and how many frames were fed."""
    conn.receive_data(data)
    events = []
    while not isinstance(event := conn.next_event(), NeedData):
        events.append(event)
    return events, data.count(b"\x7e\xa0") + data.count(b"\x7e\xa8")


def hdlc_1k(client: HdlcConnection, server: HdlcServerConnection, apdu: bytes) -> int:
    """The APDU from client to server, then a 2-byte reply (which acknowledges the last
    segment, as a real response does); frames moved."""
    frames = 0
    out, target, other = client.send_apdu(apdu), server, client
    while True:
        events, fed = pump(target, out)
        frames += fed
        if any(isinstance(e, ApduReceived) for e in events):
            break
        out = b"".join(e.data for e in events if isinstance(e, DataToSend))
        target, other = other, target
    _, fed = pump(client, server.send_apdu(b"\xc4\x01"))
    return frames + fed


def wrapper_1k(client: WrapperConnection, server: WrapperConnection, apdu: bytes) -> int:
    server.receive_data(client.send_apdu(apdu))
    return isinstance(server.next_event(), ApduReceived)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="per figure")
    args = ap.parse_args()

    frame = HdlcFrame(HdlcAddress(1, 17, 2), HdlcAddress(16), Control.information(3, 5), LLC_COMMAND + bytes(range(125)))
    parser = HdlcParser()
    per_s_128, _ = rate(lambda: hdlc_128(parser, frame), args.seconds)

    client, server = HdlcConnection(), HdlcServerConnection()
    [ua, _connected], _ = pump(server, client.connect())
    pump(client, ua.data)
    apdu = bytes(i & 0xFF for i in range(1024))
    frames_per_apdu = hdlc_1k(client, server, apdu)
    per_s_1k, _ = rate(lambda: hdlc_1k(client, server, apdu), args.seconds)

    wclient, wserver = WrapperConnection(), WrapperConnection(server_side=True)
    per_s_wrapper, _ = rate(lambda: wrapper_1k(wclient, wserver, apdu), args.seconds)

    print(
        json.dumps(
            {
                "bench": "bench_dlms_link",
                "python": sys.version.split()[0],
                "hdlc_128_frames_per_s": round(per_s_128),
                "hdlc_128_mbit_per_s": round(per_s_128 * len(frame.to_bytes()) * 8 / 1e6, 2),
                "hdlc_1k_segmented_apdus_per_s": round(per_s_1k),
                "hdlc_1k_segmented_frames_per_apdu": frames_per_apdu,
                "hdlc_1k_segmented_frames_per_s": round(per_s_1k * frames_per_apdu),
                "wrapper_1k_messages_per_s": round(per_s_wrapper),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
