"""``smtb gateway run|show-config|verify-log|make-manifest|make-bundle``."""

from __future__ import annotations

from smtestbed.services._runtime.commands import service_group
from smtestbed.services.gateway.cli_firmware import make_bundle, make_manifest
from smtestbed.services.gateway.cli_logs import verify_log
from smtestbed.services.gateway.service import Gateway

group = service_group(Gateway, "Run smart meter gateway instances (LMN ingest, store, TAFs, logs).")
group.add_command(verify_log)
group.add_command(make_manifest)
group.add_command(make_bundle)
