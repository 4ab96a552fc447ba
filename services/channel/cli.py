"""``smtb channel run|show-config``."""

from __future__ import annotations

from smtestbed.services._runtime.commands import service_group
from smtestbed.services.channel.service import Channel

group = service_group(
    Channel, "Run the radio channel (path loss, noise, interferers, collisions, bit errors)."
)
