"""The gateway's HAN protocol: the WAN framing (:mod:`smtestbed.proto.wan`) with HAN operations.

Frames, requests and replies are those of :mod:`smtestbed.proto.wan`
(``uint32`` big-endian length, then a UTF-8 JSON object). Which operations a
HAN client may send depends on the role in its certificate's subject OU:

- ``DISPLAY`` (a consumer's display, interface IF_GW_CON): :data:`DISPLAY_OPS`,
  each answered with data of the display's own consumer only;
- ``TECHNICIAN`` (the service technician, IF_GW_SRV): :data:`TECHNICIAN_OPS`,
  counters only (no readings, no keys).

A refused request is answered ``{"ok": false, "error": ..., "field": ...}``
with ``field`` naming what was refused: ``role`` (operation not for this
role), ``meter`` or ``consumer`` (another consumer's data).
"""

from __future__ import annotations

__all__ = ["DISPLAY_OPS", "DISPLAY_ROLE", "TECHNICIAN_OPS", "TECHNICIAN_ROLE", "consumer_of"]

DISPLAY_ROLE = "DISPLAY"
TECHNICIAN_ROLE = "TECHNICIAN"
DISPLAY_OPS = ("meters", "readings", "latest", "taf_data", "consumer_log")
"""meters: own meters; readings {meter, t0?, t1?, limit?}; latest: last reading per own meter;
taf_data {meter?, limit?}: TAF records made of own meters; consumer_log {from_seq?, limit?}."""
TECHNICIAN_OPS = ("diagnostics",)
"""diagnostics: instance counters, registry size, LMN line and HAN/WAN counters."""

_PREFIX, _SUFFIX = "display.", ".han.test.example"


def consumer_of(common_name: str) -> str:
    """Return the consumer a display certificate's CN names, "" if it names none.

    A display's CN is ``display.<consumer>.han.test.example`` (one DNS label,
    so consumer ids of displays are lower-case letters, digits and ``-``).
    """
    if not (common_name.startswith(_PREFIX) and common_name.endswith(_SUFFIX)):
        return ""
    label = common_name[len(_PREFIX) : -len(_SUFFIX)]
    return label if label and "." not in label else ""
