"""Application layer of M-Bus (EN 13757-3): DIF/DIFE/VIF/VIFE data records, wired and wireless.

Normalisation of decoded records:

- ``value`` is the raw data field times the VIF's scale, in the unit named by
  ``unit``: energy in "Wh" or "J", volume "m^3", mass "kg", power "W" or
  "J/h", volume flow "m^3/h", "m^3/min" or "m^3/s", mass flow "kg/h",
  temperatures "°C", temperature difference "K", pressure "bar", voltage "V",
  current "A", relative humidity "%". Durations (on time, operating time,
  averaging/actuality duration, storage interval) are converted to "s"
  whatever the VIF's time unit. Identification-like quantities
  (fabrication number, versions, error flags, ...) have unit "" and the raw
  value unscaled.
- Integer and BCD fields scale to ``int`` when the power of ten is >= 0 and to
  ``float`` otherwise; real fields give ``float``. Orthogonal VIFEs
  0x70..0x77 and 0x7D (multiplicative correction) are applied; other VIFEs
  are listed in ``description`` and ``vife`` only.
- Dates (VIF 0x6C, type G) and date+time (VIF 0x6D, types F and I) give a
  :class:`Timestamp`, which can hold what meters send for "no date" (month 0).
- BCD with a digit above 9 (other than a leading 0xF sign) decodes to None.
- LVAR text gives ``str`` (characters put back in reading order), LVAR binary
  gives ``bytes`` in frame order, LVAR BCD gives ``int``.
- Plain-text VIF (0x7C/0xFC): ``quantity`` "plain_text_unit", ``unit`` is the
  text. Manufacturer-specific VIF (0x7F/0xFF): ``quantity``
  "manufacturer_specific", raw value unscaled. Unknown codes: "reserved".
- ``quantity`` names: energy, volume, mass, on_time, operating_time, power,
  volume_flow, mass_flow, flow_temperature, return_temperature,
  temperature_difference, external_temperature, pressure, date, date_time,
  hca_units, averaging_duration, actuality_duration, fabrication_number,
  enhanced_identification, bus_address and the 0xFD / 0xFB names listed in
  :mod:`smtestbed.proto.records.vif` (access_number, error_flags, voltage, ...).

Every record keeps its DIB, VIB and data bytes (and the idle fillers before it)
so that :func:`encode_records` reproduces decoded input byte for byte.
"""

from smtestbed.proto.records.builder import new_record
from smtestbed.proto.records.decoder import decode_records, salvage_records
from smtestbed.proto.records.encoder import encode_records
from smtestbed.proto.records.model import DataBlock, DataType, Function, RawValue, Record, Value
from smtestbed.proto.records.timestamps import Timestamp

__all__ = [
    "DataBlock",
    "DataType",
    "Function",
    "RawValue",
    "Record",
    "Timestamp",
    "Value",
    "decode_records",
    "encode_records",
    "new_record",
    "salvage_records",
]
