"""Signed, hash-chained gateway logs: format, chain, resume, tampering and verify-log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from smtestbed.services.gateway.cli_logs import verify_log
from smtestbed.services.gateway.keys import SigningKey, load_or_create_key
from smtestbed.services.gateway.logs import (
    GENESIS_KIND,
    ZERO_HASH,
    Location,
    LogError,
    LogSet,
    LogTamperedError,
    Problem,
    SignedLog,
    VerifyResult,
    read_entries,
    verify,
)

WALL = 1_767_225_600.25
Factory = Callable[..., Path]


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """The instance key (brainpoolP256r1) shared by the tests of this module."""
    return load_or_create_key(tmp_path_factory.mktemp("instance"))


@pytest.fixture
def make_log(tmp_path: Path, key: SigningKey) -> Factory:
    """Factory: a closed log file with genesis plus ``n`` frame_rejected entries."""

    def make(n: int = 6, *, name: str = "system", signer: SigningKey = key) -> Path:
        path = tmp_path / f"{name}.jsonl"
        with SignedLog(path, signer, log_name=name, wall_clock=lambda: WALL) as log:
            for i in range(1, n + 1):
                log.append("frame_rejected", {"meter": f"{i:08d}", "n": i}, t_sim=900.0 * i)
        return path

    return make


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _bad(result: VerifyResult) -> tuple[Problem | None, Location | None, int]:
    return result.problem, result.first_bad, result.count


def test_append_then_verify_counts_every_entry(make_log: Factory, key: SigningKey) -> None:
    """Genesis plus six appended entries verify as seven good entries of log 'system'."""
    result = verify(make_log(6), key.public_key)
    assert result == VerifyResult(ok=True, count=7, log_name="system")
    assert result.message() == "OK 7 entries (log system)"


def test_entries_read_back_what_append_returned(tmp_path: Path, key: SigningKey) -> None:
    """entries() yields exactly the Entry values append() returned, in order."""
    with SignedLog(tmp_path / "l.jsonl", key, log_name="system") as log:
        written = [log.append("time_sync", {"offset_s": 0.25, "ok": True}, t_sim=t) for t in (1, 2)]
        read = list(log.entries())
    assert read[1:] == written
    assert [e.seq for e in read] == [0, 1, 2]


def test_line_format_is_the_documented_canonical_hash_chain(
    make_log: Factory, key: SigningKey
) -> None:
    """Each line is canonical JSON; hash = SHA-256 of the six body keys; sig is ECDSA over it."""
    raw = _lines(make_log(2))
    prev = ZERO_HASH
    for seq, line in enumerate(raw):
        entry = json.loads(line)
        assert line == _canonical(entry) + b"\n"
        body = {k: entry[k] for k in ("seq", "t_sim", "t_wall", "kind", "fields", "prev")}
        assert (entry["seq"], entry["prev"], entry["t_wall"]) == (seq, prev, WALL)
        assert entry["hash"] == hashlib.sha256(_canonical(body)).hexdigest()
        digest = bytes.fromhex(entry["hash"])
        algorithm = ec.ECDSA(utils.Prehashed(hashes.SHA256()))
        key.public_key.verify(bytes.fromhex(entry["sig"]), digest, algorithm)
        prev = entry["hash"]
    assert json.loads(raw[2])["fields"] == {"meter": "00000002", "n": 2}


def test_first_entry_names_the_log_curve_and_key(make_log: Factory, key: SigningKey) -> None:
    """seq 0 is log_created with the log name, the curve and the key fingerprint."""
    genesis = next(read_entries(make_log(0, name="calibration")))
    assert (genesis.seq, genesis.kind, genesis.t_sim) == (0, GENESIS_KIND, 0.0)
    expected = {"log": "calibration", "curve": "brainpoolP256r1", "key": key.fingerprint}
    assert genesis.fields == expected


def test_changed_field_is_altered_at_that_entry(make_log: Factory, key: SigningKey) -> None:
    """Editing a value inside entry 3 is reported as altered at seq 3, line 4."""
    path = make_log()
    lines = _lines(path)
    lines[3] = lines[3].replace(b'"n":3', b'"n":4')
    _rewrite(path, lines)
    assert _bad(verify(path, key.public_key)) == (Problem.ALTERED, Location(seq=3, line=4), 3)


def test_deleted_line_is_missing_at_that_entry(make_log: Factory, key: SigningKey) -> None:
    """Removing entry 3's line is reported as missing seq 3 at line 4."""
    path = make_log()
    lines = _lines(path)
    del lines[3]
    _rewrite(path, lines)
    result = verify(path, key.public_key)
    assert _bad(result) == (Problem.MISSING, Location(seq=3, line=4), 3)
    assert result.detail == "entry 3 missing, found entry 4 here"


def test_swapped_lines_are_reordered_at_the_first_of_them(
    make_log: Factory, key: SigningKey
) -> None:
    """Swapping entries 3 and 4 is reported as reordered (not missing) at seq 3, line 4."""
    path = make_log()
    lines = _lines(path)
    lines[3], lines[4] = lines[4], lines[3]
    _rewrite(path, lines)
    result = verify(path, key.public_key)
    assert _bad(result) == (Problem.REORDERED, Location(seq=3, line=4), 3)
    assert result.detail == "entry 3 is at line 5, found 4 here"


def test_repeated_entry_is_reordered_where_seq_goes_back(
    make_log: Factory, key: SigningKey
) -> None:
    """A copy of entry 2 inserted after entry 3 is reported at line 5 (seq goes back)."""
    path = make_log()
    lines = _lines(path)
    lines.insert(4, lines[2])
    _rewrite(path, lines)
    result = verify(path, key.public_key)
    assert _bad(result) == (Problem.REORDERED, Location(seq=4, line=5), 4)
    assert result.detail == "found entry 2 after entry 3"


def test_changed_signature_is_bad_signature(make_log: Factory, key: SigningKey) -> None:
    """Entry 3 carrying entry 2's (genuine) signature is a bad signature at seq 3."""
    path = make_log()
    lines = _lines(path)
    entries = [json.loads(line) for line in lines]
    entries[3]["sig"] = entries[2]["sig"]
    lines[3] = _canonical(entries[3]) + b"\n"
    _rewrite(path, lines)
    assert _bad(verify(path, key.public_key)) == (Problem.BAD_SIGNATURE, Location(seq=3, line=4), 3)


def test_changed_field_with_recomputed_hash_is_bad_signature(
    make_log: Factory, key: SigningKey
) -> None:
    """An editor who recomputes the hash but cannot sign is caught by the signature."""
    path = make_log()
    lines = _lines(path)
    entry = json.loads(lines[3])
    entry["fields"]["n"] = 99
    body = {k: entry[k] for k in ("seq", "t_sim", "t_wall", "kind", "fields", "prev")}
    entry["hash"] = hashlib.sha256(_canonical(body)).hexdigest()
    lines[3] = _canonical(entry) + b"\n"
    _rewrite(path, lines)
    assert _bad(verify(path, key.public_key)) == (Problem.BAD_SIGNATURE, Location(seq=3, line=4), 3)


def test_garbage_line_is_malformed_at_that_line(make_log: Factory, key: SigningKey) -> None:
    """A line that is not JSON in place of entry 3 is malformed at line 4."""
    path = make_log()
    lines = _lines(path)
    lines[3] = b"this is not json\n"
    _rewrite(path, lines)
    result = verify(path, key.public_key)
    assert _bad(result) == (Problem.MALFORMED, Location(seq=3, line=4), 3)
    assert result.detail == "not JSON"


def test_reformatted_line_is_altered(make_log: Factory, key: SigningKey) -> None:
    """Same values written with spaces still count as an alteration of the file."""
    path = make_log()
    lines = _lines(path)
    lines[2] = json.dumps(json.loads(lines[2]), sort_keys=True).encode() + b"\n"
    _rewrite(path, lines)
    result = verify(path, key.public_key)
    assert _bad(result) == (Problem.ALTERED, Location(seq=2, line=3), 2)
    assert "canonical" in result.detail


def test_entry_spliced_from_another_log_breaks_the_chain(
    tmp_path: Path, make_log: Factory, key: SigningKey
) -> None:
    """A genuinely signed entry 3 of the consumer log put into the system log is altered."""
    system, other = make_log(name="system"), make_log(name="consumer-a")
    lines = _lines(system)
    lines[3] = _lines(other)[3]
    _rewrite(system, lines)
    result = verify(system, key.public_key)
    assert _bad(result) == (Problem.ALTERED, Location(seq=3, line=4), 3)
    assert result.detail == "prev does not match the entry before"


def test_incomplete_last_line_is_malformed(make_log: Factory, key: SigningKey) -> None:
    """A last line cut short (torn write) is malformed at that line."""
    path = make_log(3)
    path.write_bytes(path.read_bytes()[:-20])
    result = verify(path, key.public_key)
    assert _bad(result) == (Problem.MALFORMED, Location(seq=3, line=4), 3)


def test_empty_file_misses_entry_zero(tmp_path: Path, key: SigningKey) -> None:
    """A log emptied completely is not OK: entry 0 is missing."""
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    assert _bad(verify(path, key.public_key)) == (Problem.MISSING, Location(seq=0, line=1), 0)


def test_log_signed_by_another_key_fails_at_entry_zero(
    tmp_path: Path, make_log: Factory, key: SigningKey
) -> None:
    """Verifying with another instance's public key fails at once and says so."""
    other = load_or_create_key(tmp_path / "other")
    result = verify(make_log(), other.public_key)
    assert _bad(result) == (Problem.BAD_SIGNATURE, Location(seq=0, line=1), 0)
    assert result.detail.startswith(f"log was made with another key ({key.fingerprint[:16]}")


def test_reopening_continues_the_chain(tmp_path: Path, key: SigningKey) -> None:
    """Close and reopen: seq and prev carry on and the whole file verifies."""
    path = tmp_path / "system.jsonl"
    with SignedLog(path, key, log_name="system") as log:
        last = log.append("gateway_started", {}, t_sim=0.0)
    with SignedLog(path, key, log_name="system") as log:
        assert (log.next_seq, log.head) == (2, last.hash)
        resumed = log.append("gateway_started", {}, t_sim=5.0)
    assert (resumed.seq, resumed.prev) == (2, last.hash)
    assert verify(path, key.public_key).count == 3


def test_reopening_finds_a_tail_longer_than_one_block(tmp_path: Path, key: SigningKey) -> None:
    """A 10 kB last entry is read back whole when the log is reopened."""
    path = tmp_path / "system.jsonl"
    with SignedLog(path, key, log_name="system") as log:
        big = log.append("config_changed", {"blob": "x" * 10_000}, t_sim=1.0)
    with SignedLog(path, key, log_name="system") as log:
        assert (log.next_seq, log.head) == (2, big.hash)


def test_reopening_a_tampered_tail_refuses_and_leaves_the_file(
    make_log: Factory, key: SigningKey
) -> None:
    """An altered last entry stops the open; no byte is appended."""
    path = make_log(3)
    lines = _lines(path)
    lines[-1] = lines[-1].replace(b'"n":3', b'"n":7')
    _rewrite(path, lines)
    before = path.read_bytes()
    with pytest.raises(LogTamperedError, match=r"last entry \(seq 3\) altered"):
        SignedLog(path, key, log_name="system")
    assert path.read_bytes() == before


def test_reopening_with_another_key_refuses(
    tmp_path: Path, make_log: Factory, key: SigningKey
) -> None:
    """A new key cannot continue a log the old key signed."""
    path = make_log(2)
    other = load_or_create_key(tmp_path / "other")
    with pytest.raises(LogTamperedError, match=r"first entry .* bad_signature"):
        SignedLog(path, other, log_name="system")


def test_reopening_under_another_log_name_refuses(make_log: Factory, key: SigningKey) -> None:
    """The system log file cannot be opened as a consumer's log."""
    path = make_log(1)
    with pytest.raises(LogTamperedError, match="not log 'consumer-a'"):
        SignedLog(path, key, log_name="consumer-a")


def test_second_writer_is_refused(tmp_path: Path, key: SigningKey) -> None:
    """While a log is open, a second SignedLog on the same file raises LogError."""
    path = tmp_path / "system.jsonl"
    with SignedLog(path, key, log_name="system"), pytest.raises(LogError, match="elsewhere"):
        SignedLog(path, key, log_name="system")


@pytest.mark.parametrize(
    ("kind", "fields", "t_sim", "message"),
    [
        ("FrameRejected", {}, 1.0, "snake_case"),
        ("frame_rejected", {"v": float("nan")}, 1.0, "not canonical JSON"),
        ("frame_rejected", {"v": b"\x00"}, 1.0, "not canonical JSON"),
        ("frame_rejected", {}, float("inf"), "finite"),
    ],
)
def test_bad_append_raises_and_writes_nothing(
    tmp_path: Path,
    key: SigningKey,
    kind: str,
    fields: dict[str, object],
    t_sim: float,
    message: str,
) -> None:
    """A bad kind, non-JSON fields or an infinite t_sim raise LogError; the file is unchanged."""
    path = tmp_path / "system.jsonl"
    with SignedLog(path, key, log_name="system") as log:
        before = path.read_bytes()
        with pytest.raises(LogError, match=message):
            log.append(kind, fields, t_sim=t_sim)
        assert (path.read_bytes(), log.next_seq) == (before, 1)


def test_fields_are_stored_as_parsed_back(tmp_path: Path, key: SigningKey) -> None:
    """A tuple is stored as a JSON list; the returned entry equals what is read back."""
    with SignedLog(tmp_path / "c.jsonl", key, log_name="calibration") as log:
        entry = log.append("tariff_changed", {"registers": (1, 2), "name": "HT/NT ü"}, t_sim=3)
    assert entry.fields == {"registers": [1, 2], "name": "HT/NT ü"}
    assert list(read_entries(tmp_path / "c.jsonl"))[1] == entry


def test_append_after_close_raises(tmp_path: Path, key: SigningKey) -> None:
    """A closed log refuses appends with LogError."""
    log = SignedLog(tmp_path / "system.jsonl", key, log_name="system")
    log.close()
    with pytest.raises(LogError, match="closed"):
        log.append("gateway_stopped", {}, t_sim=1.0)


def test_read_entries_names_the_malformed_line(make_log: Factory) -> None:
    """read_entries raises LogError with the line number of a broken line."""
    path = make_log(2)
    path.write_bytes(path.read_bytes() + b"{}\n")
    with pytest.raises(LogError, match="line 4: not an entry"):
        list(read_entries(path))


def test_log_set_keeps_one_file_per_log(tmp_path: Path, key: SigningKey) -> None:
    """System, calibration and per-consumer logs are separate files that verify by name."""
    folder = tmp_path / "logs"
    with LogSet(folder, key) as logs:
        logs.system.append("frame_rejected", {"reason": "bad_crc"}, t_sim=1.0)
        logs.consumer("c-17").append("data_sent", {"emt": "supplier"}, t_sim=2.0)
        assert logs.consumer("c-17") is logs.consumer("c-17")
        logs.consumer("c-2")
        logs.sync()
        assert logs.consumer_ids() == ["c-17", "c-2"]
    names = {p.name: verify(p, key.public_key) for p in folder.iterdir()}
    assert sorted(names) == [
        "calibration.jsonl",
        "consumer-c-17.jsonl",
        "consumer-c-2.jsonl",
        "system.jsonl",
    ]
    assert [(r.log_name, r.count) for _, r in sorted(names.items())] == [
        ("calibration", 1),
        ("consumer-c-17", 2),
        ("consumer-c-2", 1),
        ("system", 2),
    ]


def test_log_set_refuses_a_consumer_id_that_is_a_path(tmp_path: Path, key: SigningKey) -> None:
    """A consumer id such as '../x' never names a file outside the folder."""
    with LogSet(tmp_path / "logs", key) as logs, pytest.raises(LogError, match="not a valid"):
        logs.consumer("../x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(verify_log, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_prints_ok_and_exits_0_on_a_good_log(make_log: Factory, key: SigningKey) -> None:
    """verify-log prints one OK line with the count."""
    code, out, _ = _cli(str(make_log(4)), "--public-key", str(key.public_path))
    assert (code, out) == (0, "OK 5 entries (log system)\n")


def test_cli_names_the_first_bad_entry_and_exits_1(make_log: Factory, key: SigningKey) -> None:
    """verify-log prints one line naming seq and line of a deleted entry, exit 1."""
    path = make_log()
    lines = _lines(path)
    del lines[2]
    _rewrite(path, lines)
    code, out, _ = _cli(str(path), "--public-key", str(key.public_path))
    expected = "MISSING entry 2 at line 3 (log system): entry 2 missing, found entry 3 here\n"
    assert (code, out) == (1, expected)


def test_cli_json_output_on_tampering(make_log: Factory, key: SigningKey) -> None:
    """--json prints one JSON object with problem, seq and line, exit 1."""
    path = make_log()
    lines = _lines(path)
    lines[5] = lines[5].replace(b"frame_rejected", b"frame_accepted")
    _rewrite(path, lines)
    code, out, _ = _cli(str(path), "--public-key", str(key.public_path), "--json")
    assert code == 1
    assert out.count("\n") == 1
    document = json.loads(out)
    assert {k: document[k] for k in ("ok", "problem", "seq", "line", "count")} == {
        "ok": False,
        "problem": "altered",
        "seq": 5,
        "line": 6,
        "count": 5,
    }


def test_cli_missing_log_file_is_one_error_line(tmp_path: Path, key: SigningKey) -> None:
    """An absent log file gives one error line on stderr and exit 1, no traceback."""
    code, out, err = _cli(str(tmp_path / "absent.jsonl"), "--public-key", str(key.public_path))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "cannot read log" in err
