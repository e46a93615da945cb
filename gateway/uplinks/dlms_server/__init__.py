"""The gateway as a DLMS/COSEM server for the HES (IEC 62056-47 wrapper on TCP, port 4059).

An HES that speaks only DLMS reads the gateway like a meter with many logical devices: the
management logical device (server SAP 1: name, clock, associations, security setups, SAP
assignment, event log, push setup) and one logical device per collected meter (SAP 16 up:
a Register per numeric quantity, its readings profile). The public client (SAP 16) reads the
names and the SAP list; the management client (SAP 1) associates with HLS-GMAC and security
suite 0, every APDU authenticated and encrypted, and reads everything. New records are
pushed as ciphered DataNotifications from the server's own store cursor. A SET or ACTION of
the management client on a meter's logical device is carried out on the real meter through
the operations relay (:mod:`gateway.operations`), answered with the meter's own result.

==============  ===========================================================================
``server``      :class:`DlmsServer`: listening, supervision, status
``session``     one TCP connection: its associations, dispatch, streamed profiles, refusals
``objects``     the COSEM object tree: interface classes and logical devices
``profiles``    profile buffers read from the store page by page, selective access
``registry``    SAP registry: meter ↔ SAP, name, OBIS codes, scalers (durable), latest values
``mapping``     the rules for names, OBIS codes, units and exact values
``push``        the push client (DataNotifications, TCP-acknowledged cursor)
``events``      rate-limited ``security.refused`` events
``relay``       an HES's SET/ACTION on a meter's logical device carried out on the meter
==============  ===========================================================================

Invocation counters are the gateway's one implementation (:mod:`gateway.dlms_counters`):
the server's outgoing counters share the namespace of every title the gateway sends under.
"""

from gateway.uplinks.dlms_server.server import DEMO_KEYS, DlmsServer

__all__ = ["DEMO_KEYS", "DlmsServer"]
