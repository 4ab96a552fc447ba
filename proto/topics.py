"""Topic and request names of the bus, defined once.

Events are published as ``<area>.<what>`` (dotted, lower case); request
methods use the same style and name the service that answers them first.
An envelope whose ``kind`` is not listed here is rejected, never guessed.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

# -- events: bus and broker -------------------------------------------------
BUS_REJECTED = "bus.rejected"
BUS_GAP = "bus.gap"
BROKER_SERVICE_UP = "broker.service_up"
BROKER_SERVICE_DEAD = "broker.service_dead"
BROKER_SERVICE_GONE = "broker.service_gone"

# -- events: every service's lifecycle --------------------------------------
SERVICE_READY = "service.ready"
SERVICE_STOPPING = "service.stopping"
SERVICE_COUNTERS = "service.counters"

# -- events: supervisor ------------------------------------------------------
SUPERVISOR_STARTED = "supervisor.started"
SUPERVISOR_CRASHED = "supervisor.crashed"
SUPERVISOR_RESTARTED = "supervisor.restarted"
SUPERVISOR_STOPPED = "supervisor.stopped"

# -- events: sample service (demo publisher) ----------------------------------
SAMPLE_TICK = "sample.tick"

# -- events: sensor farm and channel -------------------------------------------
METER_MANIPULATED = "meter.manipulated"
SENSORFARM_WINDOW = "sensorfarm.window"
CHANNEL_WINDOW = "channel.window"
CHANNEL_FAULT = "channel.fault"

# -- events: gateway ------------------------------------------------------------
GATEWAY_FRAME_ACCEPTED = "gateway.frame_accepted"
GATEWAY_FRAME_REJECTED = "gateway.frame_rejected"
GATEWAY_INTEGRITY_VIOLATION = "gateway.integrity_violation"
GATEWAY_UPDATE_INSTALLED = "gateway.update_installed"
GATEWAY_UPDATE_REFUSED = "gateway.update_refused"
GATEWAY_METER_CHANGED = "gateway.meter_changed"
GATEWAY_TAF_DATA = "gateway.taf_data"
GATEWAY_METER_MISSING = "gateway.meter_missing"
GATEWAY_INGEST_FAILED = "gateway.ingest_failed"

# -- events: PKI and WAN -------------------------------------------------------
CA_CERT_ISSUED = "ca.cert_issued"
CA_CERT_REVOKED = "ca.cert_revoked"
CA_CRL_PUBLISHED = "ca.crl_published"
CA_REQUEST_REFUSED = "ca.request_refused"
WAN_TLS_REFUSED = "wan.tls_refused"
WAN_ADMIN_REFUSED = "wan.admin_refused"
WAN_CRL_UPDATED = "wan.crl_updated"
HAN_TLS_REFUSED = "han.tls_refused"
HAN_ACCESS_REFUSED = "han.access_refused"
WAN_WAKEUP_ACCEPTED = "wan.wakeup_accepted"
WAN_WAKEUP_REFUSED = "wan.wakeup_refused"
WAN_WAKEUP_FAILED = "wan.wakeup_failed"
GATEWAY_CERT_ROTATED = "gateway.cert_rotated"
GATEWAY_CERT_REFUSED = "gateway.cert_refused"
HAN_CRL_UPDATED = "han.crl_updated"

# -- events: TAF delivery to the EMTs ------------------------------------------
GATEWAY_EMT_DELIVERED = "gateway.emt_delivered"
GATEWAY_EMT_DELIVERY_FAILED = "gateway.emt_delivery_failed"
EMT_DELIVERY_ACCEPTED = "emt.delivery_accepted"
EMT_DELIVERY_REFUSED = "emt.delivery_refused"

# -- events: CLS proxy channels (CLS device on the HAN <-> its EMT, through the gateway) --
GATEWAY_CLS_CHANNEL_OPENED = "gateway.cls_channel_opened"
GATEWAY_CLS_CHANNEL_CLOSED = "gateway.cls_channel_closed"
GATEWAY_CLS_CHANNEL_FAILED = "gateway.cls_channel_failed"
EMT_CLS_CHANNEL_OPENED = "emt.cls_channel_opened"
EMT_CLS_RECEIVED = "emt.cls_received"
EMT_CLS_CHANNEL_CLOSED = "emt.cls_channel_closed"

# -- events: legal time from the WAN time service --------------------------------
GATEWAY_TIME_DEVIATION = "gateway.time_deviation"

# -- events: manipulation I/O board ---------------------------------------------
IOHW_CHANGED = "iohw.changed"
IOHW_REQUEST_REFUSED = "iohw.request_refused"

# -- simulation plane --------------------------------------------------------
FRAME_BATCH = "sim.frames"
RECEIVED_BATCH = "sim.received"

# -- requests ----------------------------------------------------------------
BROKER_STATUS = "broker.status"
SERVICE_PING = "service.ping"
SERVICE_COUNTERS_GET = "service.get_counters"
SAMPLE_ECHO = "sample.echo"
SAMPLE_ADD = "sample.add"
SAMPLE_SLEEP = "sample.sleep"
RPC_REPLY = "rpc.reply"
METER_GET = "meter.get"
METER_SET_COUNTER = "meter.set_counter"
METER_SET_KEY = "meter.set_key"
METER_STOP = "meter.stop"
METER_RESUME = "meter.resume"
METER_CORRUPT = "meter.corrupt"
METER_SET_INTERVAL = "meter.set_interval"
METER_CUT_LINE = "meter.cut_line"
METER_RESTORE_LINE = "meter.restore_line"
METER_SET_LOAD = "meter.set_load"
METER_REPLAY = "meter.replay"
SENSORFARM_ADVANCE = "sensorfarm.advance"
SENSORFARM_NOW = "sensorfarm.now"
CHANNEL_FORCE_COLLISION = "channel.force_collision"
CHANNEL_SET_FAULT = "channel.set_fault"
GATEWAY_STATUS = "gateway.status"
GATEWAY_ADD_METER = "gateway.add_meter"
GATEWAY_REMOVE_METER = "gateway.remove_meter"
GATEWAY_ASSIGN_TAF = "gateway.assign_taf"
GATEWAY_LIST_METERS = "gateway.list_meters"
GATEWAY_READINGS = "gateway.readings"
GATEWAY_TAF6_READOUT = "gateway.taf6_readout"
GATEWAY_EMT_QUEUE = "gateway.emt_queue"
GATEWAY_EMT_ACK = "gateway.emt_ack"
GATEWAY_READ_LOG = "gateway.read_log"
GATEWAY_PUSH_UPDATE = "gateway.push_update"
GATEWAY_SYNC = "gateway.sync"
GATEWAY_VERIFY_LOG = "gateway.verify_log"
EMT_RECORDS = "emt.records"
EMT_CLS_SEND = "emt.cls_send"
IOHW_RELAY = "iohw.relay"
IOHW_DIO = "iohw.dio"
IOHW_DAC = "iohw.dac"
IOHW_ADC = "iohw.adc"
IOHW_STATUS = "iohw.status"
IOHW_UART = "iohw.uart"
IOHW_I2C_READ = "iohw.i2c_read"
IOHW_I2C_WRITE = "iohw.i2c_write"
IOHW_SPI_TRANSFER = "iohw.spi_transfer"

EVENTS: frozenset[str] = frozenset(
    {
        BUS_REJECTED,
        BUS_GAP,
        BROKER_SERVICE_UP,
        BROKER_SERVICE_DEAD,
        BROKER_SERVICE_GONE,
        SERVICE_READY,
        SERVICE_STOPPING,
        SERVICE_COUNTERS,
        SUPERVISOR_STARTED,
        SUPERVISOR_CRASHED,
        SUPERVISOR_RESTARTED,
        SUPERVISOR_STOPPED,
        SAMPLE_TICK,
        METER_MANIPULATED,
        SENSORFARM_WINDOW,
        CHANNEL_WINDOW,
        CHANNEL_FAULT,
        GATEWAY_FRAME_ACCEPTED,
        GATEWAY_FRAME_REJECTED,
        GATEWAY_INTEGRITY_VIOLATION,
        GATEWAY_UPDATE_INSTALLED,
        GATEWAY_UPDATE_REFUSED,
        GATEWAY_METER_CHANGED,
        GATEWAY_TAF_DATA,
        GATEWAY_METER_MISSING,
        GATEWAY_INGEST_FAILED,
        CA_CERT_ISSUED,
        CA_CERT_REVOKED,
        CA_CRL_PUBLISHED,
        CA_REQUEST_REFUSED,
        WAN_TLS_REFUSED,
        WAN_ADMIN_REFUSED,
        WAN_CRL_UPDATED,
        HAN_TLS_REFUSED,
        HAN_ACCESS_REFUSED,
        WAN_WAKEUP_ACCEPTED,
        WAN_WAKEUP_REFUSED,
        WAN_WAKEUP_FAILED,
        GATEWAY_CERT_ROTATED,
        GATEWAY_CERT_REFUSED,
        HAN_CRL_UPDATED,
        GATEWAY_CLS_CHANNEL_OPENED,
        GATEWAY_CLS_CHANNEL_CLOSED,
        GATEWAY_CLS_CHANNEL_FAILED,
        EMT_CLS_CHANNEL_OPENED,
        EMT_CLS_RECEIVED,
        EMT_CLS_CHANNEL_CLOSED,
        GATEWAY_EMT_DELIVERED,
        GATEWAY_EMT_DELIVERY_FAILED,
        EMT_DELIVERY_ACCEPTED,
        EMT_DELIVERY_REFUSED,
        GATEWAY_TIME_DEVIATION,
        IOHW_CHANGED,
        IOHW_REQUEST_REFUSED,
        FRAME_BATCH,
        RECEIVED_BATCH,
    }
)

REQUESTS: frozenset[str] = frozenset(
    {
        BROKER_STATUS,
        SERVICE_PING,
        SERVICE_COUNTERS_GET,
        SAMPLE_ECHO,
        SAMPLE_ADD,
        SAMPLE_SLEEP,
        RPC_REPLY,
        METER_GET,
        METER_SET_COUNTER,
        METER_SET_KEY,
        METER_STOP,
        METER_RESUME,
        METER_CORRUPT,
        METER_SET_INTERVAL,
        METER_CUT_LINE,
        METER_RESTORE_LINE,
        METER_SET_LOAD,
        METER_REPLAY,
        SENSORFARM_ADVANCE,
        SENSORFARM_NOW,
        CHANNEL_FORCE_COLLISION,
        CHANNEL_SET_FAULT,
        GATEWAY_STATUS,
        GATEWAY_ADD_METER,
        GATEWAY_REMOVE_METER,
        GATEWAY_ASSIGN_TAF,
        GATEWAY_LIST_METERS,
        GATEWAY_READINGS,
        GATEWAY_TAF6_READOUT,
        GATEWAY_EMT_QUEUE,
        GATEWAY_EMT_ACK,
        GATEWAY_READ_LOG,
        GATEWAY_PUSH_UPDATE,
        GATEWAY_SYNC,
        GATEWAY_VERIFY_LOG,
        EMT_RECORDS,
        EMT_CLS_SEND,
        IOHW_RELAY,
        IOHW_DIO,
        IOHW_DAC,
        IOHW_ADC,
        IOHW_STATUS,
        IOHW_UART,
        IOHW_I2C_READ,
        IOHW_I2C_WRITE,
        IOHW_SPI_TRANSFER,
    }
)

# -- requests: the controller's test API, one per operation (controller.<operation>) --
CONTROLLER_OPERATIONS: tuple[str, ...] = (
    "adc",
    "advance",
    "certificate",
    "channel_fault",
    "clock",
    "corrupt_frames",
    "counters",
    "cut_line",
    "dac",
    "emt_queue",
    "events",
    "force_collision",
    "gateway_add_meter",
    "gateway_assign_taf",
    "gateway_remove_meter",
    "gateway_status",
    "installed_firmware",
    "mark",
    "meter",
    "meter_counter",
    "meter_interval",
    "meter_key",
    "meter_replay",
    "meter_sending",
    "meters",
    "pki_identity",
    "push_firmware",
    "push_update",
    "read_log",
    "readings",
    "readout",
    "relay",
    "restore_line",
    "revoke",
    "rotate_certificate",
    "tamper_log",
    "verify_log",
    "wait_event",
    "wan_request",
)
CONTROLLER_REQUESTS: frozenset[str] = frozenset(f"controller.{op}" for op in CONTROLLER_OPERATIONS)
REQUESTS = REQUESTS | CONTROLLER_REQUESTS

KINDS: frozenset[str] = EVENTS | REQUESTS


def is_valid_name(name: str) -> bool:
    """Return True when ``name`` is a well-formed dotted lower-case topic."""
    return bool(_NAME.match(name))


def is_known(kind: str) -> bool:
    """Return True when ``kind`` is a topic or request defined in this module."""
    return kind in KINDS


def matches(kind: str, patterns: tuple[str, ...]) -> bool:
    """Return True when ``kind`` starts with one of ``patterns`` (empty = all).

    This is the same prefix rule ZeroMQ subscriptions use, so a filter given
    on the command line selects the same events locally and at the broker.
    """
    return not patterns or any(kind.startswith(p) for p in patterns)
