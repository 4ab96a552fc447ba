"""SML type-length (TL) encoding: octet strings, booleans, integers and lists.

A TL field is one or more bytes ``M TTT LLLL``: ``M`` set means another TL byte
follows (whose ``TTT`` must be 000), ``TTT`` is the type (000 octet string,
100 boolean, 101 signed integer, 110 unsigned integer, 111 list) and the ``LLLL``
nibbles of all TL bytes, most significant first, form the length. For octet
strings, booleans and integers the length counts the TL bytes too; for a list it
is the number of elements. ``0x01`` (an empty octet string) marks an absent
OPTIONAL field and ``0x00`` ends an SML_Message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from smtestbed.services._runtime.errors import ProtocolError

__all__ = [
    "MAX_DEPTH",
    "Node",
    "SmlInt",
    "TlReader",
    "encode_absent",
    "encode_bool",
    "encode_int",
    "encode_list_header",
    "encode_node",
    "encode_octets",
    "encode_optional_octets",
]

OCTETS, BOOL, INT, UINT, LIST = 0, 4, 5, 6, 7
_TYPE_NAMES = {
    OCTETS: "octet string",
    BOOL: "boolean",
    INT: "integer",
    UINT: "unsigned",
    LIST: "list",
}
MAX_DEPTH = 16  # SML structures nest 6 deep at most; deeper input is garbage or an attack
_MAX_TL_BYTES = 8
ABSENT = 0x01
END_OF_MESSAGE = 0x00


@dataclass(frozen=True, slots=True, kw_only=True)
class SmlInt:
    """An SML integer with the width it has (or will have) on the wire.

    Attributes:
        value: the number.
        signed: True for Integer (TL type 101), False for Unsigned (110).
        size: payload bytes 1..8; 0 on construction picks the smallest of 1, 2, 4, 8.
    """

    value: int
    signed: bool = False
    size: int = 0

    def __post_init__(self) -> None:
        if self.size == 0:
            size = next((n for n in (1, 2, 4, 8) if _fits(self.value, n, self.signed)), 0)
            object.__setattr__(self, "size", size)
        if not 1 <= self.size <= 8 or not _fits(self.value, self.size, self.signed):
            kind = "signed" if self.signed else "unsigned"
            raise ValueError(f"{self.value} does not fit a {kind} integer of {self.size} bytes")


def _fits(value: int, size: int, signed: bool) -> bool:
    bits = 8 * size
    if signed:
        return -(1 << (bits - 1)) <= value < (1 << (bits - 1))
    return 0 <= value < (1 << bits)


Node: TypeAlias = "bytes | bool | SmlInt | tuple[Node, ...] | None"
"""A generic TL value: octet string, boolean, integer, absent (0x01) or list."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Tl:
    kind: int
    length: int
    size: int  # TL bytes


class TlReader:
    """Read TL values one after another from ``data``, raising ProtocolError on bad bytes.

    Args:
        data: the bytes to read.
        pos: where to start.
        where: maps a position in ``data`` to the offset reported in errors (for
            input that was unescaped before reading).
    """

    def __init__(
        self, data: bytes, pos: int = 0, *, where: Callable[[int], int] | None = None
    ) -> None:
        self.data = data
        self.pos = pos
        self._where = where if where is not None else (lambda pos: pos)

    def fail(self, message: str, reason: str, pos: int | None = None) -> ProtocolError:
        """Build the ProtocolError for a fault at ``pos`` (default: the current position)."""
        return ProtocolError(
            message, reason=reason, offset=self._where(self.pos if pos is None else pos)
        )

    def at_end(self) -> bool:
        """Return True when every byte has been read."""
        return self.pos >= len(self.data)

    def peek(self) -> int:
        """Return the next byte without consuming it."""
        if self.at_end():
            raise self.fail("input ends where a TL field was expected", "truncated")
        return self.data[self.pos]

    def skip_absent(self) -> bool:
        """Consume an absent marker 0x01 and return True, or return False and consume nothing."""
        if self.peek() == ABSENT:
            self.pos += 1
            return True
        return False

    def end_of_message(self) -> None:
        """Consume the endOfSmlMsg byte 0x00."""
        if self.peek() != END_OF_MESSAGE:
            raise self.fail(f"expected endOfSmlMsg 00, found {self.peek():02X}", "bad_end")
        self.pos += 1

    def _tl(self) -> _Tl:
        start = self.pos
        byte = self.peek()
        kind, length, size = (byte >> 4) & 0x07, byte & 0x0F, 1
        while byte & 0x80:
            if size == _MAX_TL_BYTES:
                raise self.fail(f"TL field longer than {_MAX_TL_BYTES} bytes", "bad_tl", start)
            if start + size >= len(self.data):
                raise self.fail("input ends inside a multi-byte TL field", "truncated", start)
            byte = self.data[start + size]
            if byte & 0x70:
                raise self.fail(
                    f"TL continuation byte {byte:02X} has type bits set", "bad_tl", start + size
                )
            length, size = (length << 4) | (byte & 0x0F), size + 1
        if kind not in _TYPE_NAMES:
            raise self.fail(
                f"TL byte {self.data[start]:02X} has reserved type {kind:03b}", "bad_type", start
            )
        return _Tl(kind=kind, length=length, size=size)

    def _payload(self, tl: _Tl) -> bytes:
        start = self.pos
        if self.data[start] == END_OF_MESSAGE:
            raise self.fail("endOfSmlMsg 00 where a value was expected", "unexpected_end", start)
        if tl.length < tl.size:
            raise self.fail(
                f"TL length {tl.length} is shorter than the TL field", "bad_length", start
            )
        end = start + tl.length
        if end > len(self.data):
            raise self.fail(
                f"value of {tl.length} bytes runs past the end of the input", "truncated", start
            )
        self.pos = end
        return self.data[start + tl.size : end]

    def _expect(self, tl: _Tl, kinds: tuple[int, ...], what: str) -> None:
        if tl.kind not in kinds:
            wanted = " or ".join(_TYPE_NAMES[k] for k in kinds)
            raise self.fail(
                f"{what}: expected {wanted}, found {_TYPE_NAMES[tl.kind]}", "wrong_type"
            )

    def octets(self, what: str) -> bytes:
        """Read a required octet string (``0x01`` reads as b"")."""
        tl = self._tl()
        self._expect(tl, (OCTETS,), what)
        return self._payload(tl)

    def optional_octets(self, what: str) -> bytes | None:
        """Read an OPTIONAL octet string; None when absent."""
        return None if self.skip_absent() else self.octets(what)

    def integer(self, what: str) -> SmlInt:
        """Read an Integer or Unsigned of 1..8 bytes, keeping its wire width."""
        start, tl = self.pos, self._tl()
        self._expect(tl, (INT, UINT), what)
        raw = self._payload(tl)
        if not 1 <= len(raw) <= 8:
            raise self.fail(
                f"{what}: integer of {len(raw)} bytes (1..8 allowed)", "bad_length", start
            )
        signed = tl.kind == INT
        return SmlInt(value=int.from_bytes(raw, "big", signed=signed), signed=signed, size=len(raw))

    def optional_integer(self, what: str) -> SmlInt | None:
        """Read an OPTIONAL integer; None when absent."""
        return None if self.skip_absent() else self.integer(what)

    def number(self, what: str, low: int, high: int) -> int:
        """Read an integer of any width and check that it lies in low..high."""
        start, value = self.pos, self.integer(what).value
        if not low <= value <= high:
            raise self.fail(f"{what} {value} is outside {low}..{high}", "out_of_range", start)
        return value

    def optional_number(self, what: str, low: int, high: int) -> int | None:
        """Read an OPTIONAL integer checked against low..high; None when absent."""
        return None if self.skip_absent() else self.number(what, low, high)

    def boolean(self, what: str) -> bool:
        """Read a Boolean (``42 xx``; any non-zero byte is True)."""
        start, tl = self.pos, self._tl()
        self._expect(tl, (BOOL,), what)
        raw = self._payload(tl)
        if len(raw) != 1:
            raise self.fail(f"{what}: boolean of {len(raw)} bytes", "bad_length", start)
        return raw[0] != 0

    def list_header(self, what: str, count: int | None = None) -> int:
        """Read a list TL; check its element count when ``count`` is given; return it."""
        start, tl = self.pos, self._tl()
        self._expect(tl, (LIST,), what)
        self.pos = start + tl.size
        if count is not None and tl.length != count:
            raise self.fail(
                f"{what}: list of {tl.length} elements, expected {count}", "bad_length", start
            )
        if tl.length > len(self.data) - self.pos:
            raise self.fail(
                f"{what}: list of {tl.length} elements cannot fit the input", "truncated", start
            )
        return tl.length

    def node(self, depth: int = 0) -> Node:
        """Read any TL value, lists recursively up to MAX_DEPTH levels."""
        if depth > MAX_DEPTH:
            raise self.fail(f"lists nested deeper than {MAX_DEPTH} levels", "too_deep")
        if self.skip_absent():
            return None
        kind = self._tl().kind
        if kind == LIST:
            count = self.list_header("list")
            return tuple(self.node(depth + 1) for _ in range(count))
        if kind == BOOL:
            return self.boolean("boolean")
        if kind in (INT, UINT):
            return self.integer("integer")
        return self.octets("octet string")


def _tl_bytes(kind: int, length: int, counts_tl: bool) -> bytes:
    size = 1
    while True:
        total = length + size if counts_tl else length
        if total < 16**size:
            break
        size += 1
    nibbles = [(total >> (4 * i)) & 0x0F for i in reversed(range(size))]
    out = bytearray((0x80 if i < size - 1 else 0) | n for i, n in enumerate(nibbles))
    out[0] |= kind << 4
    return bytes(out)


def encode_octets(data: bytes) -> bytes:
    """Encode an octet string (b"" becomes ``01``, the same byte as an absent field)."""
    return _tl_bytes(OCTETS, len(data), True) + data


def encode_optional_octets(data: bytes | None) -> bytes:
    """Encode an OPTIONAL octet string; None becomes ``01``."""
    return encode_absent() if data is None else encode_octets(data)


def encode_absent() -> bytes:
    """Encode an absent OPTIONAL field."""
    return bytes((ABSENT,))


def encode_bool(value: bool) -> bytes:
    """Encode a Boolean as ``42 01`` or ``42 00``."""
    return bytes((0x42, 1 if value else 0))


def encode_int(value: SmlInt) -> bytes:
    """Encode an integer with its width: ``5N``/``6N`` then N-1 big-endian bytes."""
    kind = INT if value.signed else UINT
    raw = value.value.to_bytes(value.size, "big", signed=value.signed)
    return _tl_bytes(kind, len(raw), True) + raw


def encode_list_header(count: int) -> bytes:
    """Encode the TL of a list of ``count`` elements."""
    return _tl_bytes(LIST, count, False)


def encode_node(node: Node) -> bytes:
    """Encode a generic TL value."""
    if node is None:
        return encode_absent()
    if isinstance(node, bool):
        return encode_bool(node)
    if isinstance(node, SmlInt):
        return encode_int(node)
    if isinstance(node, bytes):
        return encode_octets(node)
    return encode_list_header(len(node)) + b"".join(encode_node(n) for n in node)
