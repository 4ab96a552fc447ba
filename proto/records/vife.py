"""Orthogonal VIFE codes of EN 13757-3 (the VIFEs after a VIF or extension code).

Only the multiplicative correction factors (0x70..0x77: 10^(n-6), 0x7D: 10^3)
change the value; the others qualify it and appear in the description.
"""

from __future__ import annotations

_PER = ("second", "minute", "hour", "day", "week", "month", "year", "revolution/measurement")

ORTHOGONAL: dict[int, str] = {
    **{0x20 + index: f"per {name}" for index, name in enumerate(_PER)},
    0x28: "increment per input pulse on channel 0",
    0x29: "increment per input pulse on channel 1",
    0x2A: "increment per output pulse on channel 0",
    0x2B: "increment per output pulse on channel 1",
    0x2C: "per litre",
    0x2D: "per m^3",
    0x2E: "per kg",
    0x2F: "per K",
    0x30: "per kWh",
    0x31: "per GJ",
    0x32: "per kW",
    0x33: "per K*l",
    0x34: "per V",
    0x35: "per A",
    0x36: "multiplied by s",
    0x37: "multiplied by s/V",
    0x38: "multiplied by s/A",
    0x39: "start date/time of",
    0x3A: "uncorrected unit",
    0x3B: "accumulation only if positive contributions",
    0x3C: "accumulation of abs value only if negative contributions",
    0x40: "lower limit value",
    0x48: "upper limit value",
    0x41: "number of exceeds of lower limit",
    0x49: "number of exceeds of upper limit",
    0x7D: "multiplicative correction factor 10^3",
    0x7E: "future value",
    0x7F: "manufacturer-specific VIFEs follow",
}
"""Names of the orthogonal VIFE codes this package knows (extension bit cleared)."""


def orthogonal_names(codes: tuple[int, ...]) -> tuple[str, ...]:
    """Return a description for each code, up to a manufacturer-specific marker."""
    names: list[str] = []
    for code in codes:
        if 0x70 <= code <= 0x77:
            names.append(f"multiplicative correction factor 10^{code - 0x76}")
        else:
            names.append(ORTHOGONAL.get(code, f"VIFE 0x{code:02X}"))
        if code == 0x7F:
            break
    return tuple(names)


def orthogonal_exponent(codes: tuple[int, ...]) -> int:
    """Return the power of ten the correction-factor VIFEs add to the value."""
    exponent = 0
    for code in codes:
        if code == 0x7F:
            break
        if 0x70 <= code <= 0x77:
            exponent += code - 0x76
        elif code == 0x7D:
            exponent += 3
    return exponent
