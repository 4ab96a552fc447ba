"""Wireless M-Bus radio modes (EN 13757-4) as numbered on the simulation plane.

The ``mode`` column of a frame batch holds these numbers; the carrier and
the duty-cycle limit per hour come from ERC/REC 70-03 (868.3 MHz band: 1 %,
868.95 MHz band: 0.1 %). T1 and C1 share 868.95 MHz, so they can collide
with each other and never with S1.
"""

from __future__ import annotations

from enum import IntEnum


class RadioMode(IntEnum):
    """wM-Bus mode a meter sends in."""

    S1 = 0
    T1 = 1
    C1 = 2


FREQUENCY_HZ: dict[RadioMode, float] = {
    RadioMode.S1: 868.3e6,
    RadioMode.T1: 868.95e6,
    RadioMode.C1: 868.95e6,
}
DUTY_CYCLE: dict[RadioMode, float] = {
    RadioMode.S1: 0.01,
    RadioMode.T1: 0.001,
    RadioMode.C1: 0.001,
}
