"""The device lifecycle: discovery, commissioning, exchange, key changes, calibration and
disturbances of every device the gateway collects from (wired and wireless M-Bus, DLMS/COSEM
meters and remote sensors), with an audit trail fit for legally relevant data.

==================  ==========================================================================
``declaration``     what the operator declares about a device (metrological quantities,
                    firmware, calibration date, clock tolerance)
``checks``          the commissioning checks, pure: an observation in, checks out
``disturbances``    status and error flags as named flags (EN 13757-3 status byte)
``tagger``          tags every reading on its way into the store (point, metrological,
                    flags) and raises alarms and clock drift on change
``service``         :class:`DeviceLifecycle`: the operations, run by the gateway
``commands``        the ``devices.*`` commands (MQTT and the control socket)
==================  ==========================================================================

The states and their transitions are the registry's (:mod:`gateway.registry`).
"""
