"""VIF tables of EN 13757-3: primary VIFs and the 0xFD / 0xFB extension tables.

Each entry covers a run of codes that differ only in their scale. ``exponent``
is the power of ten of the run's first code; the others add their offset.
Time runs (``kind == "time"``) encode s / min / h / days in the two low bits
and are normalised to seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

PRIMARY = 0x00
EXT_FD = 0xFD
EXT_FB = 0xFB

TIME_FACTORS = (1, 60, 3600, 86400)
"""Seconds per unit for time codes: s, min, h, days."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VifEntry:
    """A run of VIF codes with one quantity.

    Attributes:
        table: PRIMARY, EXT_FD or EXT_FB.
        first: first code of the run (extension bit cleared).
        last: last code of the run.
        quantity: snake_case quantity name.
        unit: normalised unit.
        exponent: power of ten of ``first`` (None: the value is not scaled).
        kind: "decimal", "time", "date", "datetime" or "plain".
        description: human-readable name.
    """

    table: int
    first: int
    last: int
    quantity: str
    unit: str
    exponent: int | None
    kind: str
    description: str

    def scale(self, code: int) -> tuple[int, int]:
        """Return (factor, power of ten) that turn a raw value of ``code`` into ``unit``."""
        if self.kind == "time":
            return TIME_FACTORS[(code - self.first) & 3], 0
        if self.exponent is None:
            return 1, 0
        return 1, self.exponent + code - self.first


def _runs(
    table: int, rows: tuple[tuple[int, int, str, str, int | None, str, str], ...]
) -> tuple[VifEntry, ...]:
    return tuple(
        VifEntry(
            table=table, first=a, last=b, quantity=q, unit=u, exponent=e, kind=k, description=d
        )
        for a, b, q, u, e, k, d in rows
    )


PRIMARY_TABLE = _runs(
    PRIMARY,
    (
        (0x00, 0x07, "energy", "Wh", -3, "decimal", "Energy"),
        (0x08, 0x0F, "energy", "J", 0, "decimal", "Energy"),
        (0x10, 0x17, "volume", "m^3", -6, "decimal", "Volume"),
        (0x18, 0x1F, "mass", "kg", -3, "decimal", "Mass"),
        (0x20, 0x23, "on_time", "s", None, "time", "On time"),
        (0x24, 0x27, "operating_time", "s", None, "time", "Operating time"),
        (0x28, 0x2F, "power", "W", -3, "decimal", "Power"),
        (0x30, 0x37, "power", "J/h", 0, "decimal", "Power"),
        (0x38, 0x3F, "volume_flow", "m^3/h", -6, "decimal", "Volume flow"),
        (0x40, 0x47, "volume_flow", "m^3/min", -7, "decimal", "Volume flow"),
        (0x48, 0x4F, "volume_flow", "m^3/s", -9, "decimal", "Volume flow"),
        (0x50, 0x57, "mass_flow", "kg/h", -3, "decimal", "Mass flow"),
        (0x58, 0x5B, "flow_temperature", "°C", -3, "decimal", "Flow temperature"),
        (0x5C, 0x5F, "return_temperature", "°C", -3, "decimal", "Return temperature"),
        (0x60, 0x63, "temperature_difference", "K", -3, "decimal", "Temperature difference"),
        (0x64, 0x67, "external_temperature", "°C", -3, "decimal", "External temperature"),
        (0x68, 0x6B, "pressure", "bar", -3, "decimal", "Pressure"),
        (0x6C, 0x6C, "date", "", None, "date", "Date (type G)"),
        (0x6D, 0x6D, "date_time", "", None, "datetime", "Date and time (type F/I)"),
        (0x6E, 0x6E, "hca_units", "", None, "plain", "Units for heat cost allocator"),
        (0x70, 0x73, "averaging_duration", "s", None, "time", "Averaging duration"),
        (0x74, 0x77, "actuality_duration", "s", None, "time", "Actuality duration"),
        (0x78, 0x78, "fabrication_number", "", None, "plain", "Fabrication number"),
        (0x79, 0x79, "enhanced_identification", "", None, "plain", "Enhanced identification"),
        (0x7A, 0x7A, "bus_address", "", None, "plain", "Bus address"),
        (0x7E, 0x7E, "any", "", None, "plain", "Any VIF (readout selection)"),
    ),
)

FD_TABLE = _runs(
    EXT_FD,
    (
        (0x00, 0x03, "credit", "currency", -3, "decimal", "Credit"),
        (0x04, 0x07, "debit", "currency", -3, "decimal", "Debit"),
        (0x08, 0x08, "access_number", "", None, "plain", "Access number"),
        (0x09, 0x09, "medium", "", None, "plain", "Medium"),
        (0x0A, 0x0A, "manufacturer", "", None, "plain", "Manufacturer"),
        (0x0B, 0x0B, "parameter_set_id", "", None, "plain", "Parameter set identification"),
        (0x0C, 0x0C, "model_version", "", None, "plain", "Model / version"),
        (0x0D, 0x0D, "hardware_version", "", None, "plain", "Hardware version"),
        (0x0E, 0x0E, "firmware_version", "", None, "plain", "Firmware version"),
        (0x0F, 0x0F, "software_version", "", None, "plain", "Software version"),
        (0x10, 0x10, "customer_location", "", None, "plain", "Customer location"),
        (0x11, 0x11, "customer", "", None, "plain", "Customer"),
        (0x12, 0x12, "access_code_user", "", None, "plain", "Access code user"),
        (0x13, 0x13, "access_code_operator", "", None, "plain", "Access code operator"),
        (0x14, 0x14, "access_code_system_operator", "", None, "plain", "Access code system"),
        (0x15, 0x15, "access_code_developer", "", None, "plain", "Access code developer"),
        (0x16, 0x16, "password", "", None, "plain", "Password"),
        (0x17, 0x17, "error_flags", "", None, "plain", "Error flags"),
        (0x18, 0x18, "error_mask", "", None, "plain", "Error mask"),
        (0x1A, 0x1A, "digital_output", "", None, "plain", "Digital output"),
        (0x1B, 0x1B, "digital_input", "", None, "plain", "Digital input"),
        (0x1C, 0x1C, "baud_rate", "Bd", 0, "decimal", "Baud rate"),
        (0x1D, 0x1D, "response_delay", "bit_times", 0, "decimal", "Response delay time"),
        (0x1E, 0x1E, "retry", "", None, "plain", "Retry"),
        (0x20, 0x20, "first_storage_number", "", None, "plain", "First cyclic storage number"),
        (0x21, 0x21, "last_storage_number", "", None, "plain", "Last cyclic storage number"),
        (0x22, 0x22, "storage_block_size", "", None, "plain", "Size of storage block"),
        (0x24, 0x27, "storage_interval", "s", None, "time", "Storage interval"),
        (0x2C, 0x2F, "duration_since_readout", "s", None, "time", "Duration since last readout"),
        (0x31, 0x33, "tariff_duration", "s", None, "time", "Duration of tariff"),
        (0x34, 0x37, "tariff_period", "s", None, "time", "Period of tariff"),
        (0x3A, 0x3A, "dimensionless", "", None, "plain", "Dimensionless"),
        (0x40, 0x4F, "voltage", "V", -9, "decimal", "Voltage"),
        (0x50, 0x5F, "current", "A", -12, "decimal", "Current"),
        (0x60, 0x60, "reset_counter", "", None, "plain", "Reset counter"),
        (0x61, 0x61, "cumulation_counter", "", None, "plain", "Cumulation counter"),
        (0x62, 0x62, "control_signal", "", None, "plain", "Control signal"),
        (0x63, 0x63, "day_of_week", "", None, "plain", "Day of week"),
        (0x64, 0x64, "week_number", "", None, "plain", "Week number"),
        (0x65, 0x65, "day_change_time", "", None, "plain", "Time point of day change"),
        (0x66, 0x66, "parameter_activation", "", None, "plain", "State of parameter activation"),
        (0x67, 0x67, "special_supplier_info", "", None, "plain", "Special supplier information"),
        (0x74, 0x74, "remaining_battery", "d", None, "plain", "Remaining battery lifetime"),
    ),
)

FB_TABLE = _runs(
    EXT_FB,
    (
        (0x00, 0x01, "energy", "Wh", 5, "decimal", "Energy"),
        (0x08, 0x09, "energy", "J", 8, "decimal", "Energy"),
        (0x10, 0x11, "volume", "m^3", 2, "decimal", "Volume"),
        (0x18, 0x19, "mass", "kg", 5, "decimal", "Mass"),
        (0x1A, 0x1B, "relative_humidity", "%", -1, "decimal", "Relative humidity"),
        (0x28, 0x29, "power", "W", 5, "decimal", "Power"),
        (0x30, 0x31, "power", "J/h", 8, "decimal", "Power"),
    ),
)

TABLES: dict[int, tuple[VifEntry, ...]] = {
    PRIMARY: PRIMARY_TABLE,
    EXT_FD: FD_TABLE,
    EXT_FB: FB_TABLE,
}

_INDEX: dict[tuple[int, int], VifEntry] = {
    (entry.table, code): entry
    for table in TABLES.values()
    for entry in table
    for code in range(entry.first, entry.last + 1)
}


def lookup(table: int, code: int) -> VifEntry | None:
    """Return the entry for a code (extension bit cleared), or None when reserved."""
    return _INDEX.get((table, code & 0x7F))
