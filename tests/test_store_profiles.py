"""The store's queries for the DLMS server's profiles: series with their smallest exponent,
captures counted, found by number and read by seq in a time window, events the same way,
state by prefix. Rows are read from SQLite page by page, never a whole table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import StoreSection
from gateway.model import Reading
from gateway.store import Store, time_key
from tests.store_helpers import START, event

METER = "KAM-12345678-01-04"


def capture(n: int, *, device: str = METER, at: datetime | None = None) -> list[Reading]:
    """Two readings captured together (one telegram)."""
    when = at or START + timedelta(minutes=n)
    return [Reading(device, "energy", Decimal(n).scaleb(-2), "Wh", when),
            Reading(device, "serial", "abc", None, when)]


async def test_series_come_with_the_smallest_exponent_of_their_numbers(tmp_path) -> None:
    values = [Decimal("1.23"), Decimal("1.2E+3"), Decimal("-0.0010"), Decimal("1E-7"), Decimal("NaN"),
              Decimal("-Infinity"), Decimal("5")]
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        await store.append([Reading(METER, "energy", v, "Wh", START) for v in values])
        await store.append([Reading(METER, "big", Decimal("7E+5"), "Wh", START),
                            Reading(METER, "text", "hello", None, START),
                            Reading(METER, "nan only", Decimal("NaN"), None, START)])
        series = {s.quantity: s for s in await store.device_series(METER)}
        assert (series["energy"].exponent, series["big"].exponent) == (-7, 5)
        assert series["text"].exponent is None and series["nan only"].exponent is None
        assert series["energy"].unit == "Wh" and await store.device_series("nobody") == []


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: abs(d.adjusted()) < 300))
@settings(max_examples=60, deadline=None)
def test_the_exponent_computed_in_sql_is_the_decimals_own(tmp_path_factory, value) -> None:
    import asyncio

    async def check() -> None:
        path = tmp_path_factory.mktemp("exp") / "s.sqlite"
        async with Store(path, StoreSection()) as store:
            await store.append([Reading(METER, "q", value, None, START)])
            assert (await store.device_series(METER))[0].exponent == value.as_tuple().exponent

    asyncio.run(check())


async def test_captures_are_counted_found_by_number_and_read_by_seq_in_a_window(tmp_path) -> None:
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        for n in range(10):
            await store.append(capture(n))
            await store.append(capture(n, device="other"))  # interleaved, never counted
        upto = store.last_seq
        await store.append(capture(10))  # after the snapshot
        assert await store.capture_count(METER, upto) == 10
        window = (time_key(START + timedelta(minutes=3)), time_key(START + timedelta(minutes=6)))
        assert await store.capture_count(METER, upto, *window) == 4
        first = await store.capture_start(METER, upto, *window, 2)  # the 2nd capture in the window: minute 4
        rows = await store.capture_rows(METER, first - 1, upto, *window, 100)
        assert [(r[1], r[3]) for r in rows] == [(f"2024-05-01T12:0{n}:00Z", v) for n in (4, 5, 6) for v in
                                                (str(Decimal(n).scaleb(-2)), "abc")]
        assert await store.capture_start(METER, upto, *window, 5) is None
        page = await store.capture_rows(METER, 0, upto, None, None, 3)
        assert [r[0] for r in page] == [1, 2, 5]


async def test_time_windows_compare_times_with_and_without_fractions(tmp_path) -> None:
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        base = datetime(2024, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
        for at in (base, base.replace(microsecond=500_000), base + timedelta(seconds=1)):
            await store.append(capture(0, at=at))
        exactly = time_key(base)
        assert await store.capture_count(METER, store.last_seq, exactly, exactly) == 1
        half = time_key(base.replace(microsecond=500_000))
        assert await store.capture_count(METER, store.last_seq, exactly, half) == 2
        local = base.astimezone(timezone(timedelta(hours=2)))
        assert time_key(local) == "2024-01-01T00:00:01.000000"


async def test_events_are_counted_found_and_read_with_their_device(tmp_path) -> None:
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        await store.append(capture(0))
        await store.append([event(at=START + timedelta(minutes=n)) for n in range(5)] + [event(device=None)])
        assert await store.event_count(store.last_seq) == 6
        assert await store.event_count(store.last_seq, time_key(START + timedelta(minutes=1)),
                                       time_key(START + timedelta(minutes=2))) == 2
        third = await store.event_start(store.last_seq, None, None, 3)
        rows = await store.event_rows(third - 1, store.last_seq, None, None, 2)
        assert [(r[0], r[2], r[3]) for r in rows] == [(5, METER, "comm.timeout"), (6, METER, "comm.timeout")]
        assert await store.has_events_after(7) and not await store.has_events_after(8)


async def test_state_by_prefix_is_exact_and_devices_come_in_their_order(tmp_path) -> None:
    async with Store(tmp_path / "s.sqlite", StoreSection()) as store:
        for key in ("dlms.ld.b", "dlms.ld.a", "DLMS.ld.x", "dlms_ld_y", "dlms.ldz"):
            await store.set_state(key, key)
        assert await store.state_items("dlms.ld.") == {"dlms.ld.a": "dlms.ld.a", "dlms.ld.b": "dlms.ld.b"}
        await store.append(capture(0, device="zeta") + capture(0, device="alpha"))
        assert await store.device_names() == ["zeta", "alpha"]
