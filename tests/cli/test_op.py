"""``gateway op`` without a running daemon: submit writes the store's queue (the daemon
carries it out when it starts), list and show read it, cancel ends a queued operation with
its event; bad input is exit 2. (With a daemon: tests/operations/test_daemon.py.)"""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.cli import main
from gateway.config import StoreSection
from gateway.store import Store
from tests.cli.local_state import make_store
from tests.operations.helpers import events_of


@pytest.fixture
def state(tmp_path):
    make_store(tmp_path / "state", [])
    return tmp_path / "state"


def config(tmp_path, state) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[gateway]\nid = "gw-test"\nstate_dir = "{state}"\n'
                    '[[buses]]\nname = "d"\nprotocol = "dlms"\ntcp = "127.0.0.1:1"\ninterface = "wrapper"\n'
                    '[[meters]]\nname = "m1"\nprotocol = "dlms"\nbus = "d"\n'
                    '[operations]\nmax_image_bytes = 100\n')
    return str(path)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_queues_list_and_show_read_and_cancel_ends_it_with_an_event(state, capsys):
    code, out, _ = run(capsys, "op", "submit", "m1", "disconnect", "--state-dir", str(state), "--json",
                       "--deadline-s", "600")
    assert code == 0
    queued = json.loads(out)
    assert (queued["id"], queued["state"], queued["identity"]) == (1, "queued", "local")
    code, out, _ = run(capsys, "op", "submit", "m1", "get", '{"class": 1, "obis": "0.0.96.13.0.255", '
                       '"attribute": 2}', "--state-dir", str(state), "--json")
    assert json.loads(out)["steps"] == [{"kind": "get", "class": 1, "obis": "0.0.96.13.0.255", "index": 2}]
    code, out, _ = run(capsys, "op", "list", "--state-dir", str(state), "--json")
    assert [(o["id"], o["operation"]) for o in json.loads(out)] == [(2, "get"), (1, "disconnect")]
    code, out, _ = run(capsys, "op", "list", "--state-dir", str(state))
    assert out.splitlines()[0].split() == ["id", "meter", "operation", "identity", "state", "outcome", "submitted",
                                           "deadline"]
    code, out, _ = run(capsys, "op", "show", "1", "--state-dir", str(state))
    assert json.loads(out)["steps"][0]["kind"] == "action"
    code, out, _ = run(capsys, "op", "cancel", "1", "--state-dir", str(state), "--json")
    assert code == 0 and json.loads(out)["outcome"] == "cancelled"
    code, _, err = run(capsys, "op", "cancel", "1", "--state-dir", str(state))
    assert code == 1 and "not queued" in err

    async def events():
        async with Store(state / "store.sqlite", StoreSection(), read_only=True) as store:
            return await events_of(store, "operation.result")

    [event] = asyncio.run(events())
    assert event.details["outcome"] == "cancelled" and event.details["id"] == 1


def test_with_a_configuration_the_meter_must_be_a_dlms_meter_and_an_image_file_is_taken_in(tmp_path, state, capsys):
    path = config(tmp_path, state)
    code, _, err = run(capsys, "op", "submit", "m9", "disconnect", "--config", path)
    assert code == 2 and "no DLMS meter is named 'm9'" in err
    image = tmp_path / "fw.bin"
    image.write_bytes(b"firmware!")
    code, out, err = run(capsys, "op", "submit", "m1", "firmware", '{"identifier": "FW-2"}', "--image-file",
                         str(image), "--config", path, "--json")
    assert code == 0, err
    digest = json.loads(out)["params"]["image"]
    assert (state / "images" / digest).read_bytes() == b"firmware!"
    image.write_bytes(b"x" * 101)
    code, _, err = run(capsys, "op", "submit", "m1", "firmware", '{"identifier": "FW-3"}', "--image-file",
                       str(image), "--config", path)
    assert code == 1 and "more than max_image_bytes (100)" in err  # (an ImageError: the file, not the usage)


@pytest.mark.parametrize("args, reason", [
    (["m1", "get", "{bad"], "not JSON"),
    (["m1", "get", "[1]"], "a JSON object"),
    (["m1", "explode"], "unknown operation"),
    (["m1", "limiter", '{"threshold_normal": -1}'], "threshold_normal must be"),
])
def test_bad_arguments_are_bad_usage(state, capsys, args, reason):
    code, _, err = run(capsys, "op", "submit", *args, "--state-dir", str(state))
    assert code == 2 and reason in err


def test_without_a_store_submit_and_list_are_bad_usage(tmp_path, capsys):
    assert run(capsys, "op", "submit", "m1", "disconnect", "--state-dir", str(tmp_path))[0] == 2
    assert run(capsys, "op", "list", "--state-dir", str(tmp_path))[0] == 2
