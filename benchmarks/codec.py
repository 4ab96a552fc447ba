"""Benchmark the wM-Bus codec against a bare AES-128-CBC loop on the same bytes.

Run: ``.venv/bin/python benchmarks/codec.py``. Prints telegrams per second for decode+decrypt
and encode+encrypt in modes 5 and 7 (format A frames with CRCs, records not decoded) next to
a loop of plain ``cryptography`` AES-128-CBC calls over the same ciphertext, and the ratio.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from smtestbed.proto.wmbus.encoder import encode_telegram, new_telegram
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.proto.wmbus.security import mode5_iv
from smtestbed.proto.wmbus.telegram import Telegram, decode_telegram

KEY = bytes(range(16))
METER = MeterAddress(manufacturer=0x15A8, ident=0x12345678, version=1, device_type=2)
RECORDS = bytes.fromhex("0403a08601000413e8030000022b1000023b2000046d2a0b6123") * 2


def _rate(fn: Callable[[], object], seconds: float = 0.6) -> float:
    """Return calls per second of ``fn`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(200):
            fn()
        count += 200
    return count / (time.perf_counter() - start)


def _aes_loop(ciphertext: bytes, iv: bytes) -> Callable[[], bytes]:
    def run() -> bytes:
        op = Cipher(algorithms.AES(KEY), modes.CBC(iv)).decryptor()
        return op.update(ciphertext) + op.finalize()

    return run


def _cases() -> list[tuple[str, Telegram, bytes, bytes]]:
    """Return (name, telegram, frame, ciphertext) for modes 5 and 7."""
    out = []
    for mode in (5, 7):
        built = new_telegram(
            address=METER, records=RECORDS, access_number=7, security_mode=mode, counter=42
        )
        frame = encode_telegram(built, key=KEY)
        telegram = decode_telegram(frame, key=KEY, records=False)
        out.append((f"mode {mode}", built, frame, telegram.payload))
    return out


def main() -> None:
    """Measure and print the table."""
    print(f"{'case':24} {'telegrams/s':>12} {'AES loop/s':>12} {'ratio':>7}")
    for name, built, frame, ciphertext in _cases():
        baseline = _rate(_aes_loop(ciphertext, mode5_iv(METER, 7)))
        rows = (
            ("decode+decrypt", lambda f=frame: decode_telegram(f, key=KEY, records=False)),
            ("encode+encrypt", lambda b=built: encode_telegram(b, key=KEY)),
        )
        for label, fn in rows:
            rate = _rate(fn)
            print(f"{name + ' ' + label:24} {rate:12.0f} {baseline:12.0f} {rate / baseline:7.2f}")
    print(f"frame size {len(frame)} bytes, {len(ciphertext)} bytes encrypted")


if __name__ == "__main__":
    main()
