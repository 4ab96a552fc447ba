"""Readouts of the wired LMN drivers as readings: checked like frames, stored, logged.

Wired M-Bus RSP_UD telegrams and SML files are not wM-Bus frames, so measurement
processing's frame path does not take them. A readout is turned into a
:class:`~smtestbed.services.gateway.schema.Reading` here and then meets the same rules:

- the meter ID and manufacturer must be registered (``unknown_meter``);
- the meter must be registered for security mode 0, since these readouts are plaintext
  (``security_mismatch``);
- records become values through the same record layouts as wireless frames (CI 0x72
  only; fixed data CI 0x73 and application errors are ``malformed_record``);
- replay and plausibility through :func:`processing.check_reading`: M-Bus by the access
  number of the readout's last telegram, SML by the sensor's seconds index
  (``actSensorTime``), which must rise like a mode-7 message counter.

A reading's ``frame_digest`` is the SHA-256 of its telegrams as received, concatenated, so
a readout is stored once. A meter that stops answering is not a rejected frame: it is a
system-log entry ``meter_missing`` (:func:`report_missing`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from smtestbed.proto.mbus import Response, VariableData
from smtestbed.proto.records import encode_records
from smtestbed.proto.sml import GetListResponse, ListEntry, SmlFile
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.gateway.instance import GatewayInstance, IngestResult
from smtestbed.services.gateway.layouts import RecordLayouts
from smtestbed.services.gateway.processing import Plausibility, check_reading, next_state
from smtestbed.services.gateway.schema import MeterEntry, MeterState, Reading, Reason, Rejection
from smtestbed.services.gateway.schema import Value as ReadingValue

SML_UNITS = {30: "Wh", 27: "W"}
"""DLMS unit codes of the SML values taken: 30 Wh, 27 W."""
_SML_QUANTITIES = {(1, 8): "energy", (2, 8): "energy_negative", (16, 7): "power"}
"""Quantity per OBIS (C, D) of medium 1 (electricity); E is the tariff (0 = total)."""
_SECONDS_MODE = 7  # replay rule of check_reading: a strictly rising counter


@dataclass(frozen=True, slots=True, kw_only=True)
class Readout:
    """The RSP_UD telegrams one meter sent for one readout.

    Attributes:
        frames: each telegram as received (``68 L L 68 ... 16``).
        responses: each telegram decoded, in the same order.
    """

    frames: tuple[bytes, ...]
    responses: tuple[Response, ...]


class RefusedError(Exception):
    """A readout broke a rule; carries what its :class:`Rejection` says."""

    def __init__(self, reason: Reason, message: str, meter: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.meter = meter

    def rejection(self, t_sim: float) -> Rejection:
        """Return the rejection this refusal stands for."""
        return Rejection(reason=self.reason, message=str(self), meter=self.meter, t_sim=t_sim)


def _registered(instance: GatewayInstance, meter: str, manufacturer: str) -> MeterEntry:
    entry = instance.registry.get(meter)
    if entry is None:
        raise RefusedError(Reason.UNKNOWN_METER, f"meter {meter} is not registered", meter)
    if entry.manufacturer != manufacturer:
        raise RefusedError(
            Reason.UNKNOWN_METER,
            f"meter {meter} is registered for {entry.manufacturer}, readout says {manufacturer}",
            meter,
        )
    if entry.security != 0:
        raise RefusedError(
            Reason.SECURITY_MISMATCH,
            f"wired readout is plaintext, meter is registered for mode {entry.security}",
            meter,
        )
    return entry


def _variable(readout: Readout) -> list[VariableData]:
    payloads = [response.payload for response in readout.responses]
    out = [p for p in payloads if isinstance(p, VariableData)]
    if not payloads or len(out) != len(payloads):
        kinds = ", ".join(type(p).__name__ for p in payloads) or "nothing"
        raise RefusedError(Reason.MALFORMED_RECORD, f"readout holds {kinds}, not variable data")
    idents = {p.info.ident for p in out}
    if len(idents) != 1:
        raise RefusedError(Reason.MALFORMED_FRAME, f"telegrams of several meters: {idents}")
    return out


def mbus_reading(
    instance: GatewayInstance, readout: Readout, layouts: RecordLayouts, *, t_sim: float
) -> Reading:
    """Return the reading of an M-Bus readout (all telegrams' values in order).

    Raises:
        RefusedError: the readout breaks a rule of the module docstring.
    """
    payloads = _variable(readout)
    info = payloads[0].info
    _registered(instance, info.ident, info.manufacturer)
    values: list[ReadingValue] = []
    for payload in payloads:
        try:
            values += layouts.values(encode_records(payload.block))
        except ProtocolError as exc:
            raise RefusedError(Reason.MALFORMED_RECORD, str(exc), info.ident) from exc
    return Reading(
        meter=info.ident,
        t_sim=t_sim,
        access_number=payloads[-1].info.access_number,
        message_counter=0,
        frame_digest=hashlib.sha256(b"".join(readout.frames)).digest(),
        values=tuple(values),
    )


def sml_meter(server_id: bytes) -> tuple[str, str]:
    """Return (meter, manufacturer) of a DIN 43863-5 server ID.

    Layout (10 bytes): ``0A`` medium(1) manufacturer(3 ASCII) fabrication block(1)
    fabrication number(4, big-endian); the meter is its last 8 decimal digits.

    Raises:
        RefusedError: ``unknown_meter`` for another layout.
    """
    if len(server_id) != 10 or not server_id[2:5].isalpha():
        raise RefusedError(Reason.UNKNOWN_METER, f"server ID {server_id.hex()} is not DIN 43863-5")
    number = int.from_bytes(server_id[6:10], "big") % 10**8
    return f"{number:08d}", server_id[2:5].decode("ascii").upper()


def _sml_value(entry: ListEntry) -> ReadingValue | None:
    obis, raw = entry.obj_name, entry.value
    quantity = _SML_QUANTITIES.get((obis.c, obis.d)) if obis.a == 1 else None
    unit = SML_UNITS.get(entry.unit or -1)
    number = getattr(raw, "value", None)
    if quantity is None or unit is None or not isinstance(number, int):
        return None
    scaled = Decimal(number).scaleb(entry.scaler or 0)
    return ReadingValue(quantity=quantity, unit=unit, value=float(scaled), tariff=obis.e)


def sml_readings(
    instance: GatewayInstance, sml: SmlFile, raw: bytes, *, t_sim: float
) -> list[Reading]:
    """Return a reading per GetList.Res of an SML file (energy Wh, power W values).

    Raises:
        RefusedError: the list's meter is not registered or it has no sensor time.
    """
    out = []
    lists = [m.body for m in sml.messages if isinstance(m.body, GetListResponse)]
    for index, body in enumerate(lists):
        meter, manufacturer = sml_meter(body.server_id)
        _registered(instance, meter, manufacturer)
        if body.act_sensor_time is None:
            raise RefusedError(Reason.MALFORMED_RECORD, "SML list has no sensor time", meter)
        values = tuple(v for e in body.entries if (v := _sml_value(e)) is not None)
        digest = hashlib.sha256(raw + index.to_bytes(2, "big")).digest()
        out.append(
            Reading(
                meter=meter,
                t_sim=t_sim,
                access_number=0,
                message_counter=body.act_sensor_time.value.value,
                frame_digest=digest,
                values=values,
            )
        )
    return out


class WiredIngest:
    """Check readings of one instance against its stored meter states and store them.

    Args:
        instance: the gateway instance the readings belong to.
        limits: plausibility limits (default: measurement processing's).
    """

    def __init__(self, instance: GatewayInstance, limits: Plausibility | None = None) -> None:
        self.instance = instance
        self.limits = limits or Plausibility()
        self.layouts = RecordLayouts()

    def commit(
        self,
        readings: Sequence[Reading],
        rejections: Sequence[Rejection] = (),
        *,
        sml: bool = False,
    ) -> IngestResult:
        """Check ``readings`` in order (replay, plausibility), store the accepted, log all."""
        accepted: list[Reading] = []
        refused = list(rejections)
        overlay: dict[str, MeterState | None] = {}
        for reading in readings:
            meter = reading.meter
            state = overlay[meter] if meter in overlay else self.instance.store.state(meter)
            mode = _SECONDS_MODE if sml else 0
            rejection = check_reading(reading, mode=mode, state=state, limits=self.limits)
            if rejection is None:
                accepted.append(reading)
                overlay[meter] = next_state(state, reading)
            else:
                refused.append(rejection)
        return self.instance.ingest_readings(accepted, refused)


def report_missing(
    instance: GatewayInstance, meter: str, *, line: str, reason: str, attempts: int, t_sim: float
) -> None:
    """Write the system-log entry ``meter_missing`` for a meter that did not answer."""
    instance.logs.system.append(
        "meter_missing",
        {"meter": meter, "line": line, "reason": reason, "attempts": attempts},
        t_sim=t_sim,
    )
