"""OBIS codes (IEC 62056-61): six value groups A-B:C.D.E*F, 6 bytes on the wire."""

from __future__ import annotations

import re
from dataclasses import dataclass

from smtestbed.services._runtime.errors import ProtocolError

__all__ = ["ObisCode"]

_TEXT = re.compile(r"(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[*&](\d{1,3}))?")


@dataclass(frozen=True, slots=True, kw_only=True)
class ObisCode:
    """An OBIS code; each group is 0..255 (``1-0:1.8.0*255`` = active energy import total).

    Attributes:
        a: medium (1 electricity, 6 heat, 7 gas, 8 water, 129 manufacturer specific).
        b: channel.
        c: quantity (1 active power import, 2 export, 32 voltage L1, ...).
        d: processing (8 time integral, 7 instantaneous, ...).
        e: tariff or further classification.
        f: billing period, 255 when not used.
    """

    a: int
    b: int
    c: int
    d: int
    e: int
    f: int = 255

    def __post_init__(self) -> None:
        for group in (self.a, self.b, self.c, self.d, self.e, self.f):
            if not 0 <= group <= 255:
                raise ValueError(f"OBIS value group {group} is outside 0..255")

    @classmethod
    def from_bytes(cls, data: bytes, *, offset: int | None = None) -> ObisCode:
        """Read an OBIS code from its 6 wire bytes A B C D E F.

        Raises:
            ProtocolError: ``data`` is not exactly 6 bytes (reason ``bad_obis``).
        """
        if len(data) != 6:
            raise ProtocolError(
                f"OBIS code must be 6 bytes, got {len(data)}", reason="bad_obis", offset=offset
            )
        a, b, c, d, e, f = data
        return cls(a=a, b=b, c=c, d=d, e=e, f=f)

    @classmethod
    def parse(cls, text: str) -> ObisCode:
        """Parse ``A-B:C.D.E*F`` (``*F`` optional, 255 when left out; ``&F`` also accepted).

        Raises:
            ProtocolError: the text is not an OBIS code (reason ``bad_obis``, offset 0).
        """
        match = _TEXT.fullmatch(text.strip())
        if match is None:
            raise ProtocolError(
                f"{text!r} is not an OBIS code of the form A-B:C.D.E*F", reason="bad_obis", offset=0
            )
        groups = [int(g) if g is not None else 255 for g in match.groups()]
        if any(g > 255 for g in groups):
            raise ProtocolError(
                f"{text!r} has an OBIS value group above 255", reason="bad_obis", offset=0
            )
        a, b, c, d, e, f = groups
        return cls(a=a, b=b, c=c, d=d, e=e, f=f)

    def to_bytes(self) -> bytes:
        """Return the 6 wire bytes A B C D E F."""
        return bytes((self.a, self.b, self.c, self.d, self.e, self.f))

    def __str__(self) -> str:
        return f"{self.a}-{self.b}:{self.c}.{self.d}.{self.e}*{self.f}"
