"""A profile is read from the store page by page as the client takes blocks: never the
whole buffer, never more than a block and a page held for a connection."""

from __future__ import annotations

from gateway.codecs.dlms.services import AttributeDescriptor
from gateway.uplinks.dlms_server import profiles
from tests.uplinks.dlms_server.conftest import PROFILE, Client, heat_readings, management_settings, serving


async def test_a_long_profile_is_read_in_pages_and_held_a_block_at_a_time(store, monkeypatch) -> None:
    await store.append(heat_readings(600))
    monkeypatch.setattr(profiles, "PAGE", 100)
    pages: list[tuple[int, int]] = []
    held: list[int] = []
    read_rows, chunk = store.capture_rows, profiles.BufferStream.chunk

    async def counting_rows(device, after, upto, start, end, limit):
        rows = await read_rows(device, after, upto, start, end, limit)
        pages.append((limit, len(rows)))
        return rows

    async def watching_chunk(self, room):
        result = await chunk(self, room)
        held.append(len(self._pending))
        return result

    monkeypatch.setattr(store, "capture_rows", counting_rows)
    monkeypatch.setattr(profiles.BufferStream, "chunk", watching_chunk)
    async with serving(store) as server, Client(server.port, 16, settings=management_settings(
            max_receive_pdu_size=512)) as meter:
        await meter.associate()
        buffer = await meter.get(AttributeDescriptor(7, PROFILE, 2))
    assert len(buffer.value) == 600
    assert {limit for limit, _ in pages} == {100} and len(pages) == 25  # 2400 readings, a page at a time
    assert len(held) >= 40 and max(held) < 100  # between blocks only the rest of a row waits
