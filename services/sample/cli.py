"""``smtb sample run|show-config``."""

from __future__ import annotations

from smtestbed.services._runtime.commands import service_group
from smtestbed.services.sample.service import Sample

group = service_group(Sample, "Run the sample service (ticks, echo/add/sleep requests).")
