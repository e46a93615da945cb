"""The daemon logs to the journal with structured fields when stderr is the journal stream
and systemd-python is there; to stderr otherwise."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.logging_setup import (
    PriorityPrefixFormatter,
    configure_logging,
    log_fields,
    stderr_is_journal,
)


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[io.TextIOWrapper]:
    with open(tmp_path / "stderr", "w+") as handle:
        yield handle


def journal_stream_of(handle) -> dict[str, str]:
    stat = os.fstat(handle.fileno())
    return {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}


def test_stderr_connected_to_the_journal_is_recognised_by_device_and_inode(stream, tmp_path):
    assert stderr_is_journal(journal_stream_of(stream), stream)
    with open(tmp_path / "other", "w") as other:
        assert not stderr_is_journal(journal_stream_of(other), stream)
    assert not stderr_is_journal({}, stream)
    assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, stream)
    assert not stderr_is_journal(journal_stream_of(stream), io.StringIO())


def test_under_the_journal_records_go_natively_with_bus_meter_and_event_code_fields(stream):
    from systemd.journal import JournalHandler

    handler = configure_logging(0, environ=journal_stream_of(stream), stream=stream)
    assert isinstance(handler, JournalHandler)
    sent: list[tuple[str, dict]] = []
    handler.send = lambda MESSAGE, **fields: sent.append((MESSAGE, fields))

    log = logging.getLogger("gateway.collectors.mbus")
    log.warning("meter %s does not answer", "heat-1",
                extra=log_fields(bus="mbus-basement", meter="heat-1", event_code="comm.failed"))
    log.debug("one reading")  # the daemon logs at INFO by default

    assert len(sent) == 1
    message, fields = sent[0]
    assert message == "meter heat-1 does not answer"
    assert fields["BUS"] == "mbus-basement"
    assert fields["METER"] == "heat-1"
    assert fields["EVENT_CODE"] == "comm.failed"
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "gateway"
    assert stream.tell() == 0  # nothing went to stderr


def test_under_the_journal_without_systemd_python_lines_carry_their_priority(stream, monkeypatch):
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # import fails
    handler = configure_logging(0, environ=journal_stream_of(stream), stream=stream)
    assert isinstance(handler.formatter, PriorityPrefixFormatter)
    log = logging.getLogger("gateway.app")
    log.error("store is full")
    log.info("started")
    stream.seek(0)
    assert stream.read().splitlines() == ["<3>gateway.app: store is full", "<6>gateway.app: started"]


def test_from_a_terminal_plain_timestamped_lines_go_to_stderr(stream):
    handler = configure_logging(0, environ={}, stream=stream)
    assert type(handler) is logging.StreamHandler
    logging.getLogger("gateway.app").info("started", extra=log_fields(bus="b1"))
    stream.seek(0)
    line = stream.read()
    assert line.endswith(" INFO gateway.app: started\n")
    assert "b1" not in line


def test_verbose_logs_debug_and_default_logs_info(stream):
    configure_logging(0, environ={}, stream=stream)
    assert logging.getLogger().level == logging.INFO
    configure_logging(1, environ={}, stream=stream)
    assert logging.getLogger().level == logging.DEBUG
    assert len(logging.getLogger().handlers) == 1


def test_log_fields_leaves_out_what_is_not_given():
    assert log_fields(meter="m1") == {"METER": "m1"}
    assert log_fields() == {}


def test_a_multi_line_record_prefixes_every_line():
    formatter = PriorityPrefixFormatter("%(message)s")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "one\ntwo", None, None)
    assert formatter.format(record) == "<4>one\n<4>two"
