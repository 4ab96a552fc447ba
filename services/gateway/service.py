"""The gateway service: many gateway instances behind one bus connection.

The wireless LMN driver pulls ``sim.received`` batches from the channel and
hands each instance the frames its receiver heard (with a stepped clock, the
gateway's time follows the batches' simulation time). An instance processes
them, stores the accepted readings in one transaction and only then
announces them (``gateway.frame_accepted``); every rejection is published as
``gateway.frame_rejected`` and written to the instance's system log. The
tariff runner queues TAF data for the EMTs as simulated time passes, on a
grid of ``tariff_every_s`` from the start.

``gateway.sync`` ``{"until": t_sim, "timeout_s": s}`` lets a controller that
steps time wait until every batch up to ``until`` is committed and every tariff
run due by then has finished (see :mod:`stepping`); it answers ``{"now",
"accepted", "rejected"}`` (totals over the instances).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime import cpus
from smtestbed.services._runtime.bus import BatchPuller
from smtestbed.services._runtime.errors import ConfigError, ProtocolError, RequestError
from smtestbed.services._runtime.heap import settle_heap
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.gateway import (
    api,
    certstore,
    emt_delivery,
    han,
    integrity,
    lmn_serial,
    lmn_wired,
    stepping,
    timesync,
    unsafe,
    wan,
)
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.ingest import Committer, Job
from smtestbed.services.gateway.instance import GatewayInstance, IngestResult
from smtestbed.services.gateway.logs import LogError
from smtestbed.services.gateway.processing import received_frames
from smtestbed.services.gateway.schema import Taf
from smtestbed.services.gateway.store import StoreError
from smtestbed.services.gateway.store_writer import StoreWriter
from smtestbed.services.gateway.taf_runner import TafRunner
from smtestbed.services.gateway.tariffs import TariffSchedule

Handler = Callable[[GatewayInstance, dict[str, Any], Envelope], Any]


class Gateway(Service):
    """Gateway instances, their LMN input and their bus API."""

    service: ClassVar[str] = "gateway"
    config_class: ClassVar[type[GatewayConfig]] = GatewayConfig

    def __init__(self, config: GatewayConfig) -> None:
        super().__init__(config)
        names = config.instances
        if not names or len(set(names)) != len(names):
            raise ConfigError("must name each instance once", key="gateway.instances")
        self.cfg = config
        lmn_wired.parse_lines(config.wired_lines, names)  # refuse a bad line before start
        lmn_serial.parse_inputs(config.serial_inputs, names)
        self.schedule = TariffSchedule.parse(config.tariff_schedule)
        self.skipped = unsafe.parse(config.unsafe_skip_checks)
        self.instances: dict[str, GatewayInstance] = {}
        self.committer = Committer()
        # The writer's threads on CPUs of their own: see smtestbed.services._runtime.cpus.
        self.cpu_split = (
            cpus.split(cpus.allowed())
            if config.store_writer == "process" and config.cpu_split == "auto"
            else None
        )
        self.writer = (
            StoreWriter(None if self.cpu_split is None else self.cpu_split.helper)
            if config.store_writer == "process"
            else None
        )
        self.runners: dict[str, TafRunner] = {}
        self.unrouted = 0
        self.wan: wan.WanServer | None = None
        self.han: han.HanServer | None = None
        self.senders: list[emt_delivery.EmtSender] = []
        # The time readings are stamped with: the simulation clock plus the offset the
        # WAN time sync keeps (see timesync); 0 without a time service.
        self.time = timesync.GatewayTime(self.clock.now)
        self.sync: timesync.TimeSync | None = None
        start = self.clock.now()
        self.steps = stepping.StepTracker(start, start + config.tariff_every_s)

    def open_instances(self) -> None:
        """Open (or create) every instance's folder, store, keys and logs."""
        root = Path(self.cfg.data_dir)
        if self.cpu_split is not None:
            try:
                cpus.pin_threads(self.cpu_split.service)
            except OSError as exc:
                self.log.warning("cpu_split_refused", error=str(exc))
            else:
                self.log.info(
                    "cpu_split",
                    service=cpus.format_cpus(self.cpu_split.service),
                    store_writer=cpus.format_cpus(self.cpu_split.helper),
                )
        if self.writer is not None:
            self.writer.start()
        for name in self.cfg.instances:
            inst = GatewayInstance(
                name,
                root / name,
                synchronous=self.cfg.synchronous,
                skipped=self.skipped,
                writer=self.writer,
            )
            self.instances[name] = inst
            self.runners[name] = TafRunner(inst, self.schedule, billing_day=self.cfg.billing_day)
        if self.cfg.registry_file:
            self._register_from_file(Path(self.cfg.registry_file))

    def _register_from_file(self, path: Path) -> None:
        for name, entry in api.load_registry_file(path):
            inst = self.instances.get(name)
            if inst is None:
                raise ConfigError(f"{path}: no instance {name!r}", key="gateway.registry_file")
            if inst.registry.get(entry.meter) != entry:
                inst.registry.add(entry, replace=True)
                inst.manage("meter_added", entry, by="registry_file", t_sim=self.clock.now())

    async def run(self, ready: Ready) -> None:
        """Open the instances, serve the API and ingest until cancelled."""
        if self.skipped:
            self.log.warning("unsafe_skip_checks", checks=sorted(self.skipped.names))
        self.open_instances()
        self.senders = emt_delivery.senders(
            self.cfg, self.instances, bus=self.bus, clock=self.clock.now
        )
        self.sync = timesync.time_sync(self.cfg, self.instances, time=self.time, bus=self.bus)
        wired = lmn_wired.pollers(
            self.cfg.wired_lines,
            self.instances,
            clock=self.time.now,
            announce=self._announce,
            on_missing=lambda name, body: self.bus.publish(
                topics.GATEWAY_METER_MISSING, {"gateway": name, **body}
            ),
        )
        raw = lmn_serial.inputs(
            self.cfg.serial_inputs, self.instances, clock=self.time.now, announce=self._announce
        )
        puller = BatchPuller(
            self.bus.ctx, self.cfg.input_endpoint, bind=True, on_reject=self._batch_rejected
        )
        try:
            self._register_api()
            await self._start_wan()
            await self._start_han(wired, raw)
            await self.bus.publisher.wait_connected(2.0)
            settle_heap()
            ready.set()
            await asyncio.gather(
                self.wan.run() if self.wan else asyncio.sleep(0),
                self.han.run() if self.han else asyncio.sleep(0),
                self._ingest_forever(puller),
                self._tariffs_forever(),
                self._observe_forever(),
                lmn_wired.run_pollers(wired),
                lmn_serial.run_inputs(raw),
                *(sender.run_forever() for sender in self.senders),
                self._sync_forever(),
            )
        finally:
            if self.wan:
                self.wan.close()
            if self.han:
                self.han.close()
            puller.close()
            self.committer.close()
            for inst in self.instances.values():
                inst.close()
            if self.writer is not None:
                self.writer.close()

    async def _sync_forever(self) -> None:
        if self.sync is not None:
            await self.sync.run_forever(self.clock.sleep, self.cfg.time_sync_every_s)

    async def _ingest_forever(self, puller: BatchPuller) -> None:
        while True:
            env, batch = await puller.recv()
            self._follow(env.t_sim)
            try:
                self.ingest_batch(batch)
            except ProtocolError as exc:  # a batch without the columns ingest needs
                self._batch_rejected(exc.reason, str(exc))
            except (StoreError, LogError) as exc:
                # A store transaction (or the log entries after it) failed: its readings
                # are not announced and the instance's later batches of this window are
                # not stored; ingest goes on with the next window.
                self.log.error("ingest_failed", error=str(exc))
                self.bus.publish(topics.GATEWAY_INGEST_FAILED, {"error": str(exc)})
            self.steps.ingested_to(env.t_sim)
            await asyncio.sleep(0)

    def _follow(self, t_sim: float) -> None:
        # A stepped gateway is a stage of the simulation plane: its time is that of the
        # windows it receives, so the tariff runner wakes as simulated days pass.
        if self.clock.mode == "stepped" and t_sim > self.clock.now():
            self.clock.advance_to(t_sim)

    def ingest_batch(self, batch: FrameBatch) -> dict[str, IngestResult]:
        """Route a received batch to the instances by receiver and ingest it."""
        names = batch.meta.get("receivers") or list(self.cfg.instances)
        receiver = batch.columns.get("receiver")
        frames = list(received_frames(batch))
        per: dict[str, list[tuple[bytes, float]]] = {}
        for i, frame in enumerate(frames):
            idx = int(receiver[i]) if receiver is not None else 0
            name = names[idx] if 0 <= idx < len(names) else ""
            if name in self.instances:
                per.setdefault(name, []).append(frame)
            else:
                self.unrouted += 1
        return self._ingest(per)

    def _ingest(self, per: dict[str, list[tuple[bytes, float]]]) -> dict[str, IngestResult]:
        # Commits overlap the processing of the next batch (ingest.Committer); an instance's
        # committed batches are announced together, also when another instance's failed.
        results = {name: IngestResult() for name in per}
        names = {id(inst): name for name, inst in self.instances.items()}

        def add(inst: GatewayInstance, part: IngestResult) -> None:
            result = results[names[id(inst)]]
            result.accepted += part.accepted
            result.rejected += part.rejected
            result.duplicates += part.duplicates

        try:
            self.committer.ingest(self._jobs(per), add)
        finally:
            for name, result in results.items():
                self._announce(name, result)
        return results

    def _jobs(self, per: dict[str, list[tuple[bytes, float]]]) -> Iterator[Job]:
        for name, frames in per.items():
            if self.time.offset_s:
                frames = [(raw, self.time.stamp(t_sim)) for raw, t_sim in frames]
            for start in range(0, len(frames), self.cfg.max_batch):
                yield self.instances[name], frames[start : start + self.cfg.max_batch]

    def _announce(self, name: str, result: IngestResult) -> None:
        if result.accepted:
            self.bus.publish(
                topics.GATEWAY_FRAME_ACCEPTED,
                {
                    "gateway": name,
                    "count": len(result.accepted),
                    "readings": [[r.meter, rid, r.t_sim] for r, rid in result.accepted],
                },
            )
        for rej in result.rejected:
            self.bus.publish(
                topics.GATEWAY_FRAME_REJECTED,
                {
                    "gateway": name,
                    "reason": str(rej.reason),
                    "message": rej.message,
                    "meter": rej.meter,
                    "t_sim": rej.t_sim,
                },
            )

    def _batch_rejected(self, reason: str, message: str) -> None:
        self.bus.rejects.report(reason, message, where=f"{self.cfg.instance}/lmn")

    async def _tariffs_forever(self) -> None:
        # Runs on a fixed grid; after a jump of the clock one run covers every due time passed.
        every = self.cfg.tariff_every_s
        while True:
            due = self.steps.tariffs_due
            await self.clock.sleep_until(due)
            self._run_tariffs()
            self.steps.tariffs_ran(stepping.next_due(due, self.clock.now(), every))

    def _run_tariffs(self) -> None:
        for name, runner in self.runners.items():
            queued = runner.run()
            if queued:
                self.bus.publish(topics.GATEWAY_TAF_DATA, {"gateway": name, "queued": queued})
        for sender in self.senders:
            sender.wake()

    async def _observe_forever(self) -> None:
        configs = [Path(self.cfg.registry_file)] if self.cfg.registry_file else []
        observer = integrity.make_observer(self.cfg, configs)
        if observer is None:
            self.log.warning("observer_off", reason="no manifest_file configured")
            return
        while True:
            violations = await asyncio.to_thread(observer.check)
            bodies = integrity.report_violations(
                list(self.instances.values()), violations, t_sim=self.clock.now()
            )
            for body in bodies:
                self.log.error("integrity_violation", **body)
                self.bus.publish(topics.GATEWAY_INTEGRITY_VIOLATION, body)
            await asyncio.sleep(self.cfg.observer_interval_s)

    def _push_update(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        result = integrity.install(
            self.cfg, inst, p.get("bundle"), by=env.src, t_sim=self.clock.now()
        )
        body = {
            "gateway": inst.name,
            "accepted": result.accepted,
            "version": result.version,
            "previous": result.previous,
            "reason": str(result.reason) if result.reason else None,
            "message": result.message,
        }
        kind = topics.GATEWAY_UPDATE_INSTALLED if result.accepted else topics.GATEWAY_UPDATE_REFUSED
        self.bus.publish(kind, body)
        return body

    async def _start_wan(self) -> None:
        if self.cfg.wan_listen or self.cfg.wakeup_listen:
            self.wan = wan.WanServer(
                self.cfg,
                handlers=self.api_handlers(),
                instances=self.instances,
                bus=self.bus,
                clock=self.clock,
                log=self.log,
                now=self.time.now,
                on_rotated=self._rotated,
            )
            await self.wan.start()

    def _rotated(self, which: str, identity: certstore.Identity) -> None:
        # The next EMT deliveries and time syncs present (or sign with) the rotated certificate.
        cert, key, chain = identity.cert, identity.key, identity.chain
        for sender in self.senders:
            if which == "sig":
                sender.signer = emt_delivery.load_signer(cert, key, chain)
            else:
                sender.tls_files = dataclasses.replace(
                    sender.tls_files, cert=cert, key=key, chain=chain
                )
        if which == "tls" and self.sync is not None:
            self.sync.tls_files = dataclasses.replace(
                self.sync.tls_files, cert=cert, key=key, chain=chain
            )

    async def _start_han(
        self, wired: list[lmn_wired.LinePoller], raw: list[lmn_serial.SerialInput]
    ) -> None:
        if self.cfg.han_listen:

            def diagnostics() -> dict[str, Any]:
                lines = {p.config.url: dataclasses.asdict(p.counters) for p in wired}
                lines.update({r.config.url: dataclasses.asdict(r.counters) for r in raw})
                return {"lmn_lines": lines, "wan": self.wan.counters() if self.wan else {}}

            self.han = han.HanServer(
                self.cfg,
                instances=self.instances,
                bus=self.bus,
                clock=self.clock,
                log=self.log,
                diagnostics=diagnostics,
            )
            await self.han.start()

    def _register_api(self) -> None:
        for method, handler in self.api_handlers().items():
            self.bus.handle(method, self._wrap(handler))
        self.bus.handle(topics.GATEWAY_SYNC, self._sync)

    async def _sync(self, params: Any, env: Envelope) -> Any:
        until, timeout_s = stepping.sync_params(api.params_map(params))
        await self.steps.wait(until, timeout_s)
        totals = self.counters()
        return {
            "now": self.clock.now(),
            "accepted": totals.get("accepted", 0),
            "rejected": totals.get("rejected", 0),
        }

    def api_handlers(self) -> dict[str, Handler]:
        """Return the bus API's handlers by request name (the WAN partition runs them too)."""
        return {
            topics.GATEWAY_STATUS: self._status,
            topics.GATEWAY_ADD_METER: self._add_meter,
            topics.GATEWAY_REMOVE_METER: self._remove_meter,
            topics.GATEWAY_ASSIGN_TAF: self._assign_taf,
            topics.GATEWAY_LIST_METERS: lambda i, p, e: [
                api.entry_map(x) for x in i.registry.all()
            ],
            topics.GATEWAY_READINGS: self._readings,
            topics.GATEWAY_TAF6_READOUT: self._taf6,
            topics.GATEWAY_EMT_QUEUE: self._emt_queue,
            topics.GATEWAY_EMT_ACK: self._emt_ack,
            topics.GATEWAY_READ_LOG: lambda i, p, e: api.read_log(i, p),
            topics.GATEWAY_VERIFY_LOG: lambda i, p, e: api.verify_log(i, p, self.skipped),
            topics.GATEWAY_PUSH_UPDATE: self._push_update,
        }

    def _wrap(self, handler: Handler) -> Any:
        async def handle(params: Any, env: Envelope) -> Any:
            p = api.params_map(params)
            if handler == self._status and "gateway" not in p and len(self.instances) > 1:
                return {n: i.counters.to_map() for n, i in self.instances.items()}
            return handler(api.pick(self.instances, p), p, env)

        return handle

    def _status(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        # The digest hashes every stored reading (seconds at 10^5 readings): only on request.
        digest = {"store_digest": inst.store.digest()} if p.get("digest") is True else {}
        return {
            **digest,
            **inst.counters.to_map(),
            "gateway": inst.name,
            "meters": len(inst.registry),
            "stored": inst.store.count(),
            "key": inst.key.fingerprint,
            "public_key": str(inst.key.public_path),
            "store_writer": self.cfg.store_writer,
            "store_writer_pid": None if self.writer is None else self.writer.pid,
            "cpus": cpus.format_cpus(cpus.allowed()),
            "store_writer_cpus": _cpu_list(self.writer),
            **self.skipped.to_map(),
        }

    def _add_meter(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        entry = inst.registry.add(api.entry_from(p), replace=bool(p.get("replace", False)))
        inst.manage("meter_added", entry, by=env.src, t_sim=self.clock.now())
        self.bus.publish(
            topics.GATEWAY_METER_CHANGED,
            {"gateway": inst.name, "action": "added", **api.entry_map(entry)},
        )
        return api.entry_map(entry)

    def _remove_meter(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        entry = inst.registry.remove(api.text(p, "meter"))
        inst.manage("meter_removed", entry.meter, by=env.src, t_sim=self.clock.now())
        self.bus.publish(
            topics.GATEWAY_METER_CHANGED,
            {"gateway": inst.name, "action": "removed", "meter": entry.meter},
        )
        return api.entry_map(entry)

    def _assign_taf(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        tafs = p.get("tafs")
        if not isinstance(tafs, list) or not all(isinstance(t, str) for t in tafs):
            raise RequestError("must be a list of TAF names", field="tafs")
        entry = inst.registry.assign_tafs(api.text(p, "meter"), tafs)
        inst.manage("tafs_assigned", entry, by=env.src, t_sim=self.clock.now())
        return api.entry_map(entry)

    def _readings(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        rows = inst.store.readings(
            api.text(p, "meter"),
            api.number(p, "t0", None),
            api.number(p, "t1", None),
            limit=api.count(p, "limit", 1000, 100_000),
        )
        flagged = timesync.flagged_ids(inst.store, [rid for rid, _ in rows])
        return [
            {**api.reading_map(rid, r), **({"flagged": True} if rid in flagged else {})}
            for rid, r in rows
        ]

    def _taf6(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        meter = api.text(p, "meter")
        entry = inst.registry.get(meter)
        if entry is None:
            raise RequestError(f"meter {meter!r} is not registered", field="meter")
        if Taf.TAF6 not in entry.tafs:
            raise RequestError(f"meter {meter} has no TAF6 assigned", field="meter")
        payload = self.runners[inst.name].readout(entry, self.clock.now())
        if payload is None:
            raise RequestError(f"meter {meter} has sent no reading yet", field="meter")
        return payload

    def _emt_queue(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        records = inst.store.pending(api.text(p, "emt"), api.count(p, "limit", 100, 10_000))
        return [
            {
                "id": r.id,
                "taf": str(r.taf),
                "meter": r.meter,
                "payload": r.payload,
                "created": r.created,
            }
            for r in records
        ]

    def _emt_ack(self, inst: GatewayInstance, p: dict[str, Any], env: Envelope) -> Any:
        ids = p.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise RequestError("must be a list of queue ids", field="ids")
        return {"acknowledged": inst.store.ack(api.text(p, "emt"), ids)}

    def counters(self) -> dict[str, int]:
        """Return the totals over all instances."""
        out = {"unrouted": self.unrouted, **(self.wan.counters() if self.wan else {})}
        out["checks_skipped"] = self.skipped.total
        out.update(self.han.counters() if self.han else {})
        for inst in self.instances.values():
            c = inst.counters
            out["frames"] = out.get("frames", 0) + c.frames
            out["accepted"] = out.get("accepted", 0) + c.accepted
            out["rejected"] = out.get("rejected", 0) + sum(c.rejected.values())
        return out


def _cpu_list(writer: StoreWriter | None) -> str | None:
    """Return the CPUs of the writer process (``1`` or ``2,3``), None without one."""
    found = None if writer is None else writer.cpus
    return None if found is None else cpus.format_cpus(found)
