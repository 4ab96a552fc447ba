"""A seeded byte mutator: bit flips, byte insert/delete, length lies and splices.

Used where atheris does not import, and by the gateway LMN campaign (whose target is a
process, out of reach of in-process coverage). The same seed and corpus give the same
inputs, so a campaign can be repeated exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

MAX_INPUT = 4096
"""Inputs are cut to this many bytes (every format under test is shorter)."""
_INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF, 0x2F, 0x68, 0x16, 0xE5, 0x1B)


class Mutator:
    """Derive new inputs from a corpus with a seeded generator.

    Args:
        corpus: the seed inputs (at least one).
        seed: seed of the generator.
    """

    def __init__(self, corpus: Sequence[bytes], *, seed: int) -> None:
        if not corpus:
            raise ValueError("a mutator needs at least one seed input")
        self.corpus = list(corpus)
        self.rng = random.Random(seed)
        self._ops: tuple[Callable[[bytearray], None], ...] = (
            self.flip_bit,
            self.set_byte,
            self.insert_bytes,
            self.delete_bytes,
            self.length_lie,
            self.splice,
            self.duplicate_block,
        )

    def next(self) -> bytes:
        """Return a new input: a corpus entry with one to four mutations applied."""
        data = bytearray(self.rng.choice(self.corpus))
        for _ in range(self.rng.randint(1, 4)):
            self.rng.choice(self._ops)(data)
        return bytes(data[:MAX_INPUT])

    def add(self, data: bytes) -> None:
        """Add an input to the corpus (a new seed for later mutations)."""
        self.corpus.append(data)

    def _pos(self, data: bytearray, *, end: bool = False) -> int:
        return self.rng.randrange(len(data) + (1 if end else 0)) if data or end else 0

    def flip_bit(self, data: bytearray) -> None:
        """Invert one bit."""
        if data:
            data[self._pos(data)] ^= 1 << self.rng.randrange(8)

    def set_byte(self, data: bytearray) -> None:
        """Overwrite one byte with a random or a format-relevant value."""
        if data:
            pick = self.rng.random() < 0.5
            data[self._pos(data)] = (
                self.rng.choice(_INTERESTING) if pick else self.rng.randrange(256)
            )

    def insert_bytes(self, data: bytearray) -> None:
        """Insert one to eight random bytes anywhere (also at the end)."""
        at = self._pos(data, end=True)
        data[at:at] = self.rng.randbytes(self.rng.randint(1, 8))

    def delete_bytes(self, data: bytearray) -> None:
        """Delete one to eight bytes."""
        if data:
            at = self._pos(data)
            del data[at : at + self.rng.randint(1, 8)]

    def length_lie(self, data: bytearray) -> None:
        """Change a byte near the start (where length fields live) by a small or large step."""
        if data:
            at = self.rng.randrange(min(len(data), 4))
            step = self.rng.choice((-2, -1, 1, 2, 0x40, 0x80, 0xFF))
            data[at] = (data[at] + step) & 0xFF

    def splice(self, data: bytearray) -> None:
        """Replace the tail with the tail of another corpus entry."""
        other = self.rng.choice(self.corpus)
        if data and other:
            data[self._pos(data) :] = other[self.rng.randrange(len(other)) :]

    def duplicate_block(self, data: bytearray) -> None:
        """Repeat a slice of the input right after itself (repeated fields and frames)."""
        if data:
            at = self._pos(data)
            piece = data[at : at + self.rng.randint(1, 32)]
            data[at:at] = piece
