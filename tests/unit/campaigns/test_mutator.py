"""The seeded mutator and the crash book of the fuzz campaigns."""

from __future__ import annotations

from pathlib import Path

from smtestbed.services.campaigns.crashes import CrashBook
from smtestbed.services.campaigns.mutator import MAX_INPUT, Mutator

CORPUS = [bytes(range(40)), b"\x68\x03\x03\x68\x53\xfe\x50\xa1\x16"]


def test_same_seed_gives_same_inputs() -> None:
    """Two mutators with one seed and corpus derive the same 200 inputs."""
    a, b = Mutator(CORPUS, seed=7), Mutator(CORPUS, seed=7)
    assert [a.next() for _ in range(200)] == [b.next() for _ in range(200)]


def test_inputs_differ_from_the_corpus_and_stay_bounded() -> None:
    """Most derived inputs are new, none is longer than MAX_INPUT."""
    m = Mutator(CORPUS, seed=1)
    inputs = [m.next() for _ in range(500)]
    assert sum(i not in CORPUS for i in inputs) > 400
    assert max(len(i) for i in inputs) <= MAX_INPUT


def _raise_value_error(text: str) -> None:
    int(text)


def test_crash_book_deduplicates_by_type_and_top_frame(tmp_path: Path) -> None:
    """Two ValueErrors from one line are one crash counted twice; its input is saved."""
    book = CrashBook("demo", tmp_path)
    for data in (b"x", b"y"):
        try:
            _raise_value_error(data.decode())
        except ValueError as exc:
            book.exception(exc, data)
    try:
        [].pop()
    except IndexError as exc:
        book.exception(exc, b"z")
    crashes = book.unique()
    assert [(c.kind, c.count) for c in crashes] == [("ValueError", 2), ("IndexError", 1)]
    assert crashes[0].frame.startswith("test_mutator.py:")
    assert crashes[0].frame.endswith(":_raise_value_error")  # a builtin has no frame of its own
    assert Path(crashes[0].input_file).read_bytes() == b"x"
