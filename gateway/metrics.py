"""An optional Prometheus text endpoint, for operators who run Prometheus.

``[metrics] listen = "127.0.0.1:9108"`` serves ``GET /metrics`` (off by default; a
non-loopback address only with ``allow_remote = true``). The figures are those of
:meth:`gateway.app.Gateway.status`, the document the ``status`` topic and ``gateway status``
show; the daemon refreshes it every few seconds on its event loop and the endpoint renders
the latest one on prometheus-client's own HTTP thread, so a scrape never waits on (or
blocks) the event loop or the store.

prometheus-client is the Prometheus project's own library: maintained by it, pure Python,
no dependencies, and it gets the exposition format (escaping, types, HELP lines) right.
It is imported only when the endpoint is configured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from gateway.config import MetricsSection

log = logging.getLogger(__name__)

#: The meter states as numbers for the per-meter gauge.
STATE_VALUES = {"ok": 0, "failing": 1, "unreachable": 2}
#: Uplink counters exported as Prometheus counters.
UPLINK_COUNTERS = ("connects", "connect_failures", "messages_published", "records_published", "messages_acked",
                   "records_acked", "commands", "command_errors")


def families(status: dict[str, Any]) -> Iterator[Any]:
    """The metric families of one status document."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    store = status.get("store") or {}
    for name, help_text in (("records", "records in the store"), ("bytes", "size of the store file"),
                            ("last_seq", "highest sequence number committed")):
        gauge = GaugeMetricFamily(f"gateway_store_{name}", help_text)
        gauge.add_metric([], float(store.get(name) or 0))
        yield gauge
    dropped = CounterMetricFamily("gateway_store_dropped_records", "records dropped by retention or a full disk")
    dropped.add_metric([], float(store.get("dropped_total") or 0))
    yield dropped
    backlog = GaugeMetricFamily("gateway_store_backlog_records", "records not yet acknowledged", labels=["uplink"])
    for uplink, count in (store.get("backlog") or {}).items():
        backlog.add_metric([uplink], float(count))
    yield backlog
    yield from _bus_families(status.get("buses") or {})
    yield from _uplink_families(status.get("uplinks") or {})
    uptime = GaugeMetricFamily("gateway_uptime_seconds", "seconds since the daemon started")
    uptime.add_metric([], float(status.get("uptime_s") or 0))
    yield uptime


def _bus_families(buses: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    counters = CounterMetricFamily("gateway_bus_events", "per-bus counters (reads, failures, frames, errors, "
                                   "retries, collisions, timeouts ...)", labels=["bus", "counter"])
    connected = GaugeMetricFamily("gateway_bus_connected", "1 while the bus (port, dongle) is open", labels=["bus"])
    state = GaugeMetricFamily("gateway_meter_state", "0 ok, 1 failing, 2 unreachable", labels=["bus", "meter"])
    failures = CounterMetricFamily("gateway_meter_failures", "failed reads of a meter", labels=["bus", "meter"])
    for bus, info in buses.items():
        for counter, value in (info.get("counters") or {}).items():
            if isinstance(value, int):
                counters.add_metric([bus, counter], float(value))
        connected.add_metric([bus], float(bool(info.get("connected"))))
        for meter, health in (info.get("meters") or {}).items():
            state.add_metric([bus, meter], float(STATE_VALUES.get(health.get("state"), 0)))
            failures.add_metric([bus, meter], float(health.get("failures") or 0))
    yield from (counters, connected, state, failures)


def _uplink_families(uplinks: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    connected = GaugeMetricFamily("gateway_uplink_connected", "1 while connected to the broker", labels=["uplink"])
    counters = CounterMetricFamily("gateway_uplink_events", "uplink counters", labels=["uplink", "counter"])
    for uplink, info in uplinks.items():
        connected.add_metric([uplink], float(bool(info.get("connected"))))
        for counter in UPLINK_COUNTERS:
            counters.add_metric([uplink, counter], float(info.get(counter) or 0))
    yield from (connected, counters)


class MetricsServer:
    """The endpoint of one ``[metrics]`` section; ``snapshot()`` gives the latest status."""

    def __init__(self, section: MetricsSection, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.section = section
        self.snapshot = snapshot
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def collect(self) -> Iterator[Any]:
        yield from families(self.snapshot())

    def start(self) -> None:
        from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, process_cpu_seconds_total ...
        self._server, self._thread = start_http_server(self.section.port, self.section.host, registry=registry)
        log.info("metrics: serving http://%s/metrics", self.section.listen)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
