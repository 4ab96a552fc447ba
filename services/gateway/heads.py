"""Frame headers seen before: what measurement processing learnt from a meter's last header.

A meter sends the same link and TPL header in every telegram; only the access number
changes. When a frame's header decoded and passed the registry and security-mode checks,
its bytes (without ACC) are kept with what the checks read from them, so a later frame
with the same header bytes skips the header decode. The registry is still asked for every
frame: a head holds nothing of the registry, only what the bytes say.

Only the common shape is kept: format A telegram without CRCs, no ELL, no AFL, short TPL
header (CI 0x7A) in security mode 0 or 5. The key is ``L C M(2) A(6) CI`` and ``STS
CFG(2)``: every byte the header decode looks at except ACC. Since L is part of it, the
payload has the same size as in the frame that was decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.proto.wmbus import Telegram
from smtestbed.proto.wmbus.transport import CI_TPL_SHORT

MAX_HEADS = 16_384
"""Heads kept per instance; when full, the memory starts over (it only saves time)."""

ACC_OFFSET = 11  # L C M(2) A(6) CI, then ACC
PAYLOAD_OFFSET = 15  # ... ACC STS CFG(2), then the payload (modes 0 and 5)


@dataclass(frozen=True, slots=True)
class Head:
    """What a known header says.

    Attributes:
        meter: the meter ID (8 digits).
        manufacturer: its three-letter code.
        mode: the security mode (0 or 5).
        blocks: encrypted 16-byte blocks (mode 5, at least 1), 0 in mode 0.
        iv: ``M(2) ID(4) Ver Type`` of the link header, the first half of the mode-5 IV.
    """

    meter: str
    manufacturer: str
    mode: int
    blocks: int
    iv: bytes


def _key(plain: bytes) -> bytes:
    return plain[:ACC_OFFSET] + plain[ACC_OFFSET + 1 : PAYLOAD_OFFSET]


class Heads:
    """The known headers of one instance's meters."""

    __slots__ = ("_heads",)

    def __init__(self) -> None:
        self._heads: dict[bytes, Head] = {}

    def get(self, plain: bytes) -> Head | None:
        """Return the head of a telegram (without CRCs) whose header was learnt, else None."""
        return self._heads.get(_key(plain))

    def learn(self, plain: bytes, telegram: Telegram) -> None:
        """Keep the header of ``plain`` if it has the common shape.

        ``telegram`` is the header decode of ``plain`` that passed the registry and security
        mode checks.
        """
        tpl, address = telegram.tpl, telegram.address
        if (
            telegram.ell is not None
            or telegram.afl is not None
            or tpl is None
            or tpl.ci != CI_TPL_SHORT
            or tpl.config is None
            or tpl.security_mode not in (0, 5)
            or len(plain) < PAYLOAD_OFFSET
        ):
            return
        blocks = tpl.config.encrypted_blocks
        if tpl.security_mode == 5 and not blocks:
            return
        if len(self._heads) >= MAX_HEADS:
            self._heads.clear()
        self._heads[_key(plain)] = Head(
            address.id_text, address.manufacturer_code, tpl.security_mode, blocks, plain[2:10]
        )

    def __len__(self) -> int:
        return len(self._heads)
