"""Byte-stream transports: serial ports (over pseudo-terminals), TCP, sharing and arbitration."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty

import pytest

from gateway.errors import DeviceTimeout, TransportError
from gateway.transports import LineSettings, open_transport, port_key
from gateway.transports.base import MAX_INBOX_BYTES
from gateway.transports.serial_port import SerialTransport, is_pseudo_terminal
from gateway.transports.tcp import TcpTransport


@pytest.fixture
def pty_pair():
    """(fd of the far end, path of the near end): the test plays the device on the fd."""
    far, near = os.openpty()
    tty.setraw(near)
    os.set_blocking(far, False)
    try:
        yield far, os.ttyname(near)
    finally:
        os.close(far)
        os.close(near)


@pytest.fixture
async def serial(pty_pair):
    """(far end fd, an open 2400 8E1 serial transport on the near end)."""
    far, path = pty_pair
    async with SerialTransport(path, LineSettings(2400)) as transport:
        yield far, transport


async def arrive(far: int, data: bytes) -> None:
    """The device sends ``data``; give the event loop time to receive it."""
    os.write(far, data)
    await asyncio.sleep(0.05)


def read_far(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


@pytest.mark.parametrize(("framing", "bits"), [("8E1", 11), ("8N1", 10), ("7E1", 10), ("8N2", 11), ("8O1", 11)])
def test_a_character_takes_start_data_parity_and_stop_bits(framing, bits):
    assert LineSettings.parse(2400, framing).bits_per_char == bits


@pytest.mark.parametrize("baud", [300, 600, 1200, 2400, 4800, 9600, 19200, 38400])
def test_transmit_time_is_eleven_bit_times_per_mbus_character(baud):
    line = LineSettings(baud)
    assert line.transmit_time(10) == pytest.approx(110 / baud)
    assert line.bit_times(330) == pytest.approx(330 / baud)


def test_bad_character_formats_are_refused():
    with pytest.raises(ValueError, match="8E1"):
        LineSettings.parse(2400, "9X1")
    with pytest.raises(ValueError):
        LineSettings(0)


def test_a_pseudo_terminal_is_recognised_and_a_regular_file_is_not(pty_pair, tmp_path):
    _, path = pty_pair
    assert is_pseudo_terminal(path)
    assert not is_pseudo_terminal(str(tmp_path))


async def test_serial_transport_writes_and_reads_what_arrives(serial):
    far, transport = serial
    await transport.write(b"\x10\x40\x01\x41\x16")
    await asyncio.sleep(0.05)
    assert read_far(far) == b"\x10\x40\x01\x41\x16"
    os.write(far, b"\xE5")
    assert await transport.read(timeout_s=1) == b"\xE5"
    assert transport.bytes_sent == 5 and transport.bytes_received == 1


async def test_serial_read_of_a_silent_device_raises_device_timeout(pty_pair):
    _, path = pty_pair
    async with SerialTransport(path, LineSettings(9600)) as transport:
        with pytest.raises(DeviceTimeout, match="nothing received within 30 ms"):
            await transport.read(timeout_s=0.03)


async def test_reset_input_discards_stale_bytes_and_counts_them(serial):
    far, transport = serial
    await arrive(far, b"late reply")
    assert transport.reset_input() == 10
    assert transport.bytes_discarded == 10
    with pytest.raises(DeviceTimeout):
        await transport.read(timeout_s=0.02)


async def test_read_returns_at_most_max_bytes_and_keeps_the_rest(serial):
    far, transport = serial
    await arrive(far, b"abcdef")
    assert await transport.read(4, timeout_s=1) == b"abcd"
    assert await transport.read(4, timeout_s=1) == b"ef"


async def test_the_baud_rate_changes_mid_session(pty_pair):
    far, path = pty_pair
    async with SerialTransport(path, LineSettings(300, 7, "E", 1)) as transport:
        await transport.set_line(LineSettings(9600, 8, "N", 1))
        assert transport.line == LineSettings(9600, 8, "N", 1)
        assert transport._serial.baudrate == 9600
        await transport.write(b"x")
        await asyncio.sleep(0.05)
        assert read_far(far) == b"x"


async def test_a_missing_serial_device_is_a_transport_error_with_the_reason():
    with pytest.raises(TransportError, match="cannot open serial port /dev/nonexistent-tty: No such file"):
        async with SerialTransport("/dev/nonexistent-tty", LineSettings(2400)):
            pass


async def test_using_a_closed_transport_is_a_transport_error(pty_pair):
    _, path = pty_pair
    transport = SerialTransport(path, LineSettings(2400))
    async with transport:
        pass
    with pytest.raises(TransportError, match="not open"):
        await transport.write(b"x")


async def test_tcp_transport_talks_to_a_serial_server():
    received = asyncio.Queue()

    async def device(reader, writer):
        received.put_nowait(await reader.read(100))
        writer.write(b"\xE5")
        await writer.drain()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with TcpTransport("127.0.0.1", port, LineSettings(2400)) as transport:
            await transport.write(b"\x10\x40\x05\x45\x16")
            assert await asyncio.wait_for(received.get(), 1) == b"\x10\x40\x05\x45\x16"
            assert await transport.read(timeout_s=1) == b"\xE5"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_refused_tcp_connection_is_a_transport_error():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(TransportError, match="Connection refused"):
        async with TcpTransport("127.0.0.1", port, LineSettings(2400)):
            pass


async def test_a_tcp_server_that_hangs_up_makes_reads_fail():
    async def device(reader, writer):
        writer.close()

    server = await asyncio.start_server(device, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with TcpTransport("127.0.0.1", port, LineSettings(2400)) as transport:
            with pytest.raises(TransportError, match="was closed"):
                await transport.read(timeout_s=1)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_shared_tcp_port_dropped_by_its_server_is_reopened_while_another_bus_holds_it():
    connections: list[asyncio.StreamWriter] = []
    received = asyncio.Queue()

    async def device(reader, writer):
        connections.append(writer)
        while data := await reader.read(100):
            received.put_nowait((len(connections), data))

    async with tcp_serial_server(device) as port:
        tcp = f"127.0.0.1:{port}"
        async with open_transport(LineSettings(2400), tcp=tcp) as idle_bus:  # holds the port
            async with asyncio.timeout(5):
                while not connections:
                    await asyncio.sleep(0.01)
            connections[0].close()  # the serial server drops the connection
            with pytest.raises(TransportError, match="was closed"):
                await idle_bus.read(timeout_s=1)
            # The other bus restarts: it gets the same transport, connected anew.
            async with open_transport(LineSettings(2400), tcp=tcp) as restarted:
                assert restarted is idle_bus
                await restarted.write(b"\x10\x40\x01\x41\x16")
                assert await asyncio.wait_for(received.get(), 1) == (2, b"\x10\x40\x01\x41\x16")
            await idle_bus.write(b"\xE5")  # and the bus that held on uses the new connection too
            assert await asyncio.wait_for(received.get(), 1) == (2, b"\xE5")
        assert len(connections) == 2


async def test_a_babbling_tcp_serial_server_keeps_only_the_newest_bytes_and_the_rest_count_as_discarded():
    noise, tail = b"\xAA" * (4 * MAX_INBOX_BYTES), b"the reply"
    async with tcp_serial_server(sending(noise + tail)) as port:
        async with TcpTransport("127.0.0.1", port, LineSettings(2400)) as transport:
            await all_arrived(transport, len(noise + tail))
            inbox = transport._inbox
            assert len(inbox.buffer) == MAX_INBOX_BYTES and inbox.buffer.endswith(tail)
            assert transport.reset_input() == len(noise + tail)
            assert transport.bytes_discarded == len(noise + tail)


async def test_bytes_dropped_before_a_read_count_as_discarded_not_received():
    total = MAX_INBOX_BYTES + 100
    async with tcp_serial_server(sending(bytes(total))) as port:
        async with TcpTransport("127.0.0.1", port, LineSettings(2400)) as transport:
            await all_arrived(transport, total)
            assert len(await transport.read(2 * total, timeout_s=1)) == MAX_INBOX_BYTES
            assert transport.bytes_received == MAX_INBOX_BYTES and transport.bytes_discarded == 100


@contextlib.asynccontextmanager
async def tcp_serial_server(device):
    """The port of a TCP serial server on loopback whose connections ``device`` serves."""
    server = await asyncio.start_server(device, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def sending(data: bytes):
    """A device that sends ``data`` at once, then waits for the connection to end."""
    async def device(reader, writer):
        writer.write(data)
        await writer.drain()
        await reader.read(100)
        writer.close()
    return device


async def all_arrived(transport, count: int) -> None:
    """Wait (at most 5 s) until ``count`` bytes have reached the transport's inbox."""
    inbox = transport._inbox
    async with asyncio.timeout(5):
        while len(inbox.buffer) + inbox.overflowed < count:
            await asyncio.sleep(0.01)


def test_port_keys_identify_the_physical_port(pty_pair, tmp_path):
    _, path = pty_pair
    link = tmp_path / "ttyMBUS"
    link.symlink_to(path)
    assert port_key(port=str(link)) == port_key(port=path)
    assert port_key(tcp="GW.example:10001") == port_key(tcp="gw.example:10001")
    with pytest.raises(ValueError):
        port_key()


async def test_two_buses_on_one_port_share_one_transport_until_the_last_leaves(pty_pair):
    _, path = pty_pair
    async with open_transport(LineSettings(2400), port=path) as first:
        async with open_transport(LineSettings(9600, 8, "N", 1), port=path) as second:
            assert first is second
        assert first.is_open
    assert not first.is_open


async def test_claims_on_one_port_never_interleave(pty_pair):
    far, path = pty_pair
    mbus, hdlc = LineSettings(2400), LineSettings(9600, 8, "N", 1)
    order = []

    async def transaction(name, line):
        async with open_transport(line, port=path) as transport:
            async with transport.claim(line):
                order.append((name, "start", transport.line))
                await transport.write(name.encode())
                await asyncio.sleep(0.02)
                order.append((name, "end", transport.line))

    async with open_transport(mbus, port=path):
        await asyncio.gather(transaction("a", mbus), transaction("b", hdlc), transaction("c", mbus))
    assert [step for _, step, _ in order] == ["start", "end"] * 3
    assert [name for name, _, _ in order[::2]] == [name for name, _, _ in order[1::2]]
    assert {(name, line) for name, _, line in order} == {("a", mbus), ("b", hdlc), ("c", mbus)}
    assert read_far(far) == b"abc"
