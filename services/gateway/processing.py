"""Measurement processing: a received wM-Bus frame in, a reading or a rejection out.

A pure partition: no sockets, no SQLite. The registry and the last accepted state of each
meter come in as callables; the store commits what comes out. Checks, in this order (the
first that fails names the :class:`~smtestbed.services.gateway.schema.Reason`):

1. link layer, format A (``L C M(2) A(6) CRC`` then 16-byte blocks + CRC, CRCs MSB first):
   a block CRC that does not match is ``bad_crc``; a wrong L-field or a cut frame is
   ``malformed_frame``, as are ELL/AFL/TPL headers that do not parse;
2. meter ID (8 BCD digits) and manufacturer (FLAG code) in the registry, else
   ``unknown_meter`` (the caller counts and logs these; they are never stored);
3. security mode of the TPL configuration field equal to the registry's, else
   ``security_mismatch``; a mode 5/7 frame must also encrypt at least one block, so a
   meter registered for mode 5 or 7 never has a plaintext frame accepted; a mode-7 frame
   without an AFL MAC is ``bad_mac``;
4. decryption with the registry key: ``wrong_key`` when the plaintext lacks ``2F 2F`` (or the
   key is unusable), ``bad_mac`` when the mode-7 AFL MAC does not match;
5. replay: modes 0 and 5 by the access number (:data:`ACC_WINDOW`), mode 7 by the AFL message
   counter, which must rise strictly: ``replay``;
6. the data records (CI 0x72/0x7A/0x78 only), ``malformed_record``
   (:mod:`smtestbed.services.gateway.layouts` says which records become values);
7. plausibility (:class:`Plausibility`): a value outside its range, a negative counter or a
   value that is not finite is ``implausible_value``; a counter (energy, volume, mass;
   storage 0, instantaneous) below the last accepted value is ``counter_backwards``.
   A negative counter is thus implausible, not backwards.

A reading's time stamp is the caller's (simulation clock); its ``frame_digest`` is the
SHA-256 of the frame as received.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.wmbus import BadMacError, Telegram, decode_telegram
from smtestbed.proto.wmbus.crc import crc16_span
from smtestbed.proto.wmbus.fields import ident_text
from smtestbed.proto.wmbus.link import load_crc_kernel, strip_crcs_a, strip_crcs_a_batch
from smtestbed.proto.wmbus.security import ACC_IV_HALVES, mode5_iv
from smtestbed.proto.wmbus.telegram import RECORD_CIS
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.gateway.heads import ACC_OFFSET, PAYLOAD_OFFSET, Ciphers, Head, Heads
from smtestbed.services.gateway.layouts import MAX_LAYOUTS, RecordLayouts, Slot
from smtestbed.services.gateway.schema import (
    MeterEntry,
    MeterState,
    Reading,
    Reason,
    Rejection,
    Value,
    meter_state,
)
from smtestbed.services.gateway.unsafe import (
    SkippedChecks,
    open_unverified,
    strip_crcs_unchecked,
)

ACC_WINDOW = 128
"""How far ahead (mod 256) a mode 0/5 access number may be: ``1 <= (acc - last) % 256 < 128``.

Meters increment ACC by one per telegram, so a gap of up to 127 is up to 126 telegrams the
gateway missed; a distance of 128..255 is a telegram from before the last accepted one (an
old frame replayed) and 0 a repeat of it with other bytes. A meter that goes 128 or more
telegrams unheard is refused until its ACC comes round; the counter check is what stops an
old frame replayed after a full wrap.
"""

Registry = Callable[[str], MeterEntry | None]
StateLookup = Callable[[str], MeterState | None]
CounterKey = tuple[str, str, int, int, int]

COUNTER_QUANTITIES = frozenset(
    f"{base}{suffix}"
    for base in ("energy", "volume", "mass")
    for suffix in ("", "_positive", "_negative")
)
"""Quantities that only grow (totals), checked for going backwards and for sign."""

DEFAULT_RANGES: Mapping[tuple[str, str], tuple[float, float]] = MappingProxyType(
    {
        ("power", "W"): (-1e6, 1e6),
        ("volume_flow", "m^3/h"): (-1e3, 1e3),
        ("flow_temperature", "°C"): (-40.0, 200.0),
        ("return_temperature", "°C"): (-40.0, 200.0),
        ("external_temperature", "°C"): (-60.0, 80.0),
        ("temperature_difference", "K"): (-200.0, 200.0),
    }
)
"""Allowed (low, high) per (quantity, unit): household to small-commercial meters."""

_FORMAT_A_HEADER = 12  # L C M(2) A(6) CRC(2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plausibility:
    """Limits a reading's values must keep.

    Attributes:
        counters: quantities that must not be negative nor go backwards.
        ranges: allowed (low, high) per (quantity, unit); quantities not named are not checked.
    """

    counters: frozenset[str] = COUNTER_QUANTITIES
    ranges: Mapping[tuple[str, str], tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_RANGES)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOutcome:
    """What one :meth:`Pipeline.process` call produced.

    Attributes:
        accepted: readings to store, in frame order.
        rejected: refused frames, in frame order.
        duplicates: byte-identical copies of a meter's last accepted frame (e.g. heard by two
            receivers), dropped without a reading or a rejection.
    """

    accepted: list[Reading]
    rejected: list[Rejection]
    duplicates: int = 0


class _RefusedError(Exception):
    """Internal: a check failed; carries what the :class:`Rejection` says."""

    def __init__(self, reason: Reason, message: str, meter: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.meter = meter


# -- checks -------------------------------------------------------------------------------


def _unframe(frame: bytes) -> bytes:
    """Check and strip the format A CRCs.

    Raises:
        _RefusedError: ``bad_crc`` or ``malformed_frame``, naming the meter when block 1
            (the link header) carries a valid CRC.
    """
    try:
        return strip_crcs_a(frame)
    except ProtocolError as exc:
        reason = Reason.BAD_CRC if exc.reason == "bad_crc" else Reason.MALFORMED_FRAME
        raise _RefusedError(reason, f"link layer: {exc}", _header_meter(frame)) from exc


def _header_meter(frame: bytes) -> str:
    """Return the link-layer meter ID when block 1 is intact, else ""."""
    if len(frame) < _FORMAT_A_HEADER:
        return ""
    if frame[10] << 8 | frame[11] != crc16_span(frame, 0, 10):
        return ""
    return ident_text(int.from_bytes(frame[4:8], "little"))


def _headers(plain: bytes, key: bytes | None = None) -> Telegram:
    """Decode link, ELL, AFL and TPL headers (and with ``key`` open the payload).

    Raises:
        _RefusedError: ``malformed_frame``, ``wrong_key`` or ``bad_mac``.
    """
    try:
        return decode_telegram(plain, key=key, crcs=False, records=False)
    except ProtocolError as exc:
        raise _RefusedError(_reason(exc), f"{exc}") from exc


def _reason(exc: ProtocolError) -> Reason:
    """Map a codec error to a rejection reason (any other key check failure is wrong_key)."""
    if isinstance(exc, BadMacError):
        return Reason.BAD_MAC
    if exc.reason in ("wrong_key", "no_2f2f", "decryption_failed"):
        return Reason.WRONG_KEY
    if exc.reason == "bad_crc":  # the ELL payload CRC of an unencrypted ELL
        return Reason.BAD_CRC
    return Reason.MALFORMED_FRAME


def _entry(telegram: Telegram, registry: Registry) -> tuple[str, MeterEntry]:
    """Return the meter ID and its registry entry.

    Raises:
        _RefusedError: ``unknown_meter`` for an ID not registered or another manufacturer.
    """
    address = telegram.address
    meter = address.id_text
    entry = registry(meter)
    if entry is None:
        raise _RefusedError(Reason.UNKNOWN_METER, f"meter {meter} is not registered", meter)
    if entry.manufacturer != address.manufacturer_code:
        raise _RefusedError(
            Reason.UNKNOWN_METER,
            f"meter {meter} is registered for {entry.manufacturer},"
            f" frame says {address.manufacturer_code}",
            meter,
        )
    return meter, entry


def _check_mode(telegram: Telegram, entry: MeterEntry) -> None:
    """Raise ``security_mismatch`` unless the frame uses the registered mode for real."""
    tpl = telegram.tpl
    mode = telegram.security.mode if tpl is None else tpl.security_mode
    if mode != entry.security:
        raise _RefusedError(
            Reason.SECURITY_MISMATCH,
            f"frame uses security mode {mode}, meter is registered for mode {entry.security}",
        )
    if mode and tpl is not None and tpl.config is not None and not tpl.config.encrypted_blocks:
        raise _RefusedError(Reason.SECURITY_MISMATCH, f"mode {mode} frame encrypts no block")
    if mode == 7 and (telegram.afl is None or telegram.afl.mac is None):
        raise _RefusedError(Reason.BAD_MAC, "mode 7 frame carries no AFL MAC")


def _open(
    telegram: Telegram, plain: bytes, entry: MeterEntry, ciphers: Ciphers
) -> tuple[bytes, int, int]:
    """Return the plaintext APL, the access number and the message counter (mode 7; else 0).

    Mode 0 and 5 go on from the header decode (mode 5 decrypts with the instance's AES
    context of the key, the one later frames of the meter use); mode 7 and ELL frames
    decode again with the key (KDF, MAC, CBC in the codec).
    """
    tpl = telegram.tpl
    if tpl is not None and telegram.ell is None and tpl.security_mode in (0, 5):
        access = tpl.access_number or 0
        if tpl.security_mode == 0:
            return telegram.payload, access, 0
        blocks = 0 if tpl.config is None else tpl.config.encrypted_blocks
        iv = mode5_iv(telegram.address, access)
        try:
            return ciphers.decrypt_mode5(entry.key, iv, telegram.payload, blocks), access, 0
        except ProtocolError as exc:
            raise _RefusedError(_reason(exc), f"{exc}") from exc
    opened = _headers(plain, entry.key)
    if opened.application_data is None or opened.tpl is None:
        raise _RefusedError(Reason.MALFORMED_FRAME, "payload could not be opened")
    counter = opened.afl.counter if opened.afl is not None else None
    return opened.application_data, opened.tpl.access_number or 0, counter or 0


def _check_fresh(state: MeterState | None, mode: int, access: int, counter: int) -> None:
    """Raise ``replay`` unless ACC (mode 0/5) or MCR (mode 7) is newer than the state's."""
    if state is None:
        return
    if mode == 7:
        if counter <= state.message_counter:
            raise _RefusedError(
                Reason.REPLAY,
                f"message counter {counter} is not above the last accepted {state.message_counter}",
            )
        return
    ahead = (access - state.access_number) % 256
    if ahead == 0:
        raise _RefusedError(
            Reason.REPLAY, f"access number {access} repeats the last accepted with other bytes"
        )
    if ahead >= ACC_WINDOW:
        raise _RefusedError(
            Reason.REPLAY,
            f"access number {access} is older than the last accepted {state.access_number}",
        )


class _Kind(Protocol):
    """What a value, or the layout slot it is read through, says it measures."""

    @property
    def quantity(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def storage_number(self) -> int: ...
    @property
    def tariff(self) -> int: ...
    @property
    def subunit(self) -> int: ...
    @property
    def function(self) -> str: ...


_Rules = tuple[
    tuple[tuple[tuple[float, float] | None, bool], ...], tuple[tuple[int, CounterKey], ...]
]
"""The limits of a reading's values: per value its (low, high) range if any and whether it is
a counter; then, for each counter of storage 0, instantaneous, its index and the state key
of its last accepted value (which it must not go below)."""


def _rules(kinds: Iterable[_Kind], limits: Plausibility) -> _Rules:
    """Return the limits of values of these kinds, in order."""
    ranges, counters = limits.ranges, limits.counters
    checks = []
    steady = []
    for index, kind in enumerate(kinds):
        quantity = kind.quantity
        counter = quantity in counters
        checks.append((ranges.get((quantity, kind.unit)), counter))
        if counter and not kind.storage_number and kind.function == "instantaneous":
            steady.append((index, (quantity, kind.unit, 0, kind.tariff, kind.subunit)))
    return tuple(checks), tuple(steady)


def _check_values(
    values: tuple[Value, ...], state: MeterState | None, limits: Plausibility
) -> None:
    """Raise ``implausible_value`` or ``counter_backwards`` for a value out of line."""
    _check_rules(values, _rules(values, limits), state)


def _check_rules(values: tuple[Value, ...], rules: _Rules, state: MeterState | None) -> None:
    """Do what :func:`_check_values` does, with the values' :func:`_rules` given."""
    checks, steady = rules
    isfinite = math.isfinite
    # One rule per value: strict=True would cost a tenth of a microsecond per reading.
    for value, (bounds, counter) in zip(values, checks, strict=False):
        number = value.value
        if not isfinite(number) or (bounds is not None and not bounds[0] <= number <= bounds[1]):
            raise _RefusedError(
                Reason.IMPLAUSIBLE_VALUE, f"{value.quantity} {number} {value.unit} is out of range"
            )
        if counter and number < 0:
            raise _RefusedError(
                Reason.IMPLAUSIBLE_VALUE,
                f"counter {value.quantity} is negative: {number} {value.unit}",
            )
    if state is None or not steady:
        return
    last_values = state.counters
    for index, key in steady:
        last = last_values.get(key)
        if last is not None:
            value = values[index]
            if value.value < last:
                raise _RefusedError(
                    Reason.COUNTER_BACKWARDS,
                    f"{value.quantity} {value.value} {value.unit} is below the last accepted"
                    f" {last}",
                )


# -- frames and batches -------------------------------------------------------------------

LastDigest = Callable[[str], bytes | None]


def _open_head(
    head: Head, plain: bytes, entry: MeterEntry, ciphers: Ciphers
) -> tuple[bytes, int, int]:
    """Return what :func:`_open` returns for a frame whose header is ``head`` (mode 0 or 5)."""
    access = plain[ACC_OFFSET]
    payload = plain[PAYLOAD_OFFSET:]
    if not head.mode:
        return payload, access, 0
    iv = head.iv + ACC_IV_HALVES[access]
    try:
        return ciphers.decrypt_mode5(entry.key, iv, payload, head.blocks), access, 0
    except ProtocolError as exc:
        raise _RefusedError(_reason(exc), f"{exc}") from exc


def _open_any(
    header: Head | Telegram, plain: bytes, entry: MeterEntry, ciphers: Ciphers
) -> tuple[bytes, int, int]:
    """Return what :func:`_open` returns, through :func:`_open_head` for a known header."""
    if isinstance(header, Head):
        return _open_head(header, plain, entry, ciphers)
    return _open(header, plain, entry, ciphers)


_MAC_REASONS = (Reason.WRONG_KEY, Reason.BAD_MAC)


def _stand_in(telegram: Telegram) -> MeterEntry:
    """Return the registry entry an unregistered meter gets with ``unknown_meter`` off."""
    tpl = telegram.tpl
    mode = telegram.security.mode if tpl is None else tpl.security_mode
    address = telegram.address
    return MeterEntry(
        meter=address.id_text, manufacturer=address.manufacturer_code, key=b"", security=mode
    )


_Open = Callable[[Head | Telegram, bytes, MeterEntry, Ciphers], tuple[bytes, int, int]]
_Fresh = Callable[[MeterState | None, int, int, int], None]
_Plausible = Callable[[tuple[Value, ...], _Rules, MeterState | None], None]


class _Processor:
    """The checks of one frame against a registry, meter states and limits.

    The limits of each record layout's values are worked out once per layout (``limits``
    is not to change under a processor).
    """

    __slots__ = (
        "checked",
        "ciphers",
        "fresh",
        "heads",
        "layouts",
        "limits",
        "open",
        "plausible",
        "registry",
        "rules",
        "skipped",
        "state",
    )

    def __init__(
        self,
        registry: Registry,
        state: StateLookup,
        limits: Plausibility,
        layouts: RecordLayouts,
        skipped: SkippedChecks | None = None,
    ) -> None:
        self.registry = registry
        self.state = state
        self.limits = limits
        self.layouts = layouts
        self.skipped = skipped if skipped is not None else SkippedChecks()  # test-only
        self.heads = Heads()
        self.ciphers = Ciphers()
        self.checked: MeterState | None = None  # the state the last accepted frame met
        self.rules: dict[int, tuple[tuple[Slot, ...], _Rules]] = {}
        # A check that may be switched off goes through its method below; the others are
        # called as they are.
        names = self.skipped.names
        self.open: _Open = self._open if "mac" in names else _open_any
        self.fresh: _Fresh = self._fresh if "replay" in names else _check_fresh
        self.plausible: _Plausible = (
            self._plausible if "counter_backwards" in names else _check_rules
        )

    def run(
        self,
        frame: bytes,
        t_sim: float,
        digest: bytes,
        last: LastDigest | None,
        plain: bytes | None = None,
    ) -> Reading | Rejection | None:
        """Check one frame; None for a byte-identical copy of the meter's last accepted frame.

        ``plain`` is the frame without CRCs when the caller has checked them already.
        """
        meter = ""
        try:
            plain = self._unframe(frame) if plain is None else plain
            meter, entry, header = self._identify(plain)
            if last is not None and last(meter) == digest:
                return None
            apl, access, counter = self.open(header, plain, entry, self.ciphers)
            state = self.state(meter)
            self.fresh(state, entry.security, access, counter)
            values, rules = self._values(header, apl)
            self.plausible(values, rules, state)
        except _RefusedError as refused:
            return Rejection(
                reason=refused.reason,
                message=refused.message,
                meter=refused.meter or meter,
                t_sim=t_sim,
            )
        self.checked = state
        return _reading(meter, t_sim, access, counter, digest, values)

    def _identify(self, plain: bytes) -> tuple[str, MeterEntry, Head | Telegram]:
        """Return the meter, its registry entry and its header (known before or decoded).

        Raises:
            _RefusedError: from the header decode, the registry or the security-mode check.
        """
        head = self.heads.get(plain)
        if head is not None:
            meter = head.meter
            entry = self.registry(meter)
            # The entry passes the checks the head's header passed before:
            if (
                entry is not None
                and entry.security == head.mode
                and entry.manufacturer == head.manufacturer
            ):
                return meter, entry, head
        telegram = _headers(plain)
        meter, entry = self._entry(telegram)
        try:
            if telegram.tpl is None:  # behind an ELL that only the key opens
                telegram = _headers(plain, entry.key)
            _check_mode(telegram, entry)
        except _RefusedError as refused:
            refused.meter = refused.meter or meter
            raise
        self.heads.learn(plain, telegram)
        return meter, entry, telegram

    def _values(self, header: Head | Telegram, apl: bytes) -> tuple[tuple[Value, ...], _Rules]:
        """Return the values of the data records in ``apl`` and the limits of each."""
        if not isinstance(header, Head):
            tpl = header.tpl
            if tpl is None or tpl.ci not in RECORD_CIS:
                ci = "none" if tpl is None else f"0x{tpl.ci:02X}"
                raise _RefusedError(Reason.MALFORMED_RECORD, f"CI {ci} carries no data records")
        try:
            values, slots = self.layouts.read(apl)
        except ProtocolError as exc:
            raise _RefusedError(Reason.MALFORMED_RECORD, f"{exc}") from exc
        known = self.rules.get(id(slots))
        if known is not None and known[0] is slots:
            return values, known[1]
        rules = _rules(slots, self.limits)
        if len(self.rules) >= MAX_LAYOUTS:
            self.rules.clear()
        self.rules[id(slots)] = (slots, rules)
        return values, rules

    # The five checks below may be switched off (unsafe_skip_checks): only for tests.

    def _unframe(self, frame: bytes) -> bytes:
        try:
            return _unframe(frame)
        except _RefusedError as refused:
            if refused.reason is not Reason.BAD_CRC or "crc" not in self.skipped.names:
                raise
            try:
                plain = strip_crcs_unchecked(frame)
            except ProtocolError:
                raise refused from None
            self.skipped.skips("crc")
            return plain

    def _open(
        self, header: Head | Telegram, plain: bytes, entry: MeterEntry, ciphers: Ciphers
    ) -> tuple[bytes, int, int]:
        try:
            return _open_any(header, plain, entry, ciphers)
        except _RefusedError as refused:
            if refused.reason not in _MAC_REASONS or "mac" not in self.skipped.names:
                raise
            try:
                opened = open_unverified(plain, entry.key)
            except ProtocolError:
                raise refused from None
            self.skipped.skips("mac")
            return opened

    def _entry(self, telegram: Telegram) -> tuple[str, MeterEntry]:
        try:
            return _entry(telegram, self.registry)
        except _RefusedError:
            meter = telegram.address.id_text
            if self.registry(meter) is not None or not self.skipped.skips("unknown_meter"):
                raise
            return meter, _stand_in(telegram)

    def _fresh(self, state: MeterState | None, mode: int, access: int, counter: int) -> None:
        try:
            _check_fresh(state, mode, access, counter)
        except _RefusedError:
            if not self.skipped.skips("replay"):
                raise

    def _plausible(
        self, values: tuple[Value, ...], rules: _Rules, state: MeterState | None
    ) -> None:
        try:
            _check_rules(values, rules, state)
        except _RefusedError as refused:
            if refused.reason is not Reason.COUNTER_BACKWARDS:
                raise
            if not self.skipped.skips("counter_backwards"):
                raise


_READING_SETTERS = tuple(
    Reading.__dict__[name].__set__
    for name in ("meter", "t_sim", "access_number", "message_counter", "frame_digest", "values")
)


def _reading(
    meter: str, t_sim: float, access: int, counter: int, digest: bytes, values: tuple[Value, ...]
) -> Reading:
    # Fills the slots directly: the frozen dataclass __init__ goes through
    # object.__setattr__ per field, about 1 us more per accepted frame.
    reading = object.__new__(Reading)
    set_meter, set_t_sim, set_access, set_counter, set_digest, set_values = _READING_SETTERS
    set_meter(reading, meter)
    set_t_sim(reading, t_sim)
    set_access(reading, access)
    set_counter(reading, counter)
    set_digest(reading, digest)
    set_values(reading, values)
    return reading


_SHARED_LAYOUTS = RecordLayouts()


def process_frame(
    frame: bytes,
    *,
    t_sim: float,
    registry: Registry,
    state: StateLookup,
    limits: Plausibility,
) -> Reading | Rejection:
    """Check one received frame (format A, with CRCs) and return a reading or a rejection.

    Without a memory of accepted frames, a byte-identical copy of the meter's last accepted
    frame is refused as ``replay`` here; :class:`Pipeline` recognises such copies.

    Args:
        frame: the frame as received.
        t_sim: the gateway's time stamp for it (simulation clock), s.
        registry: the registry entry of a meter ID, None when not registered.
        state: the state after the meter's last accepted reading, None before the first.
        limits: the plausibility limits.
    """
    data = bytes(frame)
    digest = hashlib.sha256(data).digest()
    result = _Processor(registry, state, limits, _SHARED_LAYOUTS).run(data, t_sim, digest, None)
    if result is None:  # pragma: no cover - only a memory of accepted frames gives None
        raise AssertionError("a copy was found without a memory of accepted frames")
    return result


def next_state(previous: MeterState | None, reading: Reading) -> MeterState:
    """Return a meter's state after ``reading`` was accepted on top of ``previous``.

    ``counters`` keeps the last instantaneous value per (quantity, unit, storage number,
    tariff, subunit); a key the reading lacks keeps its earlier value.
    """
    counters = dict(previous.counters) if previous is not None else {}
    for value in reading.values:
        if value.function == "instantaneous":
            key = (value.quantity, value.unit, value.storage_number, value.tariff, value.subunit)
            counters[key] = value.value
    # the overlay builds one state per frame of a meter heard twice before a commit
    return meter_state(reading.t_sim, reading.access_number, reading.message_counter, counters)


class _Pending:
    """An accepted reading not yet committed, on top of the state it was checked against."""

    __slots__ = ("_after", "before", "reading")

    def __init__(self, reading: Reading, before: MeterState | None) -> None:
        self.reading = reading
        self.before = before
        self._after: MeterState | None = None

    @property
    def state(self) -> MeterState:
        """Return the meter's state after the reading (computed once, when first asked)."""
        if self._after is None:
            self._after = next_state(self.before, self.reading)
        return self._after


class Pipeline:
    """Measurement processing of frame batches, with the not yet committed readings in view.

    Readings accepted earlier in a batch (or in a batch whose transaction has not committed
    yet) are an overlay on the store's meter states, so two frames of one meter in one batch
    are checked against each other. After the store's transaction the caller calls
    :meth:`commit_done` with the readings it committed, or :meth:`discard` when it failed.
    """

    def __init__(
        self,
        registry: Registry,
        state: StateLookup,
        limits: Plausibility,
        skipped: SkippedChecks | None = None,
    ) -> None:
        load_crc_kernel()
        self._state = state
        self._pending: dict[str, _Pending] = {}
        self._committed: dict[str, bytes] = {}
        self._processor = _Processor(registry, self._current, limits, RecordLayouts(), skipped)

    def _current(self, meter: str) -> MeterState | None:
        pending = self._pending.get(meter)
        return pending.state if pending is not None else self._state(meter)

    def _last_digest(self, meter: str) -> bytes | None:
        pending = self._pending.get(meter)
        return pending.reading.frame_digest if pending is not None else self._committed.get(meter)

    def process(self, frames: Iterable[tuple[bytes, float]]) -> BatchOutcome:
        """Check each (frame, t_sim) in order; accepted readings join the overlay."""
        accepted: list[Reading] = []
        rejected: list[Rejection] = []
        copies = 0
        processor, pending = self._processor, self._pending
        run, last, sha256 = processor.run, self._last_digest, hashlib.sha256
        batch = [(bytes(frame), t_sim) for frame, t_sim in frames]
        plains = strip_crcs_a_batch([data for data, _ in batch])
        for (data, t_sim), plain in zip(batch, plains, strict=True):
            result = run(data, t_sim, sha256(data).digest(), last, plain)
            if result is None:
                copies += 1
            elif isinstance(result, Reading):
                accepted.append(result)
                pending[result.meter] = _Pending(result, processor.checked)
            else:
                rejected.append(result)
        return BatchOutcome(accepted=accepted, rejected=rejected, duplicates=copies)

    def commit_done(self, readings: Iterable[Reading]) -> None:
        """Forget the overlay of readings the store has committed (it now has their state)."""
        for reading in readings:
            self._committed[reading.meter] = reading.frame_digest
            pending = self._pending.get(reading.meter)
            if pending is not None and pending.reading.frame_digest == reading.frame_digest:
                del self._pending[reading.meter]

    def discard(self) -> None:
        """Drop the whole overlay: the store's transaction failed, nothing of it was stored."""
        self._pending.clear()


def received_frames(batch: FrameBatch) -> Iterator[tuple[bytes, float]]:
    """Yield (frame, t_rx) of a ``sim.received`` batch, t_rx (s) being the receive time.

    Raises:
        ProtocolError: the batch has no ``t_rx`` column, or a receive time is not finite
            (checked for the whole batch before the first frame is handed out).
    """
    times = batch.columns.get("t_rx")
    if times is None:
        raise ProtocolError("sim.received batch lacks the t_rx column", reason="batch_column")
    values = [float(t) for t in times]
    bad = next((i for i, t in enumerate(values) if not math.isfinite(t)), None)
    if bad is not None:
        raise ProtocolError(f"t_rx of frame {bad} is {values[bad]}", reason="batch_value")
    for index, frame in enumerate(batch):
        yield bytes(frame), values[index]


def check_reading(
    reading: Reading, *, mode: int, state: MeterState | None, limits: Plausibility
) -> Rejection | None:
    """Apply the replay and plausibility checks to a reading built without a wM-Bus frame.

    The wired LMN drivers decode their telegrams themselves and use this for the same rules
    frames meet here: ``mode`` 7 requires a rising ``message_counter``, modes 0 and 5 an
    access number in the window above the state's; then the value checks.

    Returns:
        None when the reading passes, else its rejection.
    """
    try:
        _check_fresh(state, mode, reading.access_number, reading.message_counter)
        _check_values(reading.values, state, limits)
    except _RefusedError as refused:
        return Rejection(
            reason=refused.reason, message=refused.message, meter=reading.meter, t_sim=reading.t_sim
        )
    return None
