"""The master against simulators in their own processes on pseudo-terminals: the package's
simulator (paced at the baud rate) and the independent one in tests/peers/mbus-slave."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from gateway.codecs.mbus.application import VariableDataResponse, decode_response
from gateway.collectors.mbus_master import Collision, MBusMaster, parse_secondary
from gateway.errors import DeviceTimeout
from gateway.transports import LineSettings, open_transport

from tests.collectors.mbus_helpers import CORPUS, PEER, ROOT, frame_file, simulator_process

pytestmark = pytest.mark.integration

SIMULATORS = ["package", "peer"]
BAUD = 38400
LAST_TELEGRAM = frame_file("EDC")  # ends a readout of a corpus frame that says "more follow"


def decoded(path):
    return decode_response(bytes.fromhex(path.read_text())).response


def says_more(path) -> bool:
    response = decoded(path)
    return isinstance(response, VariableDataResponse) and response.more_records_follow


async def with_master(path: str, work, *, retries: int = 1):
    line = LineSettings(BAUD)
    async with open_transport(line, port=path) as transport:
        master = MBusMaster(transport, line, retries=retries)
        return await work(master), master.counters


@pytest.mark.parametrize("kind", SIMULATORS)
async def test_every_corpus_frame_read_by_primary_address_decodes_as_the_file_does(kind):
    slaves = {n: [path, LAST_TELEGRAM] if says_more(path) else [path] for n, path in enumerate(CORPUS, start=1)}

    async def read_all(master):
        return [await master.read(n) for n in slaves]

    with simulator_process(kind, slaves, baud=BAUD) as pty:
        readouts, counters = await with_master(pty, read_all)
    for (n, files), readout in zip(slaves.items(), readouts):
        assert [t.response for t in readout.telegrams] == [decoded(f) for f in files], files[0].name
        assert {t.frame.a for t in readout.telegrams} == {n}
    assert counters["errors"] == counters["timeouts"] == counters["collisions"] == 0


@pytest.mark.parametrize("kind", SIMULATORS)
async def test_secondary_scan_through_collisions_finds_every_meter_exactly_once(kind):
    stems = ["EDC", "itron_cf_55", "itron_cf_51", "ACW_Itron-BM-plus-m", "tecson", "kamstrup_multical_601"]
    slaves = {n: [frame_file(stem)] for n, stem in enumerate(stems, start=1)}
    with simulator_process(kind, slaves, baud=BAUD) as pty:
        result, counters = await with_master(pty, lambda master: master.scan_secondary(), retries=0)
    found = sorted((m.primary, m.secondary.identification, m.secondary.manufacturer) for m in result.meters)
    assert found == sorted((n, decoded(f[0]).header.identification, decoded(f[0]).header.manufacturer)
                           for n, f in slaves.items())
    assert result.collisions == [] and counters["collisions"] >= 3  # 1..., 11..., 111..., 1112...


@pytest.mark.parametrize("kind", SIMULATORS)
async def test_a_multi_telegram_readout_follows_the_fcb_to_the_last_telegram(kind):
    files = [frame_file("sontex_supercal_531_telegram1"), frame_file("svm_f22_telegram1"), LAST_TELEGRAM]
    with simulator_process(kind, {7: files}, baud=BAUD) as pty:
        readout, _ = await with_master(pty, lambda master: master.read(7))
    assert [t.response for t in readout.telegrams] == [decoded(f) for f in files]


@pytest.mark.parametrize("kind", SIMULATORS)
async def test_a_meter_found_by_secondary_address_is_read_by_it(kind):
    slaves = {1: [frame_file("EDC")], 2: [frame_file("ACW_Itron-BM-plus-m")]}
    with simulator_process(kind, slaves, baud=BAUD) as pty:
        readout, _ = await with_master(pty, lambda master: master.read(parse_secondary("1149037877040E16")))
    assert readout.telegrams[0].frame.a == 2
    assert readout.telegrams[0].response == decoded(frame_file("ACW_Itron-BM-plus-m"))


@pytest.mark.parametrize("kind", SIMULATORS)
async def test_a_mute_meter_times_out_after_the_retries_and_the_others_are_still_read(kind):
    slaves = {1: [frame_file("EDC")], 2: [frame_file("tecson")], 3: [frame_file("ACW_Itron-BM-plus-m")]}

    async def read_all(master):
        outcomes = {}
        for n in slaves:
            try:
                outcomes[n] = (await master.read(n)).telegrams[0].response
            except DeviceTimeout as exc:
                outcomes[n] = str(exc)
        return outcomes

    with simulator_process(kind, slaves, mute=[2], baud=BAUD) as pty:
        outcomes, counters = await with_master(pty, read_all, retries=2)
    assert outcomes[2] == "meter at address 2 did not answer (timeout after 60 ms, 2 retries)"
    assert outcomes[1] == decoded(slaves[1][0]) and outcomes[3] == decoded(slaves[3][0])
    assert counters["timeouts"] == 3 and counters["retries"] == 2


@pytest.mark.parametrize("kind", SIMULATORS)
async def test_a_bad_checksum_meter_is_a_counted_error_and_the_others_are_still_read(kind):
    slaves = {1: [frame_file("EDC")], 2: [frame_file("tecson")]}

    async def read_both(master):
        with pytest.raises(Collision, match="checksum"):
            await master.read(1)
        return await master.read(2)

    with simulator_process(kind, slaves, bad_checksum=[1], baud=BAUD) as pty:
        readout, counters = await with_master(pty, read_both, retries=1)
    assert readout.telegrams[0].response == decoded(slaves[2][0])
    assert counters["errors"] == 2 and counters["retries"] == 1


async def test_the_independent_simulator_over_tcp_is_read_like_a_serial_line():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(PEER), "--tcp", str(port), f"5:{frame_file('EDC')}"],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout.readline().strip() == f"TCP 127.0.0.1:{port}"
        line = LineSettings(BAUD)
        async with open_transport(line, tcp=f"127.0.0.1:{port}") as transport:
            readout = await MBusMaster(transport, line).read(5)
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
    assert readout.telegrams[0].response == decoded(frame_file("EDC"))
