"""The channel service: frame batches in (PULL), received batches out (PUSH), per window.

For every ``sim.frames`` batch it publishes the ``sim.received`` batch of what each receiver
heard and a ``channel.window`` event with the window's counters. The output carries the
window's ``t_sim`` and holds every receiver's rows (column ``receiver``, names in
``meta["receivers"]``); an empty window gives an empty output batch, in order, so that under
stepped control (``sensorfarm.advance``) the gateways follow time and see each window end.
Requests:

- ``channel.force_collision`` ``{"count": n, "meter": m}``: collide the next ``n`` frames of
  meter ``m`` (of any meter without ``meter``) at every receiver;
- ``channel.set_fault`` ``{"receiver": name, "extra_loss_db": x, "noise_rise_db": y,
  "down": bool}``: set the given fault fields of one receiver (``"clear": true`` resets it).

Both answer with the resulting state and publish it as a ``channel.fault`` event. Malformed
parameters are answered with an error naming the field; the service keeps running.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime.bus import BatchPuller, BatchPusher
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.channel.config import ChannelConfig, scene_from_config
from smtestbed.services.channel.model import ChannelInputError, ChannelModel, ReceiverFault


class ChannelRequestError(TestbedError):
    """A channel request's parameters are malformed; the message names the field."""


class Channel(Service):
    """Decide, window by window, which frames each receiver hears and with which bit errors."""

    service: ClassVar[str] = "channel"
    config_class: ClassVar[type[ChannelConfig]] = ChannelConfig

    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.model = ChannelModel(scene_from_config(config))
        self.windows = 0
        self.frames_in = 0
        self.frames_out = 0
        self.batches_rejected = 0

    async def run(self, ready: Ready) -> None:
        """Register the requests, open the batch sockets, then process windows until cancelled."""
        self.bus.handle(topics.CHANNEL_FORCE_COLLISION, self._force_collision)
        self.bus.handle(topics.CHANNEL_SET_FAULT, self._set_fault)
        puller = BatchPuller(self.bus.ctx, self.cfg.input_endpoint, on_reject=self._rejected)
        pusher = BatchPusher(self.bus.ctx, self.cfg.output_endpoint, src=self.bus.name)
        try:
            self.model.warm_up()
            await self.bus.publisher.wait_connected(2.0)
            ready.set()
            while True:
                env, batch = await puller.recv()
                await self._window(env, batch, pusher)
        finally:
            puller.close()
            pusher.close()

    async def _window(self, env: Envelope, batch: FrameBatch, pusher: BatchPusher) -> None:
        if env.kind != topics.FRAME_BATCH:
            self._rejected("batch_kind", f"expected {topics.FRAME_BATCH}, got {env.kind}")
            return
        try:
            result = self.model.process(batch)
        except ChannelInputError as exc:
            self._rejected(exc.reason, str(exc))
            return
        self.windows += 1
        self.frames_in += batch.count
        self.frames_out += result.batch.count
        await pusher.send(result.batch, t_sim=env.t_sim, kind=topics.RECEIVED_BATCH)
        self.bus.publish(topics.CHANNEL_WINDOW, result.counters, t_sim=env.t_sim)

    def _rejected(self, reason: str, message: str) -> None:
        self.batches_rejected += 1
        self.bus.rejects.report(reason, message, where=f"{self.bus.name}/frames")

    async def _force_collision(self, params: Any, env: Envelope) -> Any:
        params = _table(params, topics.CHANNEL_FORCE_COLLISION)
        _only(params, ("count", "meter"), topics.CHANNEL_FORCE_COLLISION)
        count = _integer(params, "count", 1, lo=1, hi=1_000_000)
        meter = params.get("meter")
        forced = self.model.forced
        if meter is None:
            forced.any += count
        else:
            meter = _integer(params, "meter", 0, lo=0, hi=2**32 - 1)
            forced.per_meter[meter] = forced.per_meter.get(meter, 0) + count
        state = {
            "action": "force_collision",
            "count": count,
            "meter": meter,
            "pending_any": forced.any,
            "pending_meter": forced.per_meter.get(meter, 0) if meter is not None else 0,
        }
        self.bus.publish(topics.CHANNEL_FAULT, state)
        return state

    async def _set_fault(self, params: Any, env: Envelope) -> Any:
        method = topics.CHANNEL_SET_FAULT
        params = _table(params, method)
        _only(params, ("receiver", "extra_loss_db", "noise_rise_db", "down", "clear"), method)
        name = params.get("receiver")
        if name not in self.model.faults:
            known = ", ".join(self.model.names)
            raise ChannelRequestError(f"{method}: receiver: {name!r} is not one of {known}")
        fault = _fault_update(self.model.faults[name], params, method)
        self.model.faults[name] = fault
        state = {"action": "set_fault", "receiver": name, **_fault_state(fault)}
        self.bus.publish(topics.CHANNEL_FAULT, state)
        return state

    def counters(self) -> dict[str, int]:
        """Return windows processed, frames in and out, and rejected batches."""
        return {
            "windows": self.windows,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "batches_rejected": self.batches_rejected,
        }


def _fault_update(current: ReceiverFault, params: dict[str, Any], method: str) -> ReceiverFault:
    if _flag(params, "clear", False, method):
        current = ReceiverFault()
    return ReceiverFault(
        extra_loss_db=_decibels(params, "extra_loss_db", current.extra_loss_db, method),
        noise_rise_db=_decibels(params, "noise_rise_db", current.noise_rise_db, method),
        down=_flag(params, "down", current.down, method),
    )


def _fault_state(fault: ReceiverFault) -> dict[str, Any]:
    return {
        "extra_loss_db": fault.extra_loss_db,
        "noise_rise_db": fault.noise_rise_db,
        "down": fault.down,
    }


def _table(params: Any, method: str) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ChannelRequestError(f"{method}: parameters must be a map, got {params!r}")
    return params


def _only(params: dict[str, Any], keys: tuple[str, ...], method: str) -> None:
    for key in params:
        if key not in keys:
            raise ChannelRequestError(
                f"{method}: {key}: unknown field (allowed: {', '.join(keys)})"
            )


def _integer(params: dict[str, Any], key: str, default: int, *, lo: int, hi: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        method = topics.CHANNEL_FORCE_COLLISION
        raise ChannelRequestError(f"{method}: {key}: needs an integer in {lo}..{hi}, got {value!r}")
    return value


def _decibels(params: dict[str, Any], key: str, default: float, method: str) -> float:
    value = params.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 <= value <= 200.0:
        raise ChannelRequestError(f"{method}: {key}: needs dB in 0..200, got {value!r}")
    return float(value)


def _flag(params: dict[str, Any], key: str, default: bool, method: str) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise ChannelRequestError(f"{method}: {key}: needs true or false, got {value!r}")
    return value
