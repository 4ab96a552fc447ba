"""Ingest of many batches with the commits overlapped: processing never waits for a disk.

:meth:`GatewayInstance.ingest` processes a batch, commits it and logs it, one after the
other. Most of a commit with ``synchronous=FULL`` is the sync of the WAL file, which runs
without the GIL, and most of logging is the signing of the entries. :class:`Committer`
processes each batch and writes its rows on the calling thread, in a transaction left open
(:meth:`GatewayInstance.stage_batch`), and runs the ``COMMIT`` and the log entries on
worker threads while the calling thread goes on with the next batch (of the same instance
or the next one). So the processing overlaps the syncs, and the syncs of different
instances (one file each) overlap each other. The rows are not written on a worker: the
sqlite3 module lets go of the GIL for every row, and a worker would wait for the
processing thread to give it back after each one.

What a batch may count on is unchanged:

- a reading is accepted (in the result, and so announced) only after its transaction has
  committed and its batch's log entries are written; the results come back in the order
  of the batches;
- an instance's batches commit in their order, one at a time, and write their log entries
  in that order, each after its own commit (the next transaction does not wait for the
  signatures); different instances commit side by side (one file each);
- a batch is processed against the readings of its instance's earlier batches even when
  they have not committed yet (the pipeline's overlay). When a transaction (or a batch's
  log entries) fails, its instance takes no further batch in this call: later batches are
  not committed (or, when already committed, not handed over, as a failed log write after
  a commit never was), the overlay is dropped, and the first failure is raised once the
  other instances' batches are through. With a store writer process a later batch is
  handed over before the earlier one's answer is in: the writer refuses it, as it does
  every batch whose ids count on a failed one; only one handed over just after the store
  learnt of the failure starts afresh and may commit, and is then not handed over
  either. Its readings passed their checks against the failed batch's, which are more
  recent than anything stored, so they hold against the store too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from smtestbed.services.gateway.instance import GatewayInstance, IngestResult
from smtestbed.services.gateway.processing import BatchOutcome
from smtestbed.services.gateway.store import StagedBatch

Frames = Sequence[tuple[bytes, float]]
Job = tuple[GatewayInstance, Frames]
OnResult = Callable[[GatewayInstance, IngestResult], None]

WORKERS = 12
"""Commit threads, and so batches in flight. Each mostly waits: for its transaction (in the
store writer process or SQLite's sync) or its log signatures. With many instances every
small batch waits for both, and more batches in flight keep the processing thread going."""


class _SkippedError(Exception):
    """Internal: an earlier batch of the same instance failed, so this one was not delivered."""


@dataclass(frozen=True, slots=True)
class _Pending:
    instance: GatewayInstance
    frames: int
    outcome: BatchOutcome
    logged: Future[IngestResult]


def _failed(before: Future[IngestResult] | None, *, wait: bool = True) -> bool:
    # Every future waited for here was submitted earlier, so a worker has taken it already:
    # waiting for it cannot hold up the pool.
    if before is None or not (wait or before.done()):
        return False
    return before.exception() is not None


def _refused(exc: BaseException) -> Future[IngestResult]:
    done: Future[IngestResult] = Future()
    done.set_exception(exc)
    return done


def _commit_and_log(
    instance: GatewayInstance,
    outcome: BatchOutcome,
    staged: StagedBatch,
    stored: Future[IngestResult],
    before: Future[IngestResult] | None,
) -> IngestResult:
    """Commit a staged batch (``stored`` tells how that went), then write its log entries
    once the previous batch of the instance has written its own."""
    try:
        result = instance.finish_batch(outcome, staged)
    except BaseException as exc:  # a failed transaction fails this batch as it is
        stored.set_exception(exc)
        raise
    stored.set_result(result)
    if _failed(before):
        raise _SkippedError
    instance.log_batch(result)
    return result


class Committer:
    """Worker threads that commit processed batches while the caller processes the next.

    Args:
        workers: commit threads (transactions of different instances run side by side).
    """

    def __init__(self, workers: int = WORKERS) -> None:
        self._depth = max(1, workers)
        self._pool = ThreadPoolExecutor(max_workers=self._depth, thread_name_prefix="commit")

    def ingest(self, jobs: Iterable[Job], on_result: OnResult | None = None) -> list[IngestResult]:
        """Ingest (instance, frames) batches in order; return their results in that order.

        ``on_result`` is called on this thread with each committed batch, in order, as soon
        as it has committed (a batch announced there is stored).

        Raises:
            StoreError, LogError: the first failed commit, after every other batch is done.
        """
        run = _Run(self._pool, self._depth, on_result)
        try:
            for instance, frames in jobs:
                run.submit(instance, frames)
        finally:
            run.drain()
        if run.error is not None:
            raise run.error
        return run.results

    def close(self) -> None:
        """Wait for running commits and stop the threads."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Run:
    """The state of one :meth:`Committer.ingest` call."""

    def __init__(self, pool: ThreadPoolExecutor, depth: int, on_result: OnResult | None) -> None:
        self.pool = pool
        self.depth = depth
        self.on_result = on_result
        self.pending: deque[_Pending] = deque()
        self.last: dict[int, tuple[Future[IngestResult], Future[IngestResult]]] = {}
        self.failed: set[int] = set()
        self.results: list[IngestResult] = []
        self.error: BaseException | None = None

    def submit(self, instance: GatewayInstance, frames: Frames) -> None:
        """Process and write a batch here and hand its commit to the pool.

        The rows are written on this thread (a worker inserting them would wait for the GIL
        after every row); the batch is processed while the instance's previous transaction
        commits, and written once that has committed (its instance takes no batch once a
        transaction failed). A store with a writer process is handed the batch at once,
        without waiting for the previous commit: the writer runs an instance's batches in
        order and refuses every one after a batch that failed. The log entries wait for this
        commit and for the previous batch's log entries.
        """
        key = id(instance)
        if key in self.failed:
            return
        outcome = instance.process(frames)
        before_store, before_log = self.last.get(key, (None, None))
        # A store with a writer process takes the batch while the one before is still
        # being written; the writer refuses it should that one fail.
        if _failed(before_store, wait=not instance.store.pipelined):
            stored = logged = _refused(_SkippedError())
        else:
            try:
                staged = instance.stage_batch(outcome)
            except Exception as exc:  # StoreError (or RequestError): nothing was written
                stored = logged = _refused(exc)
            else:
                stored = Future()
                try:
                    logged = self.pool.submit(
                        _commit_and_log, instance, outcome, staged, stored, before_log
                    )
                except BaseException:
                    staged.rollback()
                    raise
        self.last[key] = (stored, logged)
        self.pending.append(_Pending(instance, len(frames), outcome, logged))
        while len(self.pending) > self.depth:
            self._collect(self.pending.popleft())

    def drain(self) -> None:
        """Collect every batch still in flight."""
        while self.pending:
            self._collect(self.pending.popleft())

    def _collect(self, item: _Pending) -> None:
        instance = item.instance
        try:
            result = item.logged.result()
        except _SkippedError:
            return
        except BaseException as exc:  # the transaction or its log entries failed
            instance.pipeline.discard()
            self.failed.add(id(instance))
            if self.error is None:
                self.error = exc
            return
        instance.settle(item.frames, item.outcome, result)
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(instance, result)
