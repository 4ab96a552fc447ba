"""Values shared by the gateway's partitions: readings, rejections, registry entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Why measurement processing refused a frame (``gateway.frame_rejected`` events)."""

    BAD_CRC = "bad_crc"
    MALFORMED_FRAME = "malformed_frame"
    UNKNOWN_METER = "unknown_meter"
    WRONG_KEY = "wrong_key"
    BAD_MAC = "bad_mac"
    REPLAY = "replay"
    COUNTER_BACKWARDS = "counter_backwards"
    MALFORMED_RECORD = "malformed_record"
    IMPLAUSIBLE_VALUE = "implausible_value"
    SECURITY_MISMATCH = "security_mismatch"


class Taf(StrEnum):
    """Tariff use cases (TR-03109-1 Anlage VII)."""

    TAF1 = "taf1"
    TAF2 = "taf2"
    TAF6 = "taf6"
    TAF7 = "taf7"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterEntry:
    """A meter this gateway is responsible for.

    Attributes:
        meter: 8-digit identification number, as on the label.
        manufacturer: three-letter FLAG code.
        key: AES-128 key (mode 5 key or mode 7 master key); empty for mode 0.
        security: the security mode the meter must use (0, 5 or 7).
        tafs: the tariff use cases assigned.
        consumer: the consumer the readings belong to (consumer log).
        emt: the market participant that receives the TAF data.
    """

    meter: str
    manufacturer: str
    key: bytes
    security: int
    tafs: frozenset[Taf] = frozenset()
    consumer: str = ""
    emt: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Value:
    """One decoded data record of a reading, in the unit named (Wh, m^3, W, °C ...)."""

    quantity: str
    unit: str
    value: float
    storage_number: int = 0
    tariff: int = 0
    subunit: int = 0
    function: str = "instantaneous"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """A frame that passed measurement processing, ready to be stored.

    Attributes:
        meter: 8-digit identification number.
        t_sim: gateway time stamp (simulation clock) when it was received, s.
        access_number: TPL access number.
        message_counter: mode-7 message counter (0 otherwise).
        frame_digest: SHA-256 of the frame as received (stores it exactly once).
        values: the decoded records.
    """

    meter: str
    t_sim: float
    access_number: int
    message_counter: int
    frame_digest: bytes
    values: tuple[Value, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """A frame measurement processing refused."""

    reason: Reason
    message: str
    meter: str = ""
    t_sim: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterState:
    """What the gateway remembers of a meter's last accepted reading (replay, plausibility).

    Attributes:
        t_sim: time stamp of the last accepted reading, s.
        access_number: its access number.
        message_counter: its mode-7 message counter.
        counters: its counter values by (quantity, unit, storage_number, tariff, subunit).
    """

    t_sim: float
    access_number: int
    message_counter: int
    counters: dict[tuple[str, str, int, int, int], float] = field(default_factory=dict)


_STATE_SETTERS = tuple(
    MeterState.__dict__[name].__set__
    for name in ("t_sim", "access_number", "message_counter", "counters")
)


def meter_state(
    t_sim: float,
    access_number: int,
    message_counter: int,
    counters: dict[tuple[str, str, int, int, int], float],
) -> MeterState:
    """Return ``MeterState(...)`` of these fields, built without the frozen dataclass's
    ``__init__`` (which sets each field through ``object.__setattr__``): ingest builds one
    per meter of every batch, most often one per reading."""
    state = object.__new__(MeterState)
    set_t_sim, set_access, set_counter, set_counters = _STATE_SETTERS
    set_t_sim(state, t_sim)
    set_access(state, access_number)
    set_counter(state, message_counter)
    set_counters(state, counters)
    return state
