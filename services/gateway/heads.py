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

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from smtestbed.proto.wmbus import Telegram
from smtestbed.proto.wmbus.errors import WrongKeyError
from smtestbed.proto.wmbus.security import BLOCK, CHECK_BYTES
from smtestbed.proto.wmbus.transport import CI_TPL_SHORT
from smtestbed.services._runtime.errors import ProtocolError

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
    return plain[:ACC_OFFSET] + plain[ACC_OFFSET + 1 : PAYLOAD_OFFSET]  # as in Heads.get


class Heads:
    """The known headers of one instance's meters."""

    __slots__ = ("_heads",)

    def __init__(self) -> None:
        self._heads: dict[bytes, Head] = {}

    def get(self, plain: bytes) -> Head | None:
        """Return the head of a telegram (without CRCs) whose header was learnt, else None."""
        return self._heads.get(plain[:ACC_OFFSET] + plain[ACC_OFFSET + 1 : PAYLOAD_OFFSET])

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


class Ciphers:
    """Mode-5 decryption with one AES block context per meter key of an instance.

    The codec's own cache keeps the contexts of the last 1,024 keys of the whole process; a
    service with thousands of instances goes through more keys than that in every receive
    window and would set up a cipher for each frame. An instance keeps its own meters'
    (bounded by :data:`MAX_HEADS`, like the heads). Not for use by several threads at once.
    """

    __slots__ = ("_contexts",)

    def __init__(self) -> None:
        self._contexts: dict[bytes, CipherContext] = {}

    def decrypt_mode5(self, key: bytes, iv: bytes, payload: bytes, blocks: int) -> bytes:
        """Return a mode-5 payload with its first ``blocks`` blocks decrypted (AES-128-CBC).

        Equal to :func:`smtestbed.proto.wmbus.security.decrypt_mode5_iv`:
        ``P_i = D_K(C_i) xor C_(i-1)``, ``C_(-1) = IV``.

        Raises:
            WrongKeyError: the key is not 16 bytes, or the plaintext lacks ``2F 2F``.
            ProtocolError: ``truncated``, the payload is shorter than ``blocks`` blocks.
        """
        size = blocks * BLOCK
        if len(payload) < size:
            raise ProtocolError(
                f"configuration says {blocks} encrypted blocks, payload has {len(payload)} bytes",
                reason="truncated",
            )
        if not size:
            raise WrongKeyError("mode 5 plaintext does not begin with 2F 2F: wrong key")
        secret = payload[:size]
        context = self._contexts.get(key)
        if context is None:
            context = self._new_context(key)
        opened = int.from_bytes(context.update(secret), "big")
        plain = (opened ^ int.from_bytes(iv + secret[: size - BLOCK], "big")).to_bytes(size, "big")
        if plain[:2] != CHECK_BYTES:
            raise WrongKeyError("mode 5 plaintext does not begin with 2F 2F: wrong key")
        return plain + payload[size:] if len(payload) > size else plain

    def __len__(self) -> int:
        return len(self._contexts)

    def _new_context(self, key: bytes) -> CipherContext:
        if len(key) != BLOCK:
            raise WrongKeyError(f"AES-128 key must be 16 bytes, got {len(key)}")
        if len(self._contexts) >= MAX_HEADS:
            self._contexts.clear()
        # ECB keeps no state between whole blocks: one context serves every frame.
        context = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
        self._contexts[bytes(key)] = context
        return context
