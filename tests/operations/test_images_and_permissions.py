"""Firmware images held by hash and uploaded in bounded chunks that resume; who may run
which operation on which meters."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

import pytest

from gateway.config import OperationPermission
from gateway.operations.images import MAX_FILES, ImageError, ImageStore
from gateway.operations.model import Request
from gateway.operations.named import build
from gateway.operations.permissions import may_cancel, permits

IMAGE = bytes(range(256)) * 10
DIGEST = hashlib.sha256(IMAGE).hexdigest()


def chunk(offset: int, size: int = 1000) -> str:
    return base64.b64encode(IMAGE[offset:offset + size]).decode()


def test_an_upload_in_chunks_is_kept_once_its_hash_matches_and_resumes_where_it_stopped(tmp_path):
    images = ImageStore(tmp_path / "images", 1 << 20)
    assert images.receive(DIGEST, len(IMAGE), 0, chunk(0)).received == 1000
    with pytest.raises(ImageError, match="send the chunk at offset 1000"):
        images.receive(DIGEST, len(IMAGE), 2000, chunk(2000))  # a lost chunk: told where to go on
    assert not images.receive(DIGEST, len(IMAGE), 1000, chunk(1000)).complete
    done = images.receive(DIGEST, len(IMAGE), 2000, chunk(2000))
    assert done.complete and images.read(DIGEST) == IMAGE
    assert images.receive(DIGEST, len(IMAGE), 0, chunk(0)).complete  # again: already held
    assert (tmp_path / "images").stat().st_mode & 0o777 == 0o700
    assert images.path(DIGEST).stat().st_mode & 0o777 == 0o600


def test_an_upload_that_does_not_match_its_hash_is_discarded(tmp_path):
    images = ImageStore(tmp_path / "images", 1 << 20)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ImageError, match="discarded"):
        images.receive(wrong, 10, 0, base64.b64encode(IMAGE[:10]).decode())
    assert list((tmp_path / "images").iterdir()) == []


@pytest.mark.parametrize("sha, size, offset, data, reason", [
    ("xyz", 10, 0, "", "64 hex digits"),
    (DIGEST, 0, 0, "", "size must be"),
    (DIGEST, 2 << 20, 0, "", "size must be"),
    (DIGEST, 10, 0, "!!", "not base64"),
    (DIGEST, 5, 0, base64.b64encode(b"123456").decode(), "beyond the announced size"),
])
def test_uploads_are_bounded_and_checked(tmp_path, sha, size, offset, data, reason):
    with pytest.raises(ImageError, match=reason):
        ImageStore(tmp_path / "images", 1 << 20).receive(sha, size, offset, data)


def test_the_image_store_holds_a_bounded_number_of_files_and_notices_damage(tmp_path):
    images = ImageStore(tmp_path / "images", 1 << 20)
    for n in range(MAX_FILES):
        source = tmp_path / f"fw{n}"
        source.write_bytes(bytes([n]) * 10)
        images.add_file(source)
    (tmp_path / "one-more").write_bytes(b"more")
    with pytest.raises(ImageError, match="at most"):
        images.add_file(tmp_path / "one-more")
    digest = hashlib.sha256(bytes([0]) * 10).hexdigest()
    images.path(digest).write_bytes(b"tampered")
    with pytest.raises(ImageError, match="damaged"):
        images.read(digest)
    with pytest.raises(ImageError, match="no image"):
        images.read("0" * 64)


def request(name: str, meter: str = "hall-1", identity: str = "hes-a", args: dict | None = None) -> Request:
    steps, params = build(name, args or {})
    return Request(meter, name, steps, datetime(2026, 1, 1, tzinfo=timezone.utc), identity, "test", params)


PERMISSIONS = [
    OperationPermission(identity="hes-a", operations=["disconnect", "get"], meters=["hall-*"]),
    OperationPermission(identity="hes-a", operations=["*"], meters=["dlms-LAB*"]),
    OperationPermission(identity="hes-b", operations=["action", "cancel"]),
]


@pytest.mark.parametrize("identity, name, meter, device, allowed", [
    ("hes-a", "disconnect", "hall-1", None, True),
    ("hes-a", "reconnect", "hall-1", None, False),
    ("hes-a", "disconnect-state", "hall-1", None, True),       # get covers a read-only operation
    ("hes-a", "disconnect", "yard-1", None, False),            # not this meter
    ("hes-a", "reconnect", "yard-1", "dlms-LAB0001", True),    # by device id
    ("hes-b", "reconnect", "yard-1", None, True),              # action covers a reconnect
    ("hes-b", "disconnect-state", "yard-1", None, False),      # ... not its reads
    ("hes-b", "firmware", "yard-1", None, False),              # an image transfer needs firmware
    ("hes-c", "get", "hall-1", None, False),
    ("local", "firmware", "anything", None, True),              # the operator on the box
])
def test_permissions_by_identity_operation_and_meter(identity, name, meter, device, allowed):
    args = {"class": 1, "obis": "0.0.96.13.0.255", "attribute": 2} if name == "get" else \
        {"image": "0" * 64, "identifier": "x"} if name == "firmware" else {}
    assert permits(PERMISSIONS, identity, request(name, meter, identity, args), device) is allowed


def test_an_identity_cancels_its_own_operations_and_others_only_with_cancel():
    mine = request("disconnect", identity="hes-a")
    assert may_cancel(PERMISSIONS, "hes-a", mine, None)
    assert may_cancel(PERMISSIONS, "hes-b", mine, None)
    assert not may_cancel([], "hes-c", mine, None)
    assert may_cancel([], "local", mine, None)


def test_a_permission_naming_an_unknown_operation_is_a_configuration_error():
    from gateway.config import parse_config
    from gateway.errors import ConfigError

    problem = r"<config>:5: operations.permissions\[0\].operations: unknown operation .dissconnect."
    with pytest.raises(ConfigError, match=problem):
        parse_config('[gateway]\nid = "g"\n[[operations.permissions]]\nidentity = "hes-a"\n'
                     'operations = ["dissconnect"]\n')
