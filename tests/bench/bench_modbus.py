"""Benchmark: Modbus RTU sub-meter reads. Prints one JSON line.

* codec: registers decoded to exact values per second (float32 and scaled uint64), and
  125-register responses found by the RTU reader per second;
* the SDM630 map read from pymodbus's server on a socat pty, through the collector's master:
  grouped into block reads as the map allows, against one request per entry (what a gateway
  without grouping sends): requests and milliseconds per meter read. A pty has no line
  speed, but the master still keeps every request's 9600 baud transmit time plus t3.5
  before the next frame (13 ms per request), so this is that pacing plus software and
  round-trip overhead;
* the same two plans on a real 9600 baud 8E1 line, computed from the frames' sizes and the
  standard's t3.5 before every frame (no meter turnaround counted).

    .venv/bin/python tests/bench/bench_modbus.py [--reads 20] [--seconds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from gateway.codecs.modbus.registers import DATA_TYPES, decode_value, encode_raw  # noqa: E402
from gateway.codecs.modbus.rtu import ReadRequest, ResponseReader  # noqa: E402
from gateway.collectors.modbus import read_map  # noqa: E402
from gateway.collectors.modbus_master import ModbusMaster, Timing  # noqa: E402
from gateway.modbus_maps import RegisterMap, shipped_map  # noqa: E402
from gateway.transports import LineSettings, open_transport  # noqa: E402
from tests.collectors.modbus_helpers import sdm630_meter, simulated_line  # noqa: E402

LINE = LineSettings(9600, 8, "E", 1)


def per_second(work, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(1000):
            work()
        done += 1000
    return done / elapsed


def codec_figures(seconds: float) -> dict[str, int]:
    float32, uint64 = DATA_TYPES["float32"], DATA_TYPES["uint64"]
    float_words, int_words = encode_raw(230.1, float32), encode_raw(201362, uint64)
    factor = shipped_map("abb-b23").entries[1].factor
    request = ReadRequest(1, 3, 0, 125)
    response = _response(request)

    def find() -> None:
        reader = ResponseReader(request)
        reader.receive_data(response)
        assert reader.next_reply() is not None

    return {"float32_values_per_s": round(per_second(lambda: decode_value(float_words, float32), seconds)),
            "scaled_uint64_values_per_s": round(per_second(lambda: decode_value(int_words, uint64, factor=factor),
                                                           seconds)),
            "responses_125_registers_per_s": round(per_second(find, seconds / 2))}


def _response(request: ReadRequest) -> bytes:
    from pymodbus.framer import FramerRTU
    from pymodbus.pdu import DecodePDU
    from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

    pdu = ReadHoldingRegistersResponse(registers=list(range(request.count)), dev_id=request.unit)
    return FramerRTU(DecodePDU(is_server=True)).buildFrame(pdu)


def one_per_entry(register_map: RegisterMap) -> RegisterMap:
    """The same map read one entry per request (every SDM630 entry is 2 registers)."""
    return RegisterMap.model_validate({**register_map.model_dump(), "max_registers": 2})


def line_time_ms(register_map: RegisterMap) -> float:
    timing = Timing(LINE)
    total = 0.0
    for block in register_map.blocks():
        request = block.request(1)
        total += 2 * timing.t3_5 + timing.transmit_time(len(request.to_bytes())) + \
            timing.transmit_time(request.response_length)
    return round(total * 1000, 1)


async def pty_figures(reads: int) -> dict[str, object]:
    grouped = shipped_map("sdm630")
    single = one_per_entry(grouped)
    out: dict[str, object] = {}
    async with simulated_line([sdm630_meter(1)]) as line, open_transport(LINE, port=line.path) as transport:
        master = ModbusMaster(transport, Timing(LINE, 1.0))
        for name, register_map in (("grouped", grouped), ("one_per_entry", single)):
            await read_map(master, 1, register_map)  # warm up
            before = len(line.heard)
            start = time.perf_counter()
            for _ in range(reads):
                readout = await read_map(master, 1, register_map)
            elapsed = time.perf_counter() - start
            out[name] = {"requests_per_read": (len(line.heard) - before) // reads,
                         "ms_per_read_on_pty": round(elapsed / reads * 1000, 1),
                         "ms_per_read_at_9600_8E1": line_time_ms(register_map),
                         "values": len(readout.values)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    figures = {"bench": "modbus", "python": platform.python_version(), **codec_figures(args.seconds),
               "sdm630_map": asyncio.run(pty_figures(args.reads))}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
