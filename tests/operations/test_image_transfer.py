"""Firmware image transfer against the simulated meter: blocks, verification and activation;
an interrupted transfer resumed with only the missing blocks, after a link break and after a
gateway restart; activation never repeated."""

from __future__ import annotations

import hashlib
import os

from gateway.operations import Outcome, State
from gateway.simulators.dlms import ImageStatus, SimulatedDlmsMeter
from tests.operations.helpers import rig

IMAGE = os.urandom(64 * 20 + 17)  # 21 blocks of 64 bytes, the last one short


def held(tmp_path, data: bytes = IMAGE) -> str:
    """Put the image where the gateway keeps its images; its SHA-256."""
    (tmp_path / "images").mkdir(exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "images" / digest).write_bytes(data)
    return digest


async def test_an_image_is_transferred_verified_and_activated(tmp_path):
    digest = held(tmp_path)
    async with rig(tmp_path, SimulatedDlmsMeter(verify_polls=3)) as r:
        done = await r.outcome(await r.submit("firmware", {"image": digest, "identifier": "FW-2.0"}))
        assert done.outcome is Outcome.SUCCESS, done.results
        assert r.meter.firmware == b"FW-2.0" and r.meter.firmware_image == IMAGE
        assert r.meter.image.status is ImageStatus.ACTIVATION_SUCCESSFUL
        assert sorted(r.meter.blocks_received) == list(range(21))
        assert done.progress == {"phase": "done", "size": len(IMAGE), "block_size": 64, "blocks": 21,
                                 "transferred": 21, "sent": 21, "resumed": 0}
        methods = [m for _, _, m in r.meter.actions(18)]
        assert methods == [1, *[2] * 21, 3, 4]  # verify answered temporary-failure, then polled
        [event] = await r.events("operation.result")
        assert '"phase":"done"' in event.details["progress"]


async def test_a_transfer_cut_off_midway_resumes_with_only_the_missing_blocks(tmp_path):
    digest = held(tmp_path)
    async with rig(tmp_path, SimulatedDlmsMeter(drop_after_blocks=8)) as r:
        done = await r.outcome(await r.submit("firmware", {"image": digest, "identifier": "FW-2.0"}))
        assert done.outcome is Outcome.SUCCESS, done.results
        assert sorted(r.meter.blocks_received) == list(range(21))  # every block exactly once
        assert done.attempts == 2 and done.progress["resumed"] == 1
        assert r.meter.firmware_image == IMAGE
        assert [m for _, _, m in r.meter.actions(18)].count(1) == 1  # initiated once


async def test_a_transfer_resumes_after_a_gateway_restart_and_a_meter_outage(tmp_path):
    digest = held(tmp_path)
    meter = SimulatedDlmsMeter(drop_after_blocks=5)
    async with rig(tmp_path, meter, retry_s=3600) as r:  # no retry before the "restart"
        operation = await r.submit("firmware", {"image": digest, "identifier": "FW-3.0", "activate": False})
        await r.until(lambda ops: ops[0].progress and ops[0].state is State.QUEUED and ops[0].attempts == 1)
    assert sorted(meter.blocks_received) == list(range(5))  # the fifth taken, its answer lost
    async with rig(tmp_path, meter) as r:  # the gateway again: the same store, the same meter
        done = await r.outcome(operation)
        assert done.outcome is Outcome.SUCCESS
        assert sorted(meter.blocks_received) == list(range(21))
        assert meter.image.status is ImageStatus.VERIFICATION_SUCCESSFUL and meter.firmware == b"FW-1.0"
        assert done.progress["phase"] == "done" and done.progress["resumed"] == 1


async def test_a_meter_that_refuses_transfers_ends_the_operation_with_its_reason(tmp_path):
    digest = held(tmp_path)
    meter = SimulatedDlmsMeter()
    meter.image.enabled = False
    async with rig(tmp_path, meter) as r:
        done = await r.outcome(await r.submit("firmware", {"image": digest, "identifier": "X"}))
        assert done.outcome is Outcome.DATA_ACCESS_RESULT
        assert done.results[-1]["result"] == "image transfer disabled"
        assert r.meter.actions(18) == []


async def test_a_meter_answering_null_for_its_block_size_ends_the_operation_instead_of_crashing_the_line(tmp_path):
    from gateway.codecs.dlms.axdr import Data, DataType

    digest = held(tmp_path)
    meter = SimulatedDlmsMeter()
    answer = meter.image.get
    meter.image.get = lambda attribute: Data(DataType.NULL_DATA, None) if attribute == 2 else answer(attribute)
    async with rig(tmp_path, meter) as r:
        done = await r.outcome(await r.submit("firmware", {"image": digest, "identifier": "X"}))
        assert done.outcome is Outcome.DATA_ACCESS_RESULT
        assert done.results[-1]["result"] == "type-unmatched: null_data, not an integer"
        assert r.meter.actions(18) == []
