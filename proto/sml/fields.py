"""Read and write the SML structures shared by several bodies: time, value, entries."""

from __future__ import annotations

from smtestbed.proto.sml.messages import ListEntry, PeriodEntry, SmlTime, SmlValue, TimeKind
from smtestbed.proto.sml.obis import ObisCode
from smtestbed.proto.sml.tl import (
    BOOL,
    INT,
    LIST,
    UINT,
    SmlInt,
    TlReader,
    encode_absent,
    encode_bool,
    encode_int,
    encode_list_header,
    encode_octets,
    encode_optional_octets,
)

__all__ = [
    "encode_list_entry",
    "encode_obis",
    "encode_octet_list",
    "encode_optional_time",
    "encode_period_entry",
    "encode_time",
    "encode_value",
    "read_list_entry",
    "read_obis",
    "read_octet_list",
    "read_optional_time",
    "read_period_entry",
    "read_time",
    "read_value",
]


def read_time(r: TlReader, what: str) -> SmlTime:
    """Read SML_Time: ``72 <tag> <Unsigned32>`` or, for a local timestamp, a list of 3."""
    if (r.peek() >> 4) & 0x07 in (INT, UINT):
        return SmlTime(kind=TimeKind.SEC_INDEX, value=r.integer(what), bare=True)
    r.list_header(what, 2)
    start = r.pos
    tag = r.number(f"{what} choice", 0, 255)
    if tag not in (1, 2, 3):
        raise r.fail(f"{what}: unknown SML_Time choice {tag}", "bad_choice", start)
    kind = TimeKind(tag)
    if kind is not TimeKind.LOCAL_TIMESTAMP:
        return SmlTime(kind=kind, value=r.integer(f"{what} value"))
    r.list_header(f"{what} local timestamp", 3)
    value = r.integer(f"{what} timestamp")
    local = r.number(f"{what} local offset", -32768, 32767)
    season = r.number(f"{what} season offset", -32768, 32767)
    return SmlTime(kind=kind, value=value, local_offset=local, season_offset=season)


def read_optional_time(r: TlReader, what: str) -> SmlTime | None:
    """Read an OPTIONAL SML_Time."""
    return None if r.skip_absent() else read_time(r, what)


def encode_time(time: SmlTime) -> bytes:
    """Encode SML_Time; the choice tag goes as Unsigned8."""
    if time.bare:
        return encode_int(time.value)
    head = encode_list_header(2) + encode_int(SmlInt(value=int(time.kind), size=1))
    if time.kind is not TimeKind.LOCAL_TIMESTAMP:
        return head + encode_int(time.value)
    local = SmlInt(value=time.local_offset or 0, signed=True, size=2)
    season = SmlInt(value=time.season_offset or 0, signed=True, size=2)
    return head + encode_list_header(3) + b"".join(map(encode_int, (time.value, local, season)))


def encode_optional_time(time: SmlTime | None) -> bytes:
    """Encode an OPTIONAL SML_Time."""
    return encode_absent() if time is None else encode_time(time)


def read_value(r: TlReader, what: str) -> SmlValue:
    """Read SML_Value: octet string, boolean or integer (``01`` reads as b"")."""
    kind = (r.peek() >> 4) & 0x07
    if kind in (INT, UINT):
        return r.integer(what)
    if kind == BOOL:
        return r.boolean(what)
    if kind == LIST:
        raise r.fail(f"{what}: list values (SML_ListType) are not supported", "unsupported")
    return r.octets(what)


def encode_value(value: SmlValue) -> bytes:
    """Encode SML_Value."""
    if isinstance(value, bool):
        return encode_bool(value)
    if isinstance(value, SmlInt):
        return encode_int(value)
    return encode_octets(value)


def read_obis(r: TlReader, what: str) -> ObisCode:
    """Read an objName octet string of 6 bytes as an OBIS code."""
    start = r.pos
    raw = r.octets(what)
    if len(raw) != 6:
        raise r.fail(f"{what} must be a 6-byte OBIS code, got {len(raw)} bytes", "bad_obis", start)
    return ObisCode.from_bytes(raw)


def encode_obis(obis: ObisCode) -> bytes:
    """Encode an OBIS code as ``07 A B C D E F``."""
    return encode_octets(obis.to_bytes())


def read_list_entry(r: TlReader) -> ListEntry:
    """Read SML_ListEntry, a list of 7."""
    r.list_header("SML_ListEntry", 7)
    return ListEntry(
        obj_name=read_obis(r, "objName"),
        status=r.optional_integer("status"),
        val_time=read_optional_time(r, "valTime"),
        unit=r.optional_number("unit", 0, 255),
        scaler=r.optional_number("scaler", -128, 127),
        value=read_value(r, "value"),
        value_signature=r.optional_octets("valueSignature"),
    )


def _optional_small(value: int | None, signed: bool) -> bytes:
    return (
        encode_absent() if value is None else encode_int(SmlInt(value=value, signed=signed, size=1))
    )


def encode_list_entry(entry: ListEntry) -> bytes:
    """Encode SML_ListEntry; unit goes as Unsigned8, scaler as Integer8."""
    status = encode_absent() if entry.status is None else encode_int(entry.status)
    return b"".join(
        (
            encode_list_header(7),
            encode_obis(entry.obj_name),
            status,
            encode_optional_time(entry.val_time),
            _optional_small(entry.unit, signed=False),
            _optional_small(entry.scaler, signed=True),
            encode_value(entry.value),
            encode_optional_octets(entry.value_signature),
        )
    )


def read_period_entry(r: TlReader) -> PeriodEntry:
    """Read SML_PeriodEntry, a list of 5."""
    r.list_header("SML_PeriodEntry", 5)
    return PeriodEntry(
        obj_name=read_obis(r, "objName"),
        unit=r.number("unit", 0, 255),
        scaler=r.number("scaler", -128, 127),
        value=read_value(r, "value"),
        value_signature=r.optional_octets("valueSignature"),
    )


def encode_period_entry(entry: PeriodEntry) -> bytes:
    """Encode SML_PeriodEntry."""
    return b"".join(
        (
            encode_list_header(5),
            encode_obis(entry.obj_name),
            _optional_small(entry.unit, signed=False),
            _optional_small(entry.scaler, signed=True),
            encode_value(entry.value),
            encode_optional_octets(entry.value_signature),
        )
    )


def read_octet_list(r: TlReader, what: str) -> tuple[bytes, ...]:
    """Read a list of octet strings (SML_TreePath, List_of_SML_ObjReqEntry)."""
    count = r.list_header(what)
    return tuple(r.octets(what) for _ in range(count))


def encode_octet_list(items: tuple[bytes, ...]) -> bytes:
    """Encode a list of octet strings."""
    return encode_list_header(len(items)) + b"".join(map(encode_octets, items))
