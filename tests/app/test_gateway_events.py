"""Gateway events from a running Gateway: uplink connected/disconnected against a real
Mosquitto stopped and started, a step of the wall clock, key rotation seen by the HES, the
Prometheus endpoint scraped over HTTP, and the event vocabulary kept in one place."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import pytest

from gateway.app import Gateway, Timing
from gateway.clock import ClockWatch
from gateway.config import StoreSection, parse_config
from gateway.events import EVENTS
from gateway.model import Event
from gateway.signing import b64url_decode
from gateway.store import Store
from gateway.systemd import Notifier
from tests.mqtt_broker import Subscriber, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class SteppingClock:
    """A wall clock and a monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 1000.0

    def wall_now(self) -> float:
        return self.wall

    def mono_now(self) -> float:
        return self.mono


async def until(condition, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


async def events_of(path: Path) -> list[Event]:
    async with Store(path, StoreSection(), read_only=True) as store:
        return [s.record for s in await store.read_after(0, 100_000) if isinstance(s.record, Event)]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        return response.read().decode()


def kid_of(message) -> str:
    envelope = json.loads(message.payload)
    return json.loads(b64url_decode(envelope["protected"], "header"))["kid"]


async def test_uplink_state_changes_clock_steps_key_rotation_and_metrics(tmp_path, mosquitto):
    metrics_port = free_port()
    text = (f'[gateway]\nid = "gw-ev"\nstate_dir = "{tmp_path / "state"}"\nclock_step_threshold_s = 5\n'
            f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
            f'[[uplinks.mqtt]]\nurl = "{mosquitto.url}"\n')
    clock = SteppingClock()
    committed: list = []
    gateway = Gateway(parse_config(text), timing=Timing(status_file_s=0.2, clock_check_s=0.05, drain_uplinks_s=5),
                      notifier=Notifier(None), config_text=text, listeners=[lambda records, _: committed.extend(records)],
                      clock_watch=ClockWatch(5, wall=clock.wall_now, monotonic=clock.mono_now))
    stop = asyncio.Event()
    running = asyncio.create_task(gateway.run(stop))
    connected = lambda: gateway.uplinks and gateway.uplinks[0].counters.connected  # noqa: E731
    try:
        async with Subscriber(mosquitto, "metering/gw-ev/events") as hes:
            await until(connected)
            first_kid = gateway.key.kid
            # the broker goes away and comes back: one event each way, however many retries
            mosquitto.stop()
            await until(lambda: not connected() and gateway.uplinks[0].counters.connect_failures >= 2)
            mosquitto.start()
            await until(connected)

            # NTP corrects the clock by two minutes; a slew of 1 s is no step
            clock.wall += 1.0
            await asyncio.sleep(0.2)
            clock.wall += 120.0
            await until(lambda: any(getattr(r, "code", None) == "clock.stepped" for r in committed))

            # a new signing key: the next message carries its kid
            rotated = await gateway.rotate_key("test")
            assert rotated["old_kid"] == first_kid and rotated["new_kid"] == gateway.key.kid
            await until(lambda: any(kid_of(m) == rotated["new_kid"] for m in hes.messages))

            body = await asyncio.to_thread(scrape, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)

    events = await events_of(tmp_path / "state" / "store.sqlite")
    uplink = [(e.code, e.details["uplink"]) for e in events if e.code.startswith("uplink.")]
    assert uplink == [("uplink.connected", "mqtt"), ("uplink.disconnected", "mqtt"), ("uplink.connected", "mqtt")]
    (step,) = [e for e in events if e.code == "clock.stepped"]
    assert step.details["step_s"] == "+120.000"
    (key_event,) = [e for e in events if e.code == "key.rotated"]
    assert key_event.details == {"old_kid": first_kid, "new_kid": rotated["new_kid"]}
    assert any(e.code == "audit.key_rotated" and e.details["actor"] == "test" for e in events)
    start = events[0]
    assert (start.code, start.details["reason"]) == ("gateway.start", "start")
    assert events[-1].code == "gateway.stop" and events[-1].details["reason"] == "requested"
    assert any(e.code == "config.changed" and e.details["old_hash"] == "" for e in events)

    assert 'gateway_uplink_connected{uplink="mqtt"} 1.0' in body
    assert re.search(r"^gateway_store_records \d+\.0$", body, re.M)
    assert 'gateway_store_backlog_records{uplink="mqtt"}' in body
    assert "process_resident_memory_bytes" in body


async def test_a_gateway_that_did_not_stop_cleanly_says_so_when_it_starts_again(tmp_path):
    text = f'[gateway]\nid = "gw-ev"\nstate_dir = "{tmp_path}"\n'
    async with Store(tmp_path / "store.sqlite", StoreSection()) as store:
        await store.set_state("gateway.running", "1")  # as a killed daemon leaves it
    gateway = Gateway(parse_config(text), notifier=Notifier(None), timing=Timing(status_file_s=3600))
    stop = asyncio.Event()
    stop.set()
    await gateway.run(stop)
    start, stop_event = [e for e in await events_of(tmp_path / "store.sqlite")]
    assert start.details["reason"] == "restart after an unclean stop (crash, watchdog or power loss)"
    assert stop_event.code == "gateway.stop"


def test_a_clock_watch_reports_steps_beyond_the_threshold_and_not_slewing():
    clock = SteppingClock()
    watch = ClockWatch(2, wall=clock.wall_now, monotonic=clock.mono_now)
    for _ in range(10):  # 1.5 s of slewing each look: never a step
        clock.mono += 10
        clock.wall += 11.5
        assert watch.check() is None
    clock.mono += 10
    clock.wall += 10 - 30  # set back by 30 s
    step = watch.check()
    assert step is not None and step.step_s == pytest.approx(-30)
    assert (step.after - step.before).total_seconds() == pytest.approx(-30)
    assert watch.check() is None


def test_the_metrics_endpoint_refuses_a_non_loopback_address_unless_allowed():
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="not a loopback address"):
        parse_config('[gateway]\nid = "g"\n[metrics]\nlisten = "0.0.0.0:9108"\n')
    assert parse_config('[gateway]\nid = "g"\n[metrics]\nlisten = "0.0.0.0:9108"\nallow_remote = true\n')


def test_every_event_code_written_in_the_code_is_in_the_vocabulary_and_documented():
    source = "\n".join(p.read_text() for p in (ROOT / "gateway").rglob("*.py"))
    written = set(re.findall(r'(?:code=|CODE = |make_event\(|_event\()\s*(?:[\w.]+,\s*)?"([a-z_]+\.[a-z_]+)"',
                             source))
    assert written, "the pattern finds the codes"
    assert written - set(EVENTS) == set()
    readme = (ROOT / "README.md").read_text()
    assert [code for code in EVENTS if f"`{code}`" not in readme] == []
