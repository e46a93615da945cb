"""The ``[uplinks.dlms]`` section: one table or a list, keys in files, and the Green Book's
published test keys refused outside a demo gateway (``gateway.demo = true``)."""

from __future__ import annotations

import pytest

from gateway.config import TEST_KEYS, DlmsUplink, derived_system_title, parse_config, read_key, server_system_title
from gateway.errors import ConfigError


def keys(tmp_path, ek: bytes, ak: bytes, *, mode: int = 0o600) -> tuple[str, str]:
    paths = []
    for name, key in (("ek", ek), ("ak", ak)):
        path = tmp_path / name
        path.write_text(key.hex() + "\n")
        path.chmod(mode)
        paths.append(str(path))
    return paths[0], paths[1]


def config(ek: str, ak: str, *, demo: bool = False, extra: str = "") -> str:
    return f"""
[gateway]
id = "gw-1"
demo = {"true" if demo else "false"}

[uplinks.dlms]
port = 4059
ek_file = "{ek}"
ak_file = "{ak}"
{extra}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "gw.toml")
    return raised.value.problems


def test_one_table_or_a_list_of_servers_parses(tmp_path) -> None:
    ek, ak = keys(tmp_path, bytes(range(1, 17)), bytes(range(2, 18)))
    one = parse_config(config(ek, ak, extra='[uplinks.dlms.push]\ndestination = "hes.example:4060"'))
    assert one.uplinks.dlms[0].push.port == 4060 and one.uplinks.dlms[0].host == "127.0.0.1"
    many = parse_config("""
[gateway]
id = "gw-1"
[[uplinks.dlms]]
name = "a"
port = 4059
[[uplinks.dlms]]
name = "b"
port = 4060
public_client = false
""")
    assert [s.name for s in many.uplinks.dlms] == ["a", "b"]
    assert read_key(ek) == bytes(range(1, 17))


def test_the_green_book_keys_are_refused_unless_the_gateway_is_a_demo(tmp_path) -> None:
    ek, ak = keys(tmp_path, *TEST_KEYS)
    assert any("published test key" in p and p.startswith("gw.toml:") for p in problems(config(ek, ak)))
    assert parse_config(config(ek, ak, demo=True)).gateway.demo


@pytest.mark.parametrize("case,expected", [
    ("readable", "readable by other users"),
    ("short", "32 hex digits"),
    ("missing", "cannot read secret file"),
])
def test_unusable_key_files_are_named(tmp_path, case, expected) -> None:
    ek, ak = keys(tmp_path, bytes(range(1, 17)), bytes(16), mode=0o644 if case == "readable" else 0o600)
    if case == "short":
        (tmp_path / "ek").write_text("0011")
    if case == "missing":
        ek = str(tmp_path / "nowhere")
    assert any(expected in p for p in problems(config(ek, ak)))


def test_settings_that_do_not_go_together_are_refused(tmp_path) -> None:
    ek, ak = keys(tmp_path, bytes(range(1, 17)), bytes(range(2, 18)))
    assert any("go together" in p for p in problems('[gateway]\nid = "g"\n[uplinks.dlms]\nek_file = "x"\n'))
    assert any("need the management keys" in p for p in problems(
        '[gateway]\nid = "g"\n[uplinks.dlms]\n[uplinks.dlms.push]\ndestination = "127.0.0.1:1"\n'))
    assert any("unencrypted" in p for p in problems(config(ek, ak, extra=(
        '[uplinks.dlms.push]\ndestination = "10.1.1.1:4060"\nsecurity = "none"'))))
    assert any("names an MQTT uplink" in p for p in problems(
        '[gateway]\nid = "g"\n[[uplinks.mqtt]]\nname = "hes"\nurl = "mqtt://127.0.0.1"\n'
        '[[uplinks.dlms]]\nname = "hes"\n'))
    assert any("used twice" in p for p in problems(
        '[gateway]\nid = "g"\n[[uplinks.dlms]]\nname = "a"\n[[uplinks.dlms]]\nname = "b"\n'))


def test_a_server_system_title_equal_to_a_meters_client_system_title_is_refused(tmp_path) -> None:
    ek, ak = keys(tmp_path, bytes(range(1, 17)), bytes(range(2, 18)))
    meter = """
[[buses]]
name = "line"
protocol = "dlms"
tcp = "127.0.0.1:4061"
interface = "wrapper"

[[meters]]
name = "m1"
protocol = "dlms"
bus = "line"
{title}
"""
    # the meter's client title derived from the gateway id, chosen as the server's
    derived = derived_system_title("gw-1").hex().upper()
    found = problems(config(ek, ak, extra=f'system_title = "{derived}"') + meter.format(title=""))
    assert any("uplinks.dlms" in p and "system_title" in p and "'m1'" in p for p in found), found
    # a meter given the server's default title explicitly
    default = server_system_title(DlmsUplink(), "gw-1").hex()
    found = problems(config(ek, ak) + meter.format(title=f'system_title = "{default}"'))
    assert any("client system title of meter 'm1'" in p for p in found), found
    # titles of their own are fine
    assert parse_config(config(ek, ak, extra='system_title = "4757590000000001"') + meter.format(title=""))
