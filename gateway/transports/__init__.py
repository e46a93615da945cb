"""Byte-stream transports: serial ports and TCP serial servers, shared per physical port.

No parsing happens here: a transport moves bytes with timeouts; codecs find frames in them.
"""

from gateway.transports.base import MBUS_LINE, LineSettings, Transport
from gateway.transports.ports import make_transport, open_transport, port_key

__all__ = ["MBUS_LINE", "LineSettings", "Transport", "make_transport", "open_transport", "port_key"]
