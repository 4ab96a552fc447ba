"""Security errors of the wireless M-Bus codec, all :class:`ProtocolError` subclasses.

Which one a caller sees tells it what failed:

- :class:`WrongKeyError` (``wrong_key``): the key is unusable (not 16 bytes) or a check that
  only the key can fail did fail: mode-5 or unauthenticated mode-7 plaintext not beginning
  with ``2F 2F``, or the ELL payload CRC after AES-CTR.
- :class:`BadMacError` (``bad_mac``): the AFL MAC does not match (wrong key or altered bytes).
- :class:`No2F2FError` (``no_2f2f``): the MAC proved key and ciphertext right, yet the
  plaintext does not begin with ``2F 2F``: the sender encrypted malformed data.
"""

from __future__ import annotations

from smtestbed.services._runtime.errors import ProtocolError


class DecryptionError(ProtocolError):
    """An encrypted or authenticated part of a telegram failed its check."""

    default_reason = "decryption_failed"

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message, reason=self.default_reason, offset=offset)


class WrongKeyError(DecryptionError):
    """The key does not fit this telegram."""

    default_reason = "wrong_key"


class BadMacError(DecryptionError):
    """The AFL message authentication code does not match."""

    default_reason = "bad_mac"


class No2F2FError(DecryptionError):
    """Authenticated plaintext does not begin with the ``2F 2F`` check bytes."""

    default_reason = "no_2f2f"
