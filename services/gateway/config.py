"""Gateway service settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtestbed.services._runtime.config import ServiceConfig, choice, doc

HT_NT = (
    "Mon-Fri 06:00-22:00 HT",
    "Mon-Fri 00:00-06:00 NT",
    "Mon-Fri 22:00-24:00 NT",
    "Sat,Sun 00:00-24:00 NT",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig(ServiceConfig):
    """One gateway service hosts many gateway instances (one folder each)."""

    input_endpoint: str = doc("tcp://127.0.0.1:7711", "PULL endpoint (bound) for sim.received")
    data_dir: str = doc("smtb-data/gateway", "folder holding one sub-folder per instance")
    instances: tuple[str, ...] = doc(("gw0",), "instance names (the channel's receiver names)")
    registry_file: str = doc("", "CSV of meters to register at start (management action)")
    synchronous: str = choice("FULL", "FULL", "NORMAL", help="SQLite sync level of the stores")
    store_writer: str = choice(
        "process",
        "process",
        "inline",
        help="who runs the stores' ingest transactions: a child process (processing and"
        " writing on two cores) or the service's own threads",
    )
    cpu_split: str = choice(
        "auto",
        "auto",
        "off",
        help="with the writer process on a machine of two or more CPUs: the service on the"
        " lower half, the writer on the upper half (auto), or both on all of them (off)",
    )
    tariff_every_s: float = doc(900.0, "simulated time between tariff runs, s")
    tariff_schedule: tuple[str, ...] = doc(HT_NT, "TAF2 rules: 'DAYS HH:MM-HH:MM REGISTER'")
    billing_day: int = doc(1, "TAF1 billing date: this day of each month, 00:00 UTC")
    max_batch: int = doc(2000, "frames per store transaction at most")
    manifest_file: str = doc("", "signed observer manifest of the partitions (empty: no observer)")
    manifest_key: str = doc("", "public key (PEM) the manifest must be signed with")
    observer_interval_s: float = doc(60.0, "wall time between integrity checks, s")
    manufacturer_key: str = doc("", "public key (PEM) update bundles must be signed with")
    product_name: str = doc("smtb-gateway", "product name update bundles must carry")
    wired_lines: tuple[dict[str, Any], ...] = doc(
        (), "wired M-Bus lines to poll: {instance, url, baudrate, parity, interval_s, meters}"
    )
    serial_inputs: tuple[dict[str, Any], ...] = doc(
        (), "raw UART/RS-485 inputs of pushed telegrams and SML: {instance, url, baudrate}"
    )
    wan_listen: str = doc("", "WAN TLS endpoint HOST:PORT for the GWA (empty: no WAN server)")
    wan_instance: str = doc("", "instance the WAN endpoint belongs to (default: the first)")
    wan_cert: str = doc("", "gateway TLS certificate (PEM, smgw-tls)")
    wan_key: str = doc("", "its private key (PEM)")
    wan_chain: tuple[str, ...] = doc((), "CA certificates sent after wan_cert (PEM)")
    wan_trust: tuple[str, ...] = doc((), "trust anchors (SM-PKI root, PEM)")
    wan_crls: tuple[str, ...] = doc((), "CRL files (PEM) of the peers' CAs and the root")
    wan_crl_urls: tuple[str, ...] = doc((), "CA URLs GET /crl/<name>.crl, fetched periodically")
    wan_crl_every_s: float = doc(3600.0, "simulated time between CRL fetches, s")
    wan_groups: tuple[str, ...] = doc(
        ("brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1"), "ECDHE groups (and P-256/P-384)"
    )
    wan_handshake_timeout_s: float = doc(10.0, "wall time a TLS handshake may take, s")
    wakeup_listen: str = doc("", "UDP HOST:PORT for GWA wake-up packets (empty: no wake-up)")
    gwa_endpoints: tuple[dict[str, Any], ...] = doc(
        (), "GWAs a wake-up makes the gateway call: {gwa, url = 'tls://HOST:PORT', server_name}"
    )
    wakeup_cas: tuple[str, ...] = doc(
        (), "CA certificates (PEM) the GWAs' signature certificates chain through (sub-CA)"
    )
    wakeup_window_s: float = doc(300.0, "most a wake-up's issue time may differ from ours, s")
    wakeup_idle_s: float = doc(30.0, "wall time an idle wake-up session stays open, s")
    han_listen: str = doc(
        "", "HAN TLS endpoint HOST:PORT for displays and technicians (empty: none)"
    )
    han_instance: str = doc("", "instance the HAN endpoint belongs to (default: the first)")
    han_cert: str = doc("", "gateway TLS certificate presented on the HAN (PEM, smgw-tls)")
    han_key: str = doc("", "its private key (PEM)")
    han_chain: tuple[str, ...] = doc((), "CA certificates sent after han_cert (PEM)")
    han_trust: tuple[str, ...] = doc((), "trust anchors of HAN clients (SM-PKI root, PEM)")
    han_crls: tuple[str, ...] = doc((), "CRL files (PEM) of the HAN clients' CA and the root")
    han_handshake_timeout_s: float = doc(10.0, "wall time a HAN TLS handshake may take, s")
    han_crl_urls: tuple[str, ...] = doc(
        (), "CA URLs GET /crl/<name>.crl for the HAN, fetched periodically"
    )
    han_crl_every_s: float = doc(3600.0, "simulated time between HAN CRL fetches, s")
    cls_channels: tuple[dict[str, Any], ...] = doc(
        (),
        "CLS proxy channels: {cls = CN of the device, emt, url = 'tls://HOST:PORT', server_name}",
    )
    cls_max_frame: int = doc(65536, "bytes one relayed CLS channel frame may carry at most")
    cls_idle_timeout_s: float = doc(300.0, "wall time a CLS channel may stay silent, s")
    emt_endpoints: tuple[dict[str, Any], ...] = doc(
        (), "EMTs the WAN instance pushes TAF data to: {emt, url = 'tls://HOST:PORT', server_name}"
    )
    sig_cert: str = doc("", "signature certificate (PEM, smgw-sig) that signs EMT deliveries")
    sig_key: str = doc("", "its private key (PEM)")
    sig_chain: tuple[str, ...] = doc((), "CA certificates sent after sig_cert (PEM)")
    emt_batch: int = doc(500, "queued records per signed delivery at most")
    emt_retry_s: float = doc(1.0, "wall time before retrying a failed delivery, s (doubles)")
    emt_retry_max_s: float = doc(60.0, "longest wait between delivery retries, s")
    emt_poll_s: float = doc(2.0, "wall time between looks at an idle EMT queue, s")
    time_service: str = doc("", "WAN time service tls://HOST:PORT (empty: no time sync)")
    time_server_name: str = doc("", "dNSName the time service's certificate must carry")
    time_sync_every_s: float = doc(3600.0, "simulated time between time syncs, s")
    time_max_deviation_s: float = doc(
        3.0, "deviation from the time service beyond which readings are flagged, s"
    )
    unsafe_skip_checks: tuple[str, ...] = doc(
        (),
        "test-only: switches the named checks off to prove a scenario detects their absence"
        " (crc, mac, replay, counter_backwards, unknown_meter, meter_missing, update_signature,"
        " update_version, log_chain)",
    )
