"""The command router: every request gets exactly one response, whatever it holds."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import DeviceTimeout
from gateway.uplinks.commands import CommandError, CommandRouter, int_argument, parse_request


async def echo(args):
    return {"args": args, "at": datetime(2024, 5, 1, tzinfo=timezone.utc), "value": Decimal("1.50"), "raw": b"\x01"}


async def refuse(args):
    raise CommandError("not today")


async def dead_meter(args):
    raise DeviceTimeout("meter m1 did not answer")


async def broken(args):
    return {}["missing"]


async def forever(args):
    await asyncio.Event().wait()


ROUTER = CommandRouter({"echo": echo, "refuse": refuse, "dead": dead_meter, "broken": broken, "forever": forever},
                       timeout_s=0.05)


async def answer(command: str, payload: bytes) -> tuple[bool, dict]:
    ok, response = await ROUTER.answer(command, payload)
    return ok, json.loads(response)


async def test_a_result_is_json_with_exact_values() -> None:
    assert await answer("echo", b'{"a": 1}') == (True, {"ok": True, "result": {
        "args": {"a": 1}, "at": "2024-05-01T00:00:00+00:00", "value": "1.50", "raw": "01"}})


async def test_an_empty_payload_is_an_empty_request() -> None:
    assert (await answer("echo", b" "))[1]["result"]["args"] == {}


async def test_refusals_and_gateway_errors_are_answered_with_their_message() -> None:
    assert await answer("refuse", b"") == (False, {"ok": False, "error": "not today"})
    assert await answer("dead", b"") == (False, {"ok": False, "error": "meter m1 did not answer"})


async def test_a_defect_is_logged_and_answered_as_an_internal_error(caplog) -> None:
    caplog.set_level(logging.ERROR)
    assert await answer("broken", b"") == (False, {"ok": False, "error": "internal error in broken: KeyError"})
    assert caplog.records[0].exc_info is not None


async def test_a_command_that_runs_too_long_is_answered_with_a_timeout() -> None:
    assert await answer("forever", b"") == (False, {"ok": False, "error": "forever did not finish within 0.05 s"})


async def test_unknown_commands_list_the_known_ones() -> None:
    assert await answer("reboot", b"{}") == (False, {
        "ok": False, "error": "unknown command 'reboot' (known: broken, dead, echo, forever, refuse)"})


@given(st.binary(max_size=64))
def test_any_payload_is_a_request_or_a_command_error(payload: bytes) -> None:
    try:
        assert isinstance(parse_request(payload), dict)
    except CommandError as exc:
        assert str(exc).startswith(("malformed JSON request", "the request must be a JSON object"))


def test_integer_arguments_are_checked() -> None:
    assert int_argument({"n": 5}, "n", minimum=1) == 5
    assert int_argument({}, "n", default=7) == 7
    for args, message in (({}, "missing argument 'n'"), ({"n": True}, "must be an integer"),
                          ({"n": 1.5}, "must be an integer"), ({"n": 0}, "must be at least 1")):
        try:
            int_argument(args, "n", minimum=1)
        except CommandError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{args} was accepted")


async def test_the_identity_comes_from_the_transport_never_from_the_request():
    ok, body = await ROUTER.answer("echo", b'{"identity": "forged", "x": 1}', identity="hes-a")
    assert ok and json.loads(body)["result"]["args"] == {"x": 1, "identity": "hes-a"}
    ok, body = await ROUTER.answer("echo", b'{"identity": "forged"}')
    assert ok and json.loads(body)["result"]["args"] == {}
