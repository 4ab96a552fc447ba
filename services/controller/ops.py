"""The operations of the test API, registered in :data:`operations.REGISTRY`.

Each acts through the services' bus requests; parameters are checked by their spec
before anything is sent, and the services check them again.
Importing this module registers them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from smtestbed.proto import topics
from smtestbed.services._runtime.errors import PeerError, RemoteError, RequestError
from smtestbed.services.controller.operations import OpContext, Param, operation

METER = Param(name="meter", type="string", required=True, description="8-digit meter id")
GATEWAY = Param(
    name="gateway", type="string", description="gateway instance (default: the only one)"
)
SERVICE = Param(name="service", type="string", description="gateway service (default: the first)")


def _gw(ctx: OpContext, p: dict[str, Any]) -> str:
    return str(p.get("service") or ctx.topology.gateways[0])


def _gw_params(p: dict[str, Any], *names: str) -> dict[str, Any]:
    out = {n: p[n] for n in names if p.get(n) is not None}
    if p.get("gateway"):
        out["gateway"] = p["gateway"]
    return out


async def _farm(ctx: OpContext, method: str, params: dict[str, Any]) -> Any:
    return await ctx.request(ctx.topology.sensorfarm, method, params)


# -- set ---------------------------------------------------------------------------------


@operation(
    "meter_counter",
    "set",
    "Set one value of a meter in the sensor farm (meter.set_counter)",
    METER,
    Param(name="column", type="string", required=True, description="value name, e.g. volume_m3"),
    Param(name="value", type="number", required=True, description="new value in the column's unit"),
    Param(
        name="allow_backwards", type="boolean", default=False, description="let a counter go back"
    ),
)
async def meter_counter(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await _farm(ctx, topics.METER_SET_COUNTER, p)


@operation(
    "meter_key",
    "set",
    "Give a meter a new AES-128 key at the meter only (meter.set_key)",
    METER,
    Param(name="key", type="string", required=True, description="32 hex digits"),
)
async def meter_key(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await _farm(ctx, topics.METER_SET_KEY, p)


@operation(
    "meter_sending",
    "set",
    "Stop or resume a meter's sending (meter.stop / meter.resume); it keeps counting",
    METER,
    Param(name="sending", type="boolean", required=True, description="false: stop, true: resume"),
)
async def meter_sending(ctx: OpContext, p: dict[str, Any]) -> Any:
    method = topics.METER_RESUME if p["sending"] else topics.METER_STOP
    return await _farm(ctx, method, {"meter": p["meter"]})


@operation(
    "meter_interval",
    "set",
    "Change a meter's sending interval (meter.set_interval)",
    METER,
    Param(name="interval_s", type="number", required=True, minimum=1.0, description="s"),
)
async def meter_interval(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await _farm(ctx, topics.METER_SET_INTERVAL, p)


@operation(
    "corrupt_frames",
    "set",
    "Corrupt a meter's next frames (last CRC fails; meter.corrupt)",
    METER,
    Param(name="frames", type="integer", default=1, minimum=1, description="how many frames"),
)
async def corrupt_frames(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await _farm(ctx, topics.METER_CORRUPT, p)


def _given(p: dict[str, Any]) -> dict[str, Any]:
    """Return the parameters the caller gave (optional ones left out are None)."""
    return {k: v for k, v in p.items() if v is not None}


@operation(
    "meter_replay",
    "act",
    "Re-send a meter's last telegrams byte-identical on the radio, as an attacker who recorded"
    " them (meter.replay)",
    METER,
    Param(name="count", type="integer", default=1, minimum=1, description="telegrams, 1..16"),
    Param(name="at", type="number", description="simulation time to send them, s (next window)"),
)
async def meter_replay(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await _farm(ctx, topics.METER_REPLAY, _given(p))


@operation(
    "channel_fault",
    "set",
    "Set a receiver's fault in the channel (channel.set_fault)",
    Param(name="receiver", type="string", required=True, description="receiver (gateway) name"),
    Param(name="extra_loss_db", type="number", description="extra path loss, dB"),
    Param(name="noise_rise_db", type="number", description="noise floor rise, dB"),
    Param(name="down", type="boolean", description="receiver hears nothing"),
    Param(name="clear", type="boolean", description="clear earlier faults first"),
)
async def channel_fault(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(ctx.topology.channel, topics.CHANNEL_SET_FAULT, _given(p))


@operation(
    "force_collision",
    "set",
    "Make the channel collide the next frames (channel.force_collision)",
    Param(name="count", type="integer", default=1, minimum=1, description="frames to collide"),
    Param(name="meter", type="integer", description="only this meter's frames (row number)"),
)
async def force_collision(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(ctx.topology.channel, topics.CHANNEL_FORCE_COLLISION, _given(p))


@operation(
    "relay",
    "set",
    "Open or close a relay of the I/O board (iohw.relay)",
    Param(name="relay", type="integer", required=True, minimum=0, description="relay number"),
    Param(name="closed", type="boolean", required=True, description="true: closed (conducting)"),
)
async def relay(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(ctx.topology.iohw, topics.IOHW_RELAY, p)


@operation(
    "dac",
    "set",
    "Set a DAC output of the I/O board (iohw.dac)",
    Param(name="channel", type="integer", required=True, minimum=0, description="DAC channel"),
    Param(name="volts", type="number", required=True, description="output voltage, V"),
)
async def dac(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(ctx.topology.iohw, topics.IOHW_DAC, p)


@operation(
    "gateway_add_meter",
    "set",
    "Register a meter at a gateway instance (gateway.add_meter)",
    METER,
    Param(name="manufacturer", type="string", required=True, description="3-letter code"),
    Param(name="key", type="string", default="", description="32 hex digits"),
    Param(name="security", type="integer", default=5, choices=(0, 5, 7), description="mode"),
    Param(name="tafs", type="array", default=[], description="TAF names"),
    Param(name="consumer", type="string", default="", description="consumer id"),
    Param(name="emt", type="string", default="", description="EMT receiving the data"),
    Param(name="replace", type="boolean", default=False, description="replace an entry"),
    GATEWAY,
    SERVICE,
)
async def gateway_add_meter(ctx: OpContext, p: dict[str, Any]) -> Any:
    names = ("meter", "manufacturer", "key", "security", "tafs", "consumer", "emt", "replace")
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_ADD_METER, _gw_params(p, *names))


@operation(
    "gateway_remove_meter",
    "set",
    "Remove a meter from a gateway instance (gateway.remove_meter)",
    METER,
    GATEWAY,
    SERVICE,
)
async def gateway_remove_meter(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_REMOVE_METER, _gw_params(p, "meter"))


@operation(
    "gateway_assign_taf",
    "set",
    "Assign tariff use cases to a registered meter (gateway.assign_taf)",
    METER,
    Param(name="tafs", type="array", required=True, description="TAF names, e.g. [taf1, taf6]"),
    GATEWAY,
    SERVICE,
)
async def gateway_assign_taf(ctx: OpContext, p: dict[str, Any]) -> Any:
    params = _gw_params(p, "meter", "tafs")
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_ASSIGN_TAF, params)


# -- act ---------------------------------------------------------------------------------


@operation(
    "advance",
    "act",
    "Advance simulated time (sensorfarm.advance), then wait until every gateway service "
    "has committed everything up to it (gateway.sync)",
    Param(name="by", type="number", minimum=0.0, description="seconds to advance"),
    Param(name="to", type="number", description="simulation time to advance to, s"),
    Param(name="timeout_s", type="number", default=60.0, minimum=0.1, description="wall time"),
)
async def advance(ctx: OpContext, p: dict[str, Any]) -> Any:
    if (p["by"] is None) == (p["to"] is None):
        raise RequestError("give exactly one of 'by' and 'to'", field="by")
    target = {"by": p["by"]} if p["by"] is not None else {"to": p["to"]}
    timeout = float(p["timeout_s"])
    try:
        farm = await ctx.request(
            ctx.topology.sensorfarm, topics.SENSORFARM_ADVANCE, target, timeout
        )
    except RemoteError as exc:
        if exc.code != "unknown_method":
            raise
        farm = await _follow_free_clock(ctx, target, timeout)
    until = float(farm["now"])
    synced = {}
    for service in ctx.topology.gateways:
        synced[service] = await _sync(ctx, service, until, timeout)
    return {"now": until, "sensorfarm": farm, "gateways": synced}


async def _sync(ctx: OpContext, service: str, until: float, timeout: float) -> Any:
    params = {"until": until, "timeout_s": timeout}
    try:
        return await ctx.request(service, topics.GATEWAY_SYNC, params, timeout + 5.0)
    except RemoteError as exc:
        if exc.code != "unknown_method":
            raise
        return await _wait_clock(ctx, service, until, timeout)


async def _follow_free_clock(ctx: OpContext, target: dict[str, Any], timeout: float) -> Any:
    """A farm without step control runs by itself: wait until it has passed the target."""
    ping = await ctx.request(ctx.topology.sensorfarm, topics.SERVICE_PING)
    until = float(target["to"]) if "to" in target else float(ping["t_sim"]) + target["by"]
    return {**await _wait_clock(ctx, ctx.topology.sensorfarm, until, timeout), "free": True}


async def _wait_clock(ctx: OpContext, service: str, until: float, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        now = float((await ctx.request(service, topics.SERVICE_PING))["t_sim"])
        if now >= until:
            return {"now": now}
        if time.monotonic() > deadline:
            raise PeerError(f"{service} reached only t={now} of {until} within {timeout:g} s")
        await asyncio.sleep(0.05)


@operation(
    "readout",
    "act",
    "TAF6 readout of a meter on demand (gateway.taf6_readout)",
    METER,
    GATEWAY,
    SERVICE,
)
async def readout(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_TAF6_READOUT, _gw_params(p, "meter"))


@operation(
    "push_update",
    "act",
    "Push a firmware update bundle to a gateway instance (gateway.push_update)",
    Param(name="bundle", type="any", required=True, description="the update bundle"),
    GATEWAY,
    SERVICE,
)
async def push_update(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_PUSH_UPDATE, _gw_params(p, "bundle"))


@operation("cut_line", "act", "Interrupt the sensor farm's wired M-Bus line (meter.cut_line)")
async def cut_line(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await _farm(ctx, topics.METER_CUT_LINE, {})


@operation("restore_line", "act", "Restore the wired M-Bus line (meter.restore_line)")
async def restore_line(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await _farm(ctx, topics.METER_RESTORE_LINE, {})


# -- observe -----------------------------------------------------------------------------


@operation("mark", "observe", "Return the event log's current index (events after it are new)")
async def mark(ctx: OpContext, p: dict[str, Any]) -> Any:
    return {"mark": ctx.events.mark()}


@operation(
    "wait_event",
    "observe",
    "Wait for the first event of a kind whose body matches (dotted keys) after a mark",
    Param(
        name="kind",
        type="string",
        required=True,
        description="event kind, e.g. gateway.frame_rejected",
    ),
    Param(name="match", type="object", default={}, description="dotted key -> value"),
    Param(name="timeout_s", type="number", default=10.0, minimum=0.0, description="wall time, s"),
    Param(name="since", type="integer", default=0, minimum=0, description="mark to search from"),
)
async def wait_event(ctx: OpContext, p: dict[str, Any]) -> Any:
    if not topics.is_known(p["kind"]):
        raise RequestError(f"{p['kind']!r} is not an event of this testbed", field="kind")
    event = await ctx.events.wait_event(
        p["kind"], p["match"], timeout_s=p["timeout_s"], since=p["since"]
    )
    return {"found": event is not None, "event": event.to_map() if event else None}


@operation(
    "events",
    "observe",
    "List logged events from a mark (optionally of one kind)",
    Param(name="since", type="integer", default=0, minimum=0, description="mark"),
    Param(name="kind", type="string", default="", description="only this kind"),
    Param(name="limit", type="integer", default=1000, minimum=1, description="at most"),
)
async def events(ctx: OpContext, p: dict[str, Any]) -> Any:
    rows = ctx.events.since(p["since"], p["kind"], p["limit"])
    return {"mark": ctx.events.mark(), "events": [e.to_map() for e in rows]}


@operation("meter", "observe", "A meter's state in the sensor farm (meter.get)", METER)
async def meter(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await _farm(ctx, topics.METER_GET, p)


@operation(
    "readings",
    "observe",
    "Stored readings of a meter at a gateway instance (gateway.readings)",
    METER,
    Param(name="t0", type="number", description="from, s"),
    Param(name="t1", type="number", description="to, s"),
    Param(name="limit", type="integer", default=1000, minimum=1, description="at most"),
    GATEWAY,
    SERVICE,
)
async def readings(ctx: OpContext, p: dict[str, Any]) -> Any:
    params = _gw_params(p, "meter", "t0", "t1", "limit")
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_READINGS, params)


@operation(
    "read_log",
    "observe",
    "Entries of a gateway log: system, calibration or consumer-<id> (gateway.read_log)",
    Param(name="log", type="string", default="system", description="log name"),
    Param(name="from_seq", type="integer", minimum=1, description="first entry"),
    Param(name="limit", type="integer", default=1000, minimum=1, description="at most"),
    GATEWAY,
    SERVICE,
)
async def read_log(ctx: OpContext, p: dict[str, Any]) -> Any:
    params = _gw_params(p, "log", "from_seq", "limit")
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_READ_LOG, params)


@operation(
    "verify_log",
    "observe",
    "Verify a gateway log's hash chain and signatures (gateway.verify_log)",
    Param(name="log", type="string", default="system", description="log name"),
    GATEWAY,
    SERVICE,
)
async def verify_log(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_VERIFY_LOG, _gw_params(p, "log"))


@operation(
    "gateway_status",
    "observe",
    "Counters of a gateway instance (gateway.status)",
    Param(name="digest", type="boolean", default=False, description="add the store digest"),
    GATEWAY,
    SERVICE,
)
async def gateway_status(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_STATUS, _gw_params(p, "digest"))


@operation(
    "meters",
    "observe",
    "The meters registered at a gateway instance (gateway.list_meters)",
    GATEWAY,
    SERVICE,
)
async def meters(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_LIST_METERS, _gw_params(p))


@operation(
    "emt_queue",
    "observe",
    "TAF records queued for an EMT at a gateway instance (gateway.emt_queue)",
    Param(name="emt", type="string", required=True, description="EMT name"),
    Param(name="limit", type="integer", default=1000, minimum=1, description="at most"),
    GATEWAY,
    SERVICE,
)
async def emt_queue(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(_gw(ctx, p), topics.GATEWAY_EMT_QUEUE, _gw_params(p, "emt", "limit"))


@operation(
    "adc",
    "observe",
    "Read an ADC input of the I/O board (iohw.adc)",
    Param(name="channel", type="integer", required=True, minimum=0, description="ADC channel"),
)
async def adc(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(ctx.topology.iohw, topics.IOHW_ADC, p)


@operation(
    "counters",
    "observe",
    "A service's counters (service.get_counters)",
    Param(name="service", type="string", required=True, description="instance name on the bus"),
)
async def counters(ctx: OpContext, p: dict[str, Any]) -> Any:
    return await ctx.request(p["service"], topics.SERVICE_COUNTERS_GET)


@operation("clock", "observe", "Simulation time of the sensor farm and every gateway service")
async def clock(ctx: OpContext, p: dict[str, Any]) -> Any:
    names = (ctx.topology.sensorfarm, *ctx.topology.gateways)
    pings = [await ctx.request(n, topics.SERVICE_PING) for n in names]
    return {n: float(ping["t_sim"]) for n, ping in zip(names, pings, strict=True)}


# Operations of the security scenarios (firmware, the gateway's disk, WAN parties) and of the
# PKI (CA, certificate rotation) live in their own modules; they use the parameters above, so
# they are imported last.
from smtestbed.services.controller import ops_pki, ops_security  # noqa: E402

_ = ops_security, ops_pki
