"""What the MQTT uplink needs from aiomqtt and paho-mqtt that they do not offer.

Kept in one place, because some of it reaches into the libraries' private attributes
(aiomqtt 2.x, paho-mqtt 2.x; both pinned below the next major version in pyproject):

- :func:`cancellable`: await an aiomqtt call without losing a cancellation (Python 3.11);
- :class:`ConnectionWatch`: the broker's limits from CONNACK, and why a handshake failed;
- :func:`close_socket`: no socket left behind by a failed or cancelled connection attempt;
- :func:`disconnect_with_will`: a DISCONNECT that asks the broker for the last will;
- :data:`client_log`: the libraries' own log lines, kept at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomqtt
from paho.mqtt.client import MQTT_LOG_ERR
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

T = TypeVar("T")

#: Messages handed to the broker and not yet PUBACKed. The broker's Receive Maximum
#: (from CONNACK) lowers it; what does not fit waits, already built, in paho.
MAX_IN_FLIGHT = 20


class _DemoteToDebug(logging.Filter):
    """The client library logs a lost connection as an ERROR ("failed to receive on
    socket") and more as warnings; the uplink reports each failure itself, once, with
    its context. The library's lines are kept, at DEBUG, for whoever debugs the client."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return client_log.isEnabledFor(logging.DEBUG)


#: The logger handed to aiomqtt (and through it to paho): everything at DEBUG.
client_log = logging.getLogger("gateway.uplinks.mqtt.client")
client_log.addFilter(_DemoteToDebug())


async def cancellable(awaitable: Awaitable[T]) -> T:
    """Await an aiomqtt call without losing a cancellation.

    aiomqtt awaits PUBACK, SUBACK and CONNACK through ``asyncio.wait_for``, which on
    Python 3.11 returns the result and drops a cancellation that arrives in the same loop
    iteration (CPython gh-86296, fixed in 3.12): the task would carry on as if never
    asked to stop, and might wait forever. A cancellation requested during the call is
    raised here. (Compared with the count before the call: on 3.11 a TaskGroup can leave
    its parent's count raised after a child failed.)
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await awaitable
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result


def close_socket(client: aiomqtt.Client) -> None:
    """Close the client's socket if it is still open. aiomqtt leaves it open when a
    connection attempt fails or is cancelled before CONNACK (its reader callback and
    keepalive task would live on); after a clean disconnect it is closed already."""
    with contextlib.suppress(OSError):
        client._client._sock_close()  # noqa: SLF001


def disconnect_with_will(client: aiomqtt.Client) -> None:
    """Disconnect with reason code 0x04, "Disconnect with Will Message" (MQTT 5
    §3.14.2.1): the broker publishes the last will as if the connection had died.
    aiomqtt's own disconnect, which follows, finds the connection closing."""
    with contextlib.suppress(OSError, ValueError):
        client._client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=0x04))  # noqa: SLF001


@dataclass
class BrokerLimits:
    """What the broker said in CONNACK about what it accepts (MQTT 5 §3.2.2.3), and the
    number of unacknowledged messages the client allows itself as a result."""

    receive_maximum: int = 65535
    maximum_packet_size: int = 268_435_460
    in_flight: int = MAX_IN_FLIGHT


class ConnectionWatch:
    """Hooks into one client's paho callbacks where aiomqtt gives no access.

    CONNACK carries the broker's Receive Maximum and Maximum Packet Size: aiomqtt does not
    expose them, paho ignores them, and exceeding either makes the broker drop the
    connection (MQTT 5 §3.3.4). Until CONNACK, paho's error lines are kept: a broker that
    refuses the client certificate closes the connection right after the TLS 1.3
    handshake, which aiomqtt reports only as a CONNACK timeout.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.limits = BrokerLimits()
        self.handshake_error: str | None = None
        paho = client._client  # noqa: SLF001
        self._on_connect = paho.on_connect
        paho.on_connect = self._connack
        paho.on_log = self._log

    def _connack(self, mqttc: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        mqttc.on_log = None  # connected: paho formats every line for on_log, stop that
        if properties is not None:
            limits = self.limits
            limits.receive_maximum = getattr(properties, "ReceiveMaximum", limits.receive_maximum)
            limits.maximum_packet_size = getattr(properties, "MaximumPacketSize", limits.maximum_packet_size)
            limits.in_flight = max(1, min(MAX_IN_FLIGHT, limits.receive_maximum))
            # paho's setter refuses an open connection; nothing is in flight yet (a new
            # client, a clean start, nothing published before CONNACK), so lowering the
            # limit here is safe.
            mqttc._max_inflight_messages = limits.in_flight  # noqa: SLF001
        self._on_connect(mqttc, userdata, flags, reason, properties)

    def _log(self, mqttc: Any, userdata: Any, level: int, text: str) -> None:
        if level == MQTT_LOG_ERR:
            self.handshake_error = text

    def failure(self, exc: BaseException) -> str:
        """Why the connection attempt failed, as precisely as the libraries know.
        (Reading aiomqtt's disconnect future also keeps asyncio from logging it as an
        exception never retrieved.)"""
        disconnected = self.client._disconnected  # noqa: SLF001
        if disconnected.done() and not disconnected.cancelled() and disconnected.exception() is not None:
            return f"connection closed during the handshake: {describe(disconnected.exception())}"
        if self.handshake_error is not None:
            return f"connection closed during the handshake: {self.handshake_error}"
        return describe(exc)


def describe(exc: BaseException) -> str:
    """One line for the log and the status: the first real error inside a group, with
    the cause aiomqtt attaches to its own errors."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    cause = exc.__cause__ if isinstance(exc, aiomqtt.MqttError) and exc.__cause__ else None
    text = str(exc) or type(exc).__name__
    return f"{text} ({cause})" if cause else text
