"""The attacker's log edits (tamper_log) against the gateway's own log writer and verifier.

The log is written by the gateway's SignedLog with a real key; after each edit the
gateway's verify() must name the edited entry, so the edit is what the operation
says it is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.controller.tampering import log_path, tamper
from smtestbed.services.gateway.keys import SigningKey, load_or_create_key
from smtestbed.services.gateway.logs import Problem, SignedLog, verify

ENTRIES = 6  # log_created and five time_deviation entries


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    """The instance key that signs the log."""
    return load_or_create_key(tmp_path / "keys")


@pytest.fixture
def log(tmp_path: Path, key: SigningKey) -> SignedLog:
    """A calibration log of an instance folder, open for appending as in the gateway."""
    folder = tmp_path / "gw0" / "logs"
    folder.mkdir(parents=True)
    signed = SignedLog(folder / "calibration.jsonl", key, log_name="calibration")
    for k in range(1, ENTRIES):
        signed.append("time_deviation", {"deviation_s": 10.0 * k}, t_sim=900.0 * k)
    return signed


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("change", Problem.BAD_SIGNATURE),
        ("delete", Problem.MISSING),
        ("swap", Problem.REORDERED),
    ],
)
def test_each_edit_is_found_at_the_entry_it_names(
    log: SignedLog, key: SigningKey, how: str, problem: Problem
) -> None:
    """change, delete and swap of entry 2: verify() fails first at entry 2 with the problem."""
    assert verify(log.path, key.public_key).ok
    done = tamper(log.path, 2, how, {"deviation_s": 0.0})
    assert (done.entry, done.line, done.how) == (2, 3, how)
    result = verify(log.path, key.public_key)
    assert not result.ok
    assert result.first_bad is not None
    assert (result.first_bad.seq, result.problem) == (2, problem)


def test_change_keeps_the_signature_and_sets_the_fields(log: SignedLog) -> None:
    """A changed entry has the new fields, a recomputed hash and the old signature."""
    done = tamper(log.path, 3, "change", {"deviation_s": 0.0})
    assert done.after is not None
    assert done.before["fields"]["deviation_s"] == 30.0
    assert done.after["fields"]["deviation_s"] == 0.0
    assert done.after["sig"] == done.before["sig"]
    assert done.after["hash"] != done.before["hash"]
    assert b'"deviation_s":0.0' in log.path.read_bytes().splitlines()[3]


def test_the_file_is_edited_in_place_and_the_gateway_appends_after_it(
    log: SignedLog, key: SigningKey
) -> None:
    """Same inode: the gateway's next append lands in the edited file, after the edit."""
    inode = os.stat(log.path).st_ino
    tamper(log.path, 1, "delete", {})
    log.append("time_synced", {"deviation_s": 0.5}, t_sim=9000.0)
    assert os.stat(log.path).st_ino == inode
    lines = log.path.read_bytes().splitlines()
    assert len(lines) == ENTRIES
    assert b"time_synced" in lines[-1]
    result = verify(log.path, key.public_key)
    assert result.first_bad is not None
    assert result.first_bad.seq == 1


@pytest.mark.parametrize(
    ("entry", "how", "fields", "field"),
    [
        (99, "change", {"deviation_s": 1.0}, "entry"),
        (ENTRIES - 1, "swap", {}, "entry"),
        (1, "change", {"deviation_s": 10.0}, "fields"),
    ],
)
def test_an_edit_that_cannot_be_made_is_refused_and_changes_nothing(
    log: SignedLog, entry: int, how: str, fields: dict[str, float], field: str
) -> None:
    """No such entry, nothing to swap with, or a change that changes nothing: file unchanged."""
    before = log.path.read_bytes()
    with pytest.raises(RequestError) as refused:
        tamper(log.path, entry, how, fields)
    assert refused.value.field == field
    assert log.path.read_bytes() == before


def test_an_unknown_log_is_refused_naming_the_logs_on_disk(log: SignedLog) -> None:
    """log_path names the field and lists the logs there are."""
    folder = log.path.parent.parent
    assert log_path(folder, "calibration") == log.path
    for name in ("consumer-x", "../keys/instance", "Calibration"):
        with pytest.raises(RequestError) as refused:
            log_path(folder, name)
        assert refused.value.field == "log"
        assert "calibration" in str(refused.value)
