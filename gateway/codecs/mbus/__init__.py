"""Wired and wireless M-Bus codecs (EN 13757).

- :mod:`~gateway.codecs.mbus.link`: EN 13757-2 frames (``decode_frame``, ``LinkParser``).
- :mod:`~gateway.codecs.mbus.application`: EN 13757-3 responses (``decode_user_data``,
  ``decode_response``), RSP_UD encoding (``encode``), the master's requests and the JSON view.
- :mod:`~gateway.codecs.mbus.records`: data records (``decode_records``, ``DataRecord``,
  ``make_record``, ``encode_record``), also used by wireless M-Bus.
- :mod:`~gateway.codecs.mbus.datatypes`, :mod:`~gateway.codecs.mbus.tables`: data types and
  code tables of EN 13757-3.
- :mod:`~gateway.codecs.mbus.errors`: the one exception family.
"""
