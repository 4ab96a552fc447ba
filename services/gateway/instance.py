"""One gateway instance: its registry, store, logs and measurement processing.

:meth:`GatewayInstance.ingest` is the wireless LMN driver's path: frames in,
measurement processing, one store transaction, then the logs. A reading is
announced as accepted only after its transaction committed; a rejection is
written to the system log with its reason.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtestbed.services.gateway.keys import load_or_create_key
from smtestbed.services.gateway.logs import LogSet
from smtestbed.services.gateway.processing import BatchOutcome, Pipeline, Plausibility
from smtestbed.services.gateway.registry import Registry
from smtestbed.services.gateway.schema import MeterEntry, Reading, Rejection
from smtestbed.services.gateway.store import StagedBatch, Store
from smtestbed.services.gateway.store_writer import RemoteSigner, StoreWriter
from smtestbed.services.gateway.unsafe import SkippedChecks


@dataclass(slots=True)
class IngestResult:
    """What one ingest committed and refused."""

    accepted: list[tuple[Reading, int]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duplicates: int = 0


@dataclass(slots=True)
class InstanceCounters:
    """Totals of one instance since start."""

    frames: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def to_map(self) -> dict[str, Any]:
        """Return the counters as a reply or event body."""
        return {
            "frames": self.frames,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
        }


def _stored(
    readings: Sequence[Reading],
    ids: Sequence[int | None],
    rejected: list[Rejection],
    duplicates: int = 0,
) -> IngestResult:
    """Return the result of a committed batch: its new readings with their ids (a None
    id is a duplicate, counted on top of ``duplicates``) and its rejections."""
    result = IngestResult(rejected=rejected, duplicates=duplicates)
    for reading, rid in zip(readings, ids, strict=True):
        if rid is None:
            result.duplicates += 1
        else:
            result.accepted.append((reading, rid))
    return result


class GatewayInstance:
    """A gateway with its own folder: ``store.sqlite``, ``keys/``, ``logs/``."""

    def __init__(
        self,
        name: str,
        folder: Path,
        *,
        synchronous: str = "FULL",
        limits: Plausibility | None = None,
        skipped: SkippedChecks | None = None,
        writer: StoreWriter | None = None,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.folder = folder
        self.store = Store(
            folder / "store.sqlite",
            synchronous="NORMAL" if synchronous == "NORMAL" else "FULL",
            writer=writer,
        )
        self.registry = Registry(self.store)
        self.key = load_or_create_key(folder / "keys")
        sign = None if writer is None else RemoteSigner(writer, str(self.key.path), self.key.sign)
        self.logs = LogSet(folder / "logs", self.key, sign=sign)
        # Test-only switched-off checks (unsafe_skip_checks), shared with the service.
        self.skipped = skipped if skipped is not None else SkippedChecks()
        self.pipeline = Pipeline(
            self.registry.get, self.store.last_state, limits or Plausibility(), self.skipped
        )
        self.counters = InstanceCounters()

    def ingest(self, frames: Sequence[tuple[bytes, float]]) -> IngestResult:
        """Process frames (bytes, t_sim), store the accepted ones, log the rejected."""
        outcome = self.process(frames)
        try:
            result = self.commit(outcome)
        except BaseException:
            self.pipeline.discard()
            raise
        self.settle(len(frames), outcome, result)
        return result

    def process(self, frames: Sequence[tuple[bytes, float]]) -> BatchOutcome:
        """Run measurement processing over frames (bytes, t_sim); nothing is stored yet.

        The accepted readings join the pipeline's overlay until :meth:`settle` (or the
        pipeline's ``discard`` when their transaction failed).
        """
        return self.pipeline.process(frames)

    def commit(self, outcome: BatchOutcome) -> IngestResult:
        """Store a processed batch in one transaction, then log it and its rejections.

        Raises:
            StoreError: the transaction failed (nothing of the batch is stored).
            LogError: a log entry could not be written (the batch is stored).
        """
        result = self.store_batch(outcome)
        self.log_batch(result)
        return result

    def store_batch(self, outcome: BatchOutcome) -> IngestResult:
        """Store a processed batch's accepted readings in one transaction.

        May run on another thread than :meth:`process`, one call at a time per instance and
        in processing order: it touches the store, not the pipeline.

        Raises:
            StoreError: the transaction failed (nothing of the batch is stored).
        """
        return _stored(
            outcome.accepted,
            self.store.commit_processed(outcome.accepted),
            outcome.rejected,
            outcome.duplicates,
        )

    def stage_batch(self, outcome: BatchOutcome) -> StagedBatch:
        """Write a processed batch's accepted readings in a transaction left open.

        :meth:`finish_batch` commits it (on any thread). Without a store writer process
        the store is locked until then, so the next :meth:`stage_batch` of this instance
        waits for that commit; with one, the batch is handed over and the next may follow
        (see :meth:`Store.stage_processed`).

        Raises:
            StoreError: SQLite refused the rows (nothing is kept).
        """
        return self.store.stage_processed(outcome.accepted)

    def finish_batch(self, outcome: BatchOutcome, staged: StagedBatch) -> IngestResult:
        """Commit a batch :meth:`stage_batch` wrote; return what it stored and refused.

        Raises:
            StoreError: the commit failed (nothing of the batch is stored).
        """
        return _stored(outcome.accepted, staged.commit(), outcome.rejected, outcome.duplicates)

    def log_batch(self, result: IngestResult) -> None:
        """Write a stored batch to the logs: its rejections, its readings per consumer.

        May run on another thread, one call at a time per instance, in processing order.

        Raises:
            LogError: an entry could not be written.
        """
        self._log(result)

    def settle(self, frames: int, outcome: BatchOutcome, result: IngestResult) -> None:
        """Take a committed batch out of the pipeline's overlay and count it (processing thread)."""
        self.pipeline.commit_done(outcome.accepted)
        self._account(frames, result)

    def ingest_readings(
        self, readings: Sequence[Reading], rejections: Sequence[Rejection]
    ) -> IngestResult:
        """Store readings checked elsewhere (wired LMN) and log them and the rejections."""
        result = _stored(readings, self.store.commit_batch(readings), list(rejections))
        self._account(len(readings) + len(rejections), result)
        self._log(result)
        return result

    def _account(self, frames: int, result: IngestResult) -> None:
        c = self.counters
        c.frames += frames
        c.accepted += len(result.accepted)
        c.duplicates += result.duplicates
        c.rejected.update(str(r.reason) for r in result.rejected)

    def _log(self, result: IngestResult) -> None:
        # One signed entry per batch and log: signing is the cost of a log entry, and a
        # storm of bad frames must not slow the gateway down to the signing rate.
        if result.rejected:
            self.logs.system.append(
                "frames_rejected",
                {
                    "rejections": [
                        {
                            "reason": str(r.reason),
                            "message": r.message,
                            "meter": r.meter,
                            "t_sim": r.t_sim,
                        }
                        for r in result.rejected
                    ]
                },
                t_sim=max(r.t_sim for r in result.rejected),
            )
        by_consumer: dict[str, list[list[Any]]] = {}
        entry_of = self.registry.get
        last = -math.inf
        for reading, rid in result.accepted:
            meter = reading.meter
            entry = entry_of(meter)
            if entry is not None and entry.consumer:
                rows = by_consumer.get(entry.consumer)
                if rows is None:
                    rows = by_consumer[entry.consumer] = []
                rows.append([meter, rid])
            if reading.t_sim > last:
                last = reading.t_sim
        for consumer, rows in by_consumer.items():
            self.logs.consumer(consumer).append(
                "readings_stored", {"count": len(rows), "readings": rows}, t_sim=last
            )  # some reading was accepted, so last is finite

    def manage(self, action: str, entry: MeterEntry | str, *, by: str, t_sim: float) -> None:
        """Write a registry change to the system log (the caller changed the registry)."""
        meter = entry if isinstance(entry, str) else entry.meter
        fields: dict[str, Any] = {"meter": meter, "by": by}
        if isinstance(entry, MeterEntry):
            fields.update(
                security=entry.security,
                tafs=sorted(map(str, entry.tafs)),
                consumer=entry.consumer,
                emt=entry.emt,
            )
        self.logs.system.append(action, fields, t_sim=t_sim)

    def close(self) -> None:
        """Close the logs and the store."""
        self.logs.close()
        self.store.close()
