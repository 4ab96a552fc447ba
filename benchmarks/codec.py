"""Benchmark the wM-Bus codec against a bare AES-128-CBC loop on the same bytes.

Run: ``.venv/bin/python benchmarks/codec.py``. Prints telegrams per second for decode+decrypt
and encode+encrypt in modes 5 and 7 (format A frames with CRCs, records not decoded) next to
a loop of plain ``cryptography`` AES-128-CBC calls over the same ciphertexts with the same
IVs (one ``Cipher(...).decryptor()`` per telegram, as a user would write it), and the ratio.

The compiled link-layer CRC check is loaded up front, as a long-running decoder does at
start-up (:func:`load_crc_kernel`), so no round pays for importing numba.

Every row cycles through the same set of distinct telegrams (several meters, each with a run
of access numbers and readings), so no layer can profit from seeing one frame over and over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from smtestbed.proto.wmbus.encoder import encode_telegram, new_telegram
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.proto.wmbus.link import load_crc_kernel
from smtestbed.proto.wmbus.security import ZERO_IV, mode5_iv
from smtestbed.proto.wmbus.telegram import Telegram, decode_telegram

KEY = bytes(range(16))
METERS = 8
ACCESS_NUMBERS = 32
Item = TypeVar("Item")


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """The telegrams of one security mode in built, on-air and ciphertext form."""

    name: str
    built: Sequence[Telegram]
    frames: Sequence[bytes]
    ciphertexts: Sequence[tuple[bytes, bytes]]  # (IV, ciphertext)


def _records(meter: int, access: int) -> bytes:
    """Return 52 bytes of DIF/VIF records whose values change with meter and access number."""
    energy = (100_000 + 977 * meter + 13 * access).to_bytes(4, "little")
    volume = (1_000 + 31 * meter + access).to_bytes(4, "little")
    one = "0403" + energy.hex() + "0413" + volume.hex() + "022b1000023b2000046d2a0b6123"
    return bytes.fromhex(one) * 2


def _case(mode: int) -> Case:
    """Build METERS x ACCESS_NUMBERS distinct telegrams of ``mode``."""
    built, frames, ciphertexts = [], [], []
    for meter in range(METERS):
        address = MeterAddress(
            manufacturer=0x15A8, ident=0x12345678 + meter, version=1, device_type=2
        )
        for access in range(ACCESS_NUMBERS):
            telegram = new_telegram(
                address=address,
                records=_records(meter, access),
                access_number=access,
                security_mode=mode,
                counter=42 + access,
            )
            frame = encode_telegram(telegram, key=KEY)
            payload = decode_telegram(frame, key=KEY, records=False).payload
            iv = mode5_iv(address, access) if mode == 5 else ZERO_IV
            built.append(telegram)
            frames.append(frame)
            ciphertexts.append((iv, payload))
    return Case(name=f"mode {mode}", built=built, frames=frames, ciphertexts=ciphertexts)


def _rate(fn: Callable[[Item], object], items: Sequence[Item], seconds: float = 0.3) -> float:
    """Return calls per second of ``fn`` cycling through ``items`` for about ``seconds``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for item in items:
            fn(item)
        count += len(items)
    return count / (time.perf_counter() - start)


def _aes_cbc(item: tuple[bytes, bytes]) -> bytes:
    iv, ciphertext = item
    op = Cipher(algorithms.AES(KEY), modes.CBC(iv)).decryptor()
    return op.update(ciphertext) + op.finalize()


def _decode(frame: bytes) -> Telegram:
    return decode_telegram(frame, key=KEY, records=False)


def _encode(telegram: Telegram) -> bytes:
    return encode_telegram(telegram, key=KEY)


def _best_rates(case: Case, rounds: int = 3) -> tuple[float, float, float]:
    """Return the best (AES loop, decode, encode) rates of ``rounds`` interleaved rounds.

    Interleaving puts the baseline and the codec under the same machine load; the best round
    drops the ones slowed by warm-up or by other processes.
    """
    best = [0.0, 0.0, 0.0]
    for _ in range(rounds):
        got = (
            _rate(_aes_cbc, case.ciphertexts),
            _rate(_decode, case.frames),
            _rate(_encode, case.built),
        )
        best = [max(old, new) for old, new in zip(best, got, strict=True)]
    return best[0], best[1], best[2]


def main() -> None:
    """Measure and print the table."""
    load_crc_kernel()
    print(f"{'case':24} {'telegrams/s':>12} {'AES loop/s':>12} {'ratio':>7}")
    for case in (_case(5), _case(7)):
        baseline, decode, encode = _best_rates(case)
        for label, rate in (("decode+decrypt", decode), ("encode+encrypt", encode)):
            row = f"{case.name} {label}"
            print(f"{row:24} {rate:12.0f} {baseline:12.0f} {rate / baseline:7.2f}")
        size, secret = len(case.frames[0]), len(case.ciphertexts[0][1])
        print(f"{case.name}: {len(case.frames)} telegrams of {size} bytes, {secret} encrypted")


if __name__ == "__main__":
    main()
