"""Telegrams of a whole population over successive rounds, for bulk runs of a gateway.

Each round every meter sends one telegram, its access number one up and its first value
(the counter) ``counter_step`` up from the round before, in meter order, one second apart;
rounds start ``period`` seconds apart.
"""

from __future__ import annotations

import numpy as np
from smtestbed.services.sensorfarm.population import Population
from smtestbed.services.sensorfarm.telegrams import build_telegrams

Sent = tuple[bytes, float, int]
"""(frame with CRCs, send time in s, the meter's row in the population)."""


def telegram_rounds(
    pop: Population,
    rounds: int,
    *,
    t0: float = 1000.0,
    period: float = 900.0,
    counter_step: float = 100.0,
) -> list[Sent]:
    """Return ``rounds`` telegrams of every meter of ``pop``, in send order."""
    out: list[Sent] = []
    for r in range(rounds):
        values = pop.values.copy()
        values[:, 0] += r * counter_step
        offsets, data = build_telegrams(
            ident=pop.ident,
            manufacturer=pop.manufacturer,
            version=pop.version,
            device_type=pop.device_type,
            kind=pop.kind,
            security_mode=pop.security,
            key=pop.key,
            access_number=(pop.access_number.astype(np.int64) + r) % 256,
            counter=pop.message_counter,
            values=values,
        )
        start = t0 + r * period
        for i in range(len(pop)):
            out.append((bytes(data[offsets[i] : offsets[i + 1]]), start + i, i))
    return out
