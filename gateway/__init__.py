"""A data concentrator for smart metering: wired and wireless M-Bus and DLMS/COSEM
collected into a durable SQLite store and relayed, signed, to the Head-End System."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metering-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
