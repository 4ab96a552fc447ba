"""Settings of the controller service (``[controller]``)."""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.services._runtime.config import ServiceConfig, doc
from smtestbed.services.controller.operations import Topology


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerConfig(ServiceConfig):
    """Where the REST API listens and which services the operations talk to."""

    http_host: str = doc("127.0.0.1", "address of the REST API")
    http_port: int = doc(7790, "port of the REST API (0: any free port)")
    sensorfarm: str = doc("sensorfarm", "instance name of the sensor farm")
    channel: str = doc("channel", "instance name of the channel")
    gateways: tuple[str, ...] = doc(("gateway",), "instance names of the gateway services")
    iohw: str = doc("iohw", "instance name of the I/O board service")
    ca_url: str = doc("", "base URL of the CA's HTTP API (empty: no CA)")
    ca_secret: str = doc("", "bearer secret for the CA's POST /revoke")
    run_dir: str = doc("", "the testbed's run folder (keys, PKI files, gateway data)")
    request_timeout_s: float = doc(10.0, "timeout of requests to the services, s")
    event_capacity: int = doc(100_000, "events kept in memory")

    def topology(self) -> Topology:
        """Return the names the operations talk to."""
        return Topology(
            sensorfarm=self.sensorfarm,
            channel=self.channel,
            gateways=self.gateways,
            iohw=self.iohw,
            ca_url=self.ca_url,
            ca_secret=self.ca_secret,
            run_dir=self.run_dir,
        )
