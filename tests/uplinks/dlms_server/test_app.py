"""The gateway builds the DLMS server from ``[uplinks.dlms]``, supervises it like the MQTT
uplinks, reports it in its status, and stops without waiting for a cursor it does not have."""

from __future__ import annotations

import asyncio
import time

from gateway.app import Gateway, Timing
from gateway.config import parse_config
from gateway.uplinks.dlms_server import DlmsServer
from tests.uplinks.conftest import eventually
from tests.uplinks.dlms_server.conftest import PUBLIC, SAP_LIST, Client


async def test_the_gateway_serves_dlms_from_its_configuration_and_stops_promptly(tmp_path) -> None:
    for name, key in (("ek", "11" * 16), ("ak", "22" * 16)):
        (tmp_path / name).write_text(key)
        (tmp_path / name).chmod(0o600)
    config = parse_config(f"""
[gateway]
id = "gw-app"
state_dir = "{tmp_path / 'state'}"
[uplinks.dlms]
port = 0
ek_file = "{tmp_path / 'ek'}"
ak_file = "{tmp_path / 'ak'}"
""")
    gateway = Gateway(config, timing=Timing(stop_polling_s=1, drain_uplinks_s=10, housekeeping_s=60,
                                            status_file_s=60))
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(gateway.run(stop))
        await eventually(lambda: bool(gateway.uplinks) and gateway.uplinks[0].listening.is_set())
        server = gateway.uplinks[0]
        assert isinstance(server, DlmsServer)
        async with Client(server.port, 1, PUBLIC) as public:
            await public.associate()
            assert (await public.get(SAP_LIST)).to_python() == [[1, b"gwapp"]]
        status = await gateway.status()
        assert status["uplinks"]["dlms"]["associations"] == 1
        stopped = time.monotonic()
        stop.set()
    assert time.monotonic() - stopped < 8  # no drain wait: the server has no cursor to move
