"""Where the daemon's log goes: the journal with structured fields under systemd, stderr otherwise.

Under systemd, stderr is a stream to journald and ``$JOURNAL_STREAM`` names it
(``DEVICE:INODE``). Then, when systemd-python is importable, records go to the journal
natively, each with its fields: ``PRIORITY``, ``LOGGER``, ``CODE_*`` and whatever the caller
passed as ``extra=`` in upper case, so an operator can ask::

    journalctl -u gateway BUS=mbus-basement
    journalctl -u gateway METER=heat-flat-1 -p warning

Without systemd-python the lines still go to journald through stderr, prefixed ``<N>`` with
their syslog priority (sd-daemon(3)), so ``-p warning`` works there too. From a terminal,
plain lines with a timestamp go to stderr.

What is logged: state changes, failures and their recoveries, at INFO and above; one line
per reading only at DEBUG. Secrets are never logged, at any level: code passes the
configuration's ``*_file`` references around, not their contents, and a test runs the
daemon at DEBUG with secrets configured and looks for them in its output.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

#: Journal fields the gateway attaches with ``extra=log_fields(...)``.
BUS, METER, EVENT_CODE = "BUS", "METER", "EVENT_CODE"

STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# syslog priorities (RFC 5424) of Python's levels, for "<N>" prefixes and the journal.
_PRIORITIES = ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2))


def log_fields(*, bus: str | None = None, meter: str | None = None, event_code: str | None = None) -> dict[str, str]:
    """``extra=`` for a log call: the journal fields BUS=, METER=, EVENT_CODE= that are given.

    ``log.warning("meter %s failed", name, extra=log_fields(bus=bus, meter=name))``. On
    stderr they are not printed (the message says it already).
    """
    given = {BUS: bus, METER: meter, EVENT_CODE: event_code}
    return {key: value for key, value in given.items() if value is not None}


def stderr_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """True when ``stream`` is the journald stream systemd connected (``$JOURNAL_STREAM``)."""
    device, sep, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def syslog_priority(levelno: int) -> int:
    for level, priority in _PRIORITIES:
        if levelno <= level:
            return priority
    return 1


class PriorityPrefixFormatter(logging.Formatter):
    """``<N>message`` for journald reading stderr: it takes N as the line's priority."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def journal_handler(**fields: str) -> logging.Handler | None:
    """systemd-python's JournalHandler, or None when the module is not installed."""
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    return JournalHandler(**fields)


def daemon_level(verbosity: int) -> int:
    """INFO for the daemon, DEBUG with ``-v``."""
    return logging.INFO if verbosity == 0 else logging.DEBUG


def configure_logging(verbosity: int = 0, *, environ: Mapping[str, str] | None = None,
                      stream: TextIO | None = None) -> logging.Handler:
    """Set up the daemon's logging (replacing any earlier handlers) and return the handler."""
    environ = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    handler: logging.Handler | None = None
    if stderr_is_journal(environ, stream):
        handler = journal_handler(SYSLOG_IDENTIFIER="gateway")
        if handler is None:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(PriorityPrefixFormatter("%(name)s: %(message)s"))
    if handler is None:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(daemon_level(verbosity))
    return handler


def enable_fault_tracebacks(stream: Any = None) -> None:
    """On SIGABRT (systemd's watchdog kill), SIGSEGV and the like, print every thread's stack
    to stderr, hence the journal: a hang leaves a record of where it hung."""
    if faulthandler.is_enabled():  # already (PYTHONFAULTHANDLER=1, or under pytest)
        return
    try:
        faulthandler.enable(file=sys.stderr if stream is None else stream, all_threads=True)
    except (ValueError, OSError):  # a stderr without a file descriptor: nothing to write to
        pass
