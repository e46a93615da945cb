"""The unit sets MemoryDenyWriteExecute=yes: the gateway's Python and its compiled
dependencies must work without writable+executable memory.

The kernel's PR_SET_MDWE (Linux 6.3+) is the same restriction that systemd applies (newer
systemd through it, older through a seccomp filter); the child process turns it on, shows
that a W+X mapping is now refused, then does what the daemon does: import every dependency,
sign with ECDSA, validate the configuration, run an event loop, write SQLite, call through
libffi.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
EXAMPLE = Path(__file__).parents[2] / "config" / "gateway.toml"

CHILD = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(f"prctl(PR_SET_MDWE) failed: errno {ctypes.get_errno()}")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a W+X mapping was allowed: MDWE is not in force")
except PermissionError:
    pass
import asyncio, sqlite3, ssl
import aiomqtt, paho.mqtt.client, pydantic, rich, serial_asyncio_fast, sqlite_utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
import gateway.app, gateway.cli, gateway.systemd, gateway.logging_setup
from gateway.config import load_config
key = ec.generate_private_key(ec.SECP256R1())
key.public_key().verify(key.sign(b"reading", ec.ECDSA(hashes.SHA256())), b"reading", ec.ECDSA(hashes.SHA256()))
load_config(sys.argv[1])
asyncio.run(asyncio.sleep(0))
db = sqlite3.connect(":memory:"); db.execute("create table t(x)"); db.execute("insert into t values (1)")
assert ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)(41) == 42
try:
    import systemd.journal
except ImportError:
    pass
print("ok")
"""


def kernel_has_mdwe() -> bool:
    """Ask in a throwaway child: PR_SET_MDWE cannot be undone in the test process."""
    probe = "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(%d, %d, 0, 0, 0) != 0)" % (
        PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)
    return subprocess.run([sys.executable, "-c", probe]).returncode == 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or not kernel_has_mdwe(),
                    reason="the kernel has no PR_SET_MDWE (Linux < 6.3)")
def test_the_gateway_runs_without_writable_executable_memory():
    result = subprocess.run([sys.executable, "-c", CHILD, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
