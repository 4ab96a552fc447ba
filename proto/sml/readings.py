"""Turn SML list entries into readings: OBIS, value x 10^scaler, unit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from smtestbed.proto.sml.messages import GetListResponse, ListEntry, SmlFile
from smtestbed.proto.sml.obis import ObisCode
from smtestbed.proto.sml.tl import SmlInt
from smtestbed.proto.sml.units import unit_symbol

__all__ = ["Reading", "reading_from_entry", "readings", "readings_from_file"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One value a meter reported.

    Attributes:
        obis: what the value is.
        value: value x 10^scaler for integers (exact); octet strings and booleans as sent.
        unit: DLMS unit code, or None.
        unit_symbol: "Wh", "W", ... ("" without unit).
        signed: True when the entry carried a value signature.
    """

    obis: ObisCode
    value: Decimal | bytes | bool
    unit: int | None
    unit_symbol: str
    signed: bool = False


def reading_from_entry(entry: ListEntry) -> Reading:
    """Scale one SML_ListEntry (``59 .. 0D 63 7E 08`` with scaler -1 is 22462413.6)."""
    raw = entry.value
    value = _scaled(raw.value, entry.scaler or 0) if isinstance(raw, SmlInt) else raw
    return Reading(
        obis=entry.obj_name,
        value=value,
        unit=entry.unit,
        unit_symbol=unit_symbol(entry.unit),
        signed=entry.value_signature is not None,
    )


def _scaled(value: int, scaler: int) -> Decimal:
    # Positive scalers are multiplied out so that 13391 * 10^3 prints as 13391000.
    return Decimal(value * 10**scaler) if scaler >= 0 else Decimal(value).scaleb(scaler)


def readings(response: GetListResponse) -> list[Reading]:
    """Return the readings of a GetList.Res in the order the meter sent them."""
    return [reading_from_entry(entry) for entry in response.entries]


def readings_from_file(sml_file: SmlFile) -> list[Reading]:
    """Return the readings of every GetList.Res in an SML file."""
    return [
        reading
        for message in sml_file.messages
        if isinstance(message.body, GetListResponse)
        for reading in readings(message.body)
    ]
