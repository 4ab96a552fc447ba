"""Values of the M-Bus application layer: records, data blocks and their enums."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from smtestbed.proto.records.timestamps import Timestamp

RawValue = int | float | str | bytes | Timestamp | None
"""What the data field holds before scaling (int for integer/BCD, bytes for binary)."""

Value = int | float | str | bytes | Timestamp | None
"""A record's value in its normalised unit."""


class Function(StrEnum):
    """Function field of the DIF (bits 5..4)."""

    INSTANTANEOUS = "instantaneous"
    MAXIMUM = "maximum"
    MINIMUM = "minimum"
    ERROR_STATE = "value_during_error_state"


FUNCTIONS: tuple[Function, ...] = (
    Function.INSTANTANEOUS,
    Function.MAXIMUM,
    Function.MINIMUM,
    Function.ERROR_STATE,
)
"""Function by the two DIF bits 5..4."""


class DataType(StrEnum):
    """Data field coding of the DIF (bits 3..0); values name the coding."""

    NONE = "none"
    INT8 = "int8"
    INT16 = "int16"
    INT24 = "int24"
    INT32 = "int32"
    REAL32 = "real32"
    INT48 = "int48"
    INT64 = "int64"
    SELECTION = "selection"
    BCD2 = "bcd2"
    BCD4 = "bcd4"
    BCD6 = "bcd6"
    BCD8 = "bcd8"
    LVAR = "lvar"
    BCD12 = "bcd12"


DATA_TYPES: dict[int, DataType] = {
    0x0: DataType.NONE,
    0x1: DataType.INT8,
    0x2: DataType.INT16,
    0x3: DataType.INT24,
    0x4: DataType.INT32,
    0x5: DataType.REAL32,
    0x6: DataType.INT48,
    0x7: DataType.INT64,
    0x8: DataType.SELECTION,
    0x9: DataType.BCD2,
    0xA: DataType.BCD4,
    0xB: DataType.BCD6,
    0xC: DataType.BCD8,
    0xD: DataType.LVAR,
    0xE: DataType.BCD12,
}
"""Data type by the DIF data-field nibble (0xF is the special-function nibble)."""

DATA_NIBBLES: dict[DataType, int] = {kind: nibble for nibble, kind in DATA_TYPES.items()}

FIXED_LENGTHS: dict[DataType, int] = {
    DataType.NONE: 0,
    DataType.INT8: 1,
    DataType.INT16: 2,
    DataType.INT24: 3,
    DataType.INT32: 4,
    DataType.REAL32: 4,
    DataType.INT48: 6,
    DataType.INT64: 8,
    DataType.SELECTION: 0,
    DataType.BCD2: 1,
    DataType.BCD4: 2,
    DataType.BCD6: 3,
    DataType.BCD8: 4,
    DataType.BCD12: 6,
}
"""Length in bytes of each fixed-size data field (LVAR has its own length byte)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One data record: DIB (DIF + DIFEs), VIB (VIF + VIFEs) and the data field.

    The raw byte fields make re-encoding byte-exact; the other fields are the
    interpretation (see :mod:`smtestbed.proto.records` for the normalisation).

    Attributes:
        dib: DIF and DIFE bytes as received.
        vib: VIF, VIFE bytes and, for plain-text VIFs, the length byte and text.
        data: data field bytes; for LVAR including the leading LVAR byte.
        fill_before: idle filler bytes (0x2F) that preceded this record.
        function: DIF function field.
        storage_number: storage number (DIF bit 6, then 4 bits per DIFE).
        tariff: tariff (2 bits per DIFE).
        subunit: subunit/device (1 bit per DIFE).
        data_type: data field coding.
        raw_value: the data field decoded but not scaled.
        value: the value in ``unit`` (None when the field holds no number).
        unit: normalised unit ("Wh", "m^3", "°C", "s", ... or "" for none).
        quantity: snake_case name of the measured quantity.
        description: human-readable text including the VIF's scale.
        vife: orthogonal VIFE codes (extension bit cleared) after the VIF.
    """

    dib: bytes
    vib: bytes
    data: bytes
    fill_before: int = 0
    function: Function
    storage_number: int
    tariff: int
    subunit: int
    data_type: DataType
    raw_value: RawValue
    value: Value
    unit: str
    quantity: str
    description: str
    vife: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        """Return the record as it goes on the wire, idle fillers included."""
        return b"\x2f" * self.fill_before + self.dib + self.vib + self.data


@dataclass(frozen=True, slots=True, kw_only=True)
class DataBlock:
    """The records of one telegram plus what follows a special DIF.

    Attributes:
        records: data records in order.
        manufacturer_data: bytes after DIF 0x0F/0x1F, up to the end of the data.
        more_follow: DIF 0x1F ended the records (more in the next telegram).
        special_dif: a DIF 0x0F or 0x1F is present even with no manufacturer data.
        trailing_fill: idle filler bytes (0x2F) after the last record.
    """

    records: tuple[Record, ...]
    manufacturer_data: bytes = b""
    more_follow: bool = False
    special_dif: bool = False
    trailing_fill: int = 0
