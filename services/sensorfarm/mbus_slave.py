"""One simulated wired M-Bus slave: link and application state machine (EN 13757-2/3).

A slave takes parsed master frames and returns the bytes it puts on the bus,
or None when it stays silent. What it answers:

- SND_NKE (``10 40 A CS 16``) -> ``E5``; resets the frame count state and
  restarts the readout at its first telegram. SND_NKE to 0xFD also deselects.
- REQ_UD2 (``10 5B|7B A CS 16``) -> RSP_UD, CI 0x72: the 12-byte header
  ID(4 BCD) manufacturer(2) version medium access-number status signature(2)
  and the meter's records. The access number goes up by one per new
  telegram. Frame count bit: after a reset any FCB starts a new telegram; the
  same FCB as last time repeats the last telegram byte for byte (the master
  lost it); a toggled FCB gets the next one. A readout that does not fit
  one telegram (or that exceeds ``records_per_telegram``) is split; every
  telegram but the last ends with DIF 0x1F (more records follow). The records
  are taken once per readout, so the telegrams of one readout agree.
  Frame count state is kept for REQ_UD2 only, as most meters do; selection
  and application reset clear it like SND_NKE.
- SND_UD CI 0x52 to 0xFD (selection, 8 bytes ID/manufacturer/version/medium
  with F-nibble and 0xFF wildcards) -> ``E5`` when the pattern matches, and
  the slave answers address 0xFD from then on; a pattern that does not match
  deselects it silently.
- SND_UD CI 0x51 with the record ``01 7A A`` (A in 0..250) -> ``E5``; the
  slave takes primary address A.
- SND_UD CI 0x50 (application reset, optional subcode) -> ``E5``.

Addresses: the slave's primary address, 0xFD while selected, 0xFE (broadcast,
every slave answers) and 0xFF (broadcast, commands are applied but nobody
answers and requests are ignored). Anything else -- other addresses, frames
from slaves, unsupported C or CI fields -- gets no answer, as on a real bus.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeGuard

from smtestbed.proto.mbus import (
    Ack,
    ControlFrame,
    Frame,
    LongFrame,
    Response,
    SecondaryAddress,
    ShortFrame,
    VariableData,
    decode_select,
    decode_set_primary_address,
    encode_ack,
    encode_response,
    matches,
    slave_info,
)
from smtestbed.proto.mbus.cfield import FCB, is_req_ud2, is_snd_nke, is_snd_ud, rsp_ud
from smtestbed.proto.mbus.frames import MAX_DATA
from smtestbed.proto.mbus.header import VARIABLE_HEADER_SIZE, SlaveInfo
from smtestbed.proto.mbus.requests import (
    ADDRESS_BROADCAST,
    ADDRESS_BROADCAST_REPLY,
    ADDRESS_SELECTED,
    CI_DATA_SEND,
    CI_RESET,
    CI_SELECT,
)
from smtestbed.proto.records import DataBlock, Record
from smtestbed.services._runtime.errors import ConfigError, ProtocolError

MAX_PRIMARY_ADDRESS = 250
MAX_RECORD_BYTES = MAX_DATA - VARIABLE_HEADER_SIZE - 1
"""Record bytes that fit one RSP_UD next to the header and a DIF 0x1F (239)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WiredMeter:
    """What a slave needs to know of the meter behind it.

    Attributes:
        ident: the 8 ID digits (secondary address).
        manufacturer: three-letter FLAG code.
        version: version byte.
        medium: device type byte (0x02 electricity, 0x07 water, ...).
        primary_address: primary address at power-up (0..250).
        records: returns the meter's records at the moment of the call.
    """

    ident: str
    manufacturer: str
    version: int
    medium: int
    primary_address: int
    records: Callable[[], Sequence[Record]]


def split_telegrams(
    records: Sequence[Record], *, per_telegram: int | None = None
) -> tuple[DataBlock, ...]:
    """Split records into the data blocks of consecutive telegrams.

    Each block holds at most ``per_telegram`` records and at most
    :data:`MAX_RECORD_BYTES` bytes; all blocks but the last end with DIF 0x1F.

    Raises:
        ValueError: a single record does not fit one telegram.
    """
    chunks: list[list[Record]] = [[]]
    size = 0
    for record in records:
        length = len(record.to_bytes())
        if length > MAX_RECORD_BYTES:
            raise ValueError(f"a record of {length} bytes does not fit one telegram")
        full = per_telegram is not None and len(chunks[-1]) >= per_telegram
        if chunks[-1] and (full or size + length > MAX_RECORD_BYTES):
            chunks.append([])
            size = 0
        chunks[-1].append(record)
        size += length
    last = len(chunks) - 1
    return tuple(
        DataBlock(records=tuple(chunk), more_follow=index < last)
        for index, chunk in enumerate(chunks)
    )


class MbusSlave:
    """A wired M-Bus slave in front of one meter (see the module docstring).

    Args:
        meter: identity and records of the meter.
        records_per_telegram: split a readout after this many records
            (None: only where a telegram is full).
        access_number: access number of the first telegram.
    """

    def __init__(
        self,
        meter: WiredMeter,
        *,
        records_per_telegram: int | None = None,
        access_number: int = 0,
    ) -> None:
        _check_primary(meter.primary_address)
        if records_per_telegram is not None and records_per_telegram < 1:
            raise ConfigError("must be at least 1", key="records_per_telegram")
        self._meter = meter
        self._info: SlaveInfo = slave_info(
            ident=meter.ident,
            manufacturer=meter.manufacturer,
            version=meter.version,
            medium=meter.medium,
        )
        self._per_telegram = records_per_telegram
        self._primary = meter.primary_address
        self._access = access_number & 0xFF
        self._selected = False
        self._pending: deque[DataBlock] = deque()
        self._last: bytes | None = None
        self._last_fcb: bool | None = None

    @property
    def meter(self) -> WiredMeter:
        """Return the meter behind this slave."""
        return self._meter

    @property
    def primary_address(self) -> int:
        """Return the current primary address."""
        return self._primary

    @property
    def secondary_address(self) -> SecondaryAddress:
        """Return the secondary address (ID, manufacturer, version, medium)."""
        return SecondaryAddress.of(self._info)

    @property
    def selected(self) -> bool:
        """Tell whether a selection made this slave answer address 0xFD."""
        return self._selected

    @property
    def access_number(self) -> int:
        """Return the access number the next new telegram carries."""
        return self._access

    def handle(self, frame: Frame) -> bytes | None:
        """Process one frame from the bus; return the reply bytes or None for silence."""
        if isinstance(frame, Ack):
            return None
        if _is_selection(frame):
            return self._select(frame)
        if not self._addressed(frame.a):
            return None
        if frame.a == ADDRESS_BROADCAST:
            self._dispatch(frame, broadcast=True)
            return None
        return self._dispatch(frame, broadcast=False)

    def reset_link(self) -> None:
        """Forget the frame count state and restart the readout (SND_NKE, reset)."""
        self._pending.clear()
        self._last = None
        self._last_fcb = None

    def _addressed(self, address: int) -> bool:
        if address in (self._primary, ADDRESS_BROADCAST_REPLY, ADDRESS_BROADCAST):
            return True
        return address == ADDRESS_SELECTED and self._selected

    def _dispatch(
        self, frame: ShortFrame | ControlFrame | LongFrame, *, broadcast: bool
    ) -> bytes | None:
        if isinstance(frame, ShortFrame):
            if is_snd_nke(frame.c):
                return self._snd_nke(frame.a)
            if is_req_ud2(frame.c) and not broadcast:
                return self._respond(fcb=bool(frame.c & FCB))
            return None
        if not is_snd_ud(frame.c):
            return None
        if frame.ci == CI_RESET:
            self.reset_link()
            return encode_ack()
        if isinstance(frame, LongFrame) and frame.ci == CI_DATA_SEND:
            return self._set_primary(frame)
        return None

    def _snd_nke(self, address: int) -> bytes:
        self.reset_link()
        if address == ADDRESS_SELECTED:
            self._selected = False
        return encode_ack()

    def _select(self, frame: LongFrame) -> bytes | None:
        try:
            pattern = decode_select(frame)
        except ProtocolError:
            return None
        self._selected = matches(self.secondary_address, pattern)
        if not self._selected:
            return None
        self.reset_link()
        return encode_ack()

    def _set_primary(self, frame: LongFrame) -> bytes | None:
        try:
            address = decode_set_primary_address(frame)
        except ProtocolError:
            return None
        if address > MAX_PRIMARY_ADDRESS:
            return None
        if address != self._primary:
            # a telegram kept for a repeated REQ_UD2 carries the old address: start afresh
            self.reset_link()
        self._primary = address
        return encode_ack()

    def _respond(self, *, fcb: bool) -> bytes:
        if self._last is not None and fcb == self._last_fcb:
            return self._last
        self._last = self._next_telegram()
        self._last_fcb = fcb
        return self._last

    def _next_telegram(self) -> bytes:
        if not self._pending:
            records = self._meter.records()
            self._pending.extend(split_telegrams(records, per_telegram=self._per_telegram))
        block = self._pending.popleft()
        info = dataclasses.replace(self._info, access_number=self._access)
        self._access = (self._access + 1) & 0xFF
        payload = VariableData(info=info, block=block)
        return encode_response(Response(c=rsp_ud(), a=self._primary, payload=payload))


def _is_selection(frame: Frame) -> TypeGuard[LongFrame]:
    return (
        isinstance(frame, LongFrame)
        and frame.a == ADDRESS_SELECTED
        and frame.ci == CI_SELECT
        and is_snd_ud(frame.c)
    )


def _check_primary(address: int) -> None:
    if not 0 <= address <= MAX_PRIMARY_ADDRESS:
        raise ConfigError(f"must be 0..{MAX_PRIMARY_ADDRESS}, got {address}", key="primary_address")
