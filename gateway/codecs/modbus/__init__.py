"""Modbus RTU (Modbus over Serial Line V1.02) and the values held in Modbus registers.

:mod:`~gateway.codecs.modbus.rtu` builds read requests and finds their responses in
received bytes (the framing and CRC are pymodbus's); :mod:`~gateway.codecs.modbus.registers`
turns registers into exact values by the data types of a register map.
"""
