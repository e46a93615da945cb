"""The DLMS/COSEM server: listens for the HES, serves the logical devices, pushes.

:class:`DlmsServer` is an uplink like the MQTT one: built from its configuration section,
``await run()`` under the gateway's supervisor (cancel to stop), ``status()`` for the status
document. The integrator builds it in :mod:`gateway.app`; a demo builds it with the Green
Book keys directly::

    DlmsServer(DlmsUplink(port=4059), gateway_id="demo-gw", store=store, keys=DEMO_KEYS)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from gateway.codecs.dlms.association import Authentication, SecuritySettings
from gateway.codecs.dlms.axdr import Data, array
from gateway.codecs.dlms.security import SecurityKeys
from gateway.codecs.dlms.server import SERVER_CONFORMANCE, ServerSettings
from gateway.codecs.dlms.xdlms import conformance
from gateway.config import TEST_KEYS, DlmsUplink, read_key, server_system_title
from gateway.dlms_counters import LEGACY_IN_PREFIX, InvocationCounterStore
from gateway.errors import ConfigError
from gateway.model import utc_now
from gateway.store import Store
from gateway.uplinks.dlms_server import mapping
from gateway.uplinks.dlms_server.events import SecurityEvents
from gateway.uplinks.dlms_server.objects import LogicalDevice, Role, Services, management_device, meter_device
from gateway.uplinks.dlms_server.profiles import EventLog, MeterProfile
from gateway.uplinks.dlms_server.push import Pusher
from gateway.uplinks.dlms_server.registry import MANAGEMENT_SAP, Registry
from gateway.uplinks.dlms_server.relay import pass_through
from gateway.uplinks.dlms_server.session import Session

log = logging.getLogger(__name__)

#: The Green Book's published keys (encryption 000102...0F, authentication D0D1...DF), for
#: demonstrations and simulators only: check-config refuses them outside a demo gateway.
DEMO_KEYS = SecurityKeys(*TEST_KEYS)
#: Bound of the shutdown: connections closing, the last counter flush.
SHUTDOWN_S = 5.0
#: The clients' incoming invocation counters are saved at least this often.
COUNTERS_SAVE_S = 5.0
#: The longest SET value or ACTION parameters an association may send in blocks.
MAX_INCOMING = 64 * 1024
#: The public client reads: no SET or ACTION, so no blocks of them either.
PUBLIC_CONFORMANCE = conformance("attribute0-supported-with-get", "block-transfer-with-get-or-read",
                                 "multiple-references", "get", "selective-access")
#: A connection that fails unexpectedly is logged (WARNING, one line) at most this often;
#: the others are counted (``connections_failed``) and summed up in the next line. Any
#: client can open connections: it must not be able to fill the log.
FAILURE_LOG_INTERVAL_S = 60.0


@dataclass
class ServerStats:
    """What the server did since it started (for the status document)."""

    connections: int = 0
    connections_refused: int = 0
    idle_closed: int = 0
    associations: int = 0
    associations_refused: int = 0
    requests: int = 0
    security_refused: int = 0
    malformed: int = 0
    refused: int = 0
    ignored: int = 0
    connections_failed: int = 0


class DlmsServer:
    """The DLMS/COSEM server for the HES (see the package docstring). ``keys`` overrides the
    key files of the configuration (a demo passes the Green Book keys)."""

    def __init__(self, config: DlmsUplink, *, gateway_id: str, store: Store,
                 clock: Callable[[], datetime] = utc_now, keys: SecurityKeys | None = None,
                 relay: Any = None) -> None:
        self.config = config
        #: The operations relay: SET and ACTION on a meter's logical device reach the meter.
        self.relay = relay
        self.name = config.name
        self.gateway_id = gateway_id
        self.store = store
        self.clock = clock
        self.keys = keys
        #: Whether the server has a store cursor (only when it pushes).
        self.has_cursor = config.push is not None
        self.system_title = server_system_title(config, gateway_id)
        self.management_name = mapping.logical_device_name(gateway_id)
        self.counters = InvocationCounterStore(store).for_server(self.name)
        self.registry = Registry(store, self.management_name)
        self.stats = ServerStats()
        self.events = SecurityEvents(store, f"dlms:{self.name}", clock)
        self.pusher: Pusher | None = None
        self.port = config.port
        self.listening = asyncio.Event()
        self._settings: dict[Role, ServerSettings] = {}
        self._management: LogicalDevice | None = None
        self._services: Services | None = None
        self._devices: dict[int, LogicalDevice] = {}
        self._sessions: dict[asyncio.Task[Any], Session] = {}
        self._failure_logged_at: float | None = None
        self._failures_unlogged = 0

    # --- what sessions use ------------------------------------------------------------------

    def role_of(self, client_sap: int) -> Role | None:
        """The client a client SAP stands for, if it may associate here."""
        if client_sap == Role.PUBLIC.value and self.config.public_client:
            return Role.PUBLIC
        if client_sap == Role.MANAGEMENT.value and Role.MANAGEMENT in self._settings:
            return Role.MANAGEMENT
        return None

    def settings_of(self, role: Role) -> ServerSettings:
        return self._settings[role]

    def logical_device(self, sap: int) -> LogicalDevice | None:
        if sap == MANAGEMENT_SAP:
            return self._management
        meter = self.registry.meter(sap)
        if meter is None:
            return None
        device = self._devices.get(sap)
        if device is None or device.version != meter.version:
            device = self._devices[sap] = meter_device(meter, self._services, self.store)
        return device

    async def security_event(self, reason: str, message: str, peer: str) -> None:
        await self.events.refused(reason, message, peer)

    async def pass_through(self, context: Any, descriptor: Any, data: Data | None) -> Any:
        """The meter's own answer to an HES's SET or ACTION on its logical device, or None
        (see :mod:`~gateway.uplinks.dlms_server.relay`)."""
        return await pass_through(self.relay, self.name, context, descriptor, data)

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Load, listen and serve until cancelled; then close every connection (bounded)."""
        if self.keys is None and self.config.ek_file and self.config.ak_file:
            self.keys = SecurityKeys(*await asyncio.to_thread(lambda: (read_key(self.config.ek_file),
                                                                       read_key(self.config.ak_file))))
        self._configure()
        await self._load_counters()
        await self.registry.load()
        if self.pusher is not None:
            await self.pusher.load()
        server = await asyncio.start_server(self._connection, self.config.host, self.config.port,
                                            limit=2 * self.config.max_pdu_size)
        self.port = server.sockets[0].getsockname()[1]
        log.info("DLMS server %s: listening on %s:%d (%d logical devices)", self.name, self.config.host, self.port,
                 1 + len(self.registry))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.registry.run())
                group.create_task(self._save_counters())
                if self.pusher is not None:
                    group.create_task(self.pusher.run())
                self.listening.set()
                await server.serve_forever()
        finally:
            self.listening.clear()
            server.close()
            await self._close_sessions()

    async def _load_counters(self) -> None:
        """The clients' last incoming counters (also those kept under the former key)."""
        await self.counters.load()
        for key, value in (await self.store.state_items(LEGACY_IN_PREFIX)).items():
            self.counters.accept_incoming(bytes.fromhex(key.removeprefix(LEGACY_IN_PREFIX)), int(value))

    async def _save_counters(self) -> None:
        """Save the clients' incoming counters every :data:`COUNTERS_SAVE_S` (and before
        every SET or ACTION, see the session): a replay after a crash inside that window
        could only repeat a GET, whose answer is ciphered for the real client; and a whole
        replayed association fails HLS, whose challenge is new each time."""
        while True:
            await asyncio.sleep(COUNTERS_SAVE_S)
            await self.counters.save()

    def _configure(self) -> None:
        size = self.config.max_pdu_size
        self._settings = {Role.PUBLIC: ServerSettings(conformance=PUBLIC_CONFORMANCE, max_receive_pdu_size=size,
                                                      max_incoming_bytes=MAX_INCOMING)}
        if self.keys is not None:
            self._settings[Role.MANAGEMENT] = ServerSettings(
                Authentication.HIGH_GMAC, security=SecuritySettings(self.system_title, self.keys), ciphered=True,
                max_receive_pdu_size=size, max_incoming_bytes=MAX_INCOMING)
        push = self.config.push
        if push is not None and push.security != "none" and self.keys is None:
            raise ConfigError([f"uplinks.dlms {self.name}: ciphered pushes need the management keys "
                               "(ek_file, ak_file)"])
        if push is not None:
            self.pusher = Pusher(push, self)
        self._services = Services(
            system_title=self.system_title, management_name=self.management_name, clock=self.clock,
            conformance={Role.PUBLIC: PUBLIC_CONFORMANCE, Role.MANAGEMENT: SERVER_CONFORMANCE}, max_pdu_size=size,
            meters=self.registry.meters, push=self.pusher, event_log=EventLog(self.store),
            buffer_of=lambda meter: MeterProfile(meter, self.store))
        self._management = management_device(self._services, self.store, self._pending)
        self._devices.clear()

    async def _pending(self) -> Data:
        return await self.pusher.pending() if self.pusher is not None else array()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._sessions) >= self.config.max_connections:
            self.stats.connections_refused += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        session = self._sessions[task] = Session(self, reader, writer)
        self.stats.connections += 1
        try:
            await session.serve()
        except Exception as exc:  # noqa: BLE001 - one broken connection must not take the server down
            self._connection_failed(exc)
        finally:
            del self._sessions[task]

    def _connection_failed(self, exc: Exception) -> None:
        """Count it; log it in one line, rate-limited (the traceback at DEBUG)."""
        self.stats.connections_failed += 1
        now = asyncio.get_running_loop().time()
        log.debug("DLMS server %s: a connection failed", self.name, exc_info=exc)
        if self._failure_logged_at is not None and now - self._failure_logged_at < FAILURE_LOG_INTERVAL_S:
            self._failures_unlogged += 1
            return
        more = f" ({self._failures_unlogged} more since the last report)" if self._failures_unlogged else ""
        self._failure_logged_at, self._failures_unlogged = now, 0
        log.warning("DLMS server %s: a connection failed: %s: %s%s", self.name, type(exc).__name__, exc, more)

    async def _close_sessions(self) -> None:
        """Close every connection (each session then ends on its own; asyncio does not like
        its connection tasks cancelled), the stragglers are cancelled after SHUTDOWN_S."""
        tasks = list(self._sessions)
        for session in self._sessions.values():
            session.stop()
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_S)
            for task in late:
                task.cancel()
        try:
            async with asyncio.timeout(SHUTDOWN_S):
                await self.counters.save()
        except Exception as exc:  # noqa: BLE001 - shutting down: say it, go on
            log.warning("DLMS server %s: the last invocation counters were not saved: %s", self.name, exc)

    def status(self) -> dict[str, Any]:
        """Connections, associations, refusals, logical devices and the push (JSON-ready)."""
        return {
            "listening": f"{self.config.host}:{self.port}" if self.listening.is_set() else None,
            "open_connections": len(self._sessions),
            "logical_devices": 1 + len(self.registry),
            **asdict(self.stats),
            "security_events": self.events.stored,
            "security_events_suppressed": self.events.suppressed_total,
            "push": self.pusher.status_dict() if self.pusher is not None else None,
        }

