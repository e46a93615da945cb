"""DLMS/COSEM (IEC 62056), sans-IO.

Link and transport: ``hdlc``/``hdlc_connection`` (IEC 62056-46), ``wrapper`` (-47),
``mode_e`` (-21), events in ``link_events``. Application layer (IEC 62056-5-3, -6-2):

==================  ==========================================================================
``errors``          the exception family (DLMSError, DLMSFrameError, DLMSSecurityError ...)
``obis``            OBIS codes
``axdr``            A-XDR Data, exact numbers; ``dates``: COSEM date/time; ``units``: units
``apdu``            ``decode_apdu`` for every APDU: ``xdlms`` (initiate, errors, ciphered,
                    GBT), ``services`` (GET/SET/ACTION, notifications), ``acse`` (AARQ ...),
                    ``selective`` (Profile generic access selectors)
``security``        suite 0: AES-GCM, HLS-GMAC, invocation counters
``association``     the client association state machine; ``server``: the server side
==================  ==========================================================================
"""
