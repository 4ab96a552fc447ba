"""tampered-calibration-log-detected: an edited calibration-log entry is found and named.

The testbed runs a WAN time service whose answers are ``SKEW_S`` ahead (its
``skew_s``). At its start the gateway syncs with it over mutual TLS, finds the
deviation beyond ``time_max_deviation_s`` and writes a ``time_deviation`` entry to
its calibration log (the legally relevant log); it syncs again only after a week of
simulated time, so this is the one entry after ``log_created``. The entry's
deviation must be the skew the time service was configured with, and the log must
verify (``gateway.verify_log``) before anything is done to it.

Then an attacker with access to the gateway's disk (``tamper_log``) changes that
entry in the file to hide the deviation (``deviation_s`` 0, no readings flagged),
recomputing its hash but unable to sign it. Reading the log now shows the forged
value; the gateway's verification must report the calibration log as not intact
and name exactly the entry the attacker changed, while the untouched system log
still verifies. Control: the gateway's log verification is switched off
(``unsafe_skip_checks = ["log_chain"]``); it then calls the forged log intact and
the scenario must fail.
"""

from __future__ import annotations

import asyncio
from typing import Any

from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.state import state_from_dict

SKEW_S = 90.0
LIMIT_S = 10.0
WEEK_S = 7 * 86_400.0
POLLS, POLL_S = 100, 0.1
FORGED = {"deviation_s": 0.0, "flagged_readings": 0}


async def calibration_entries(ctl: Controller, count: int) -> list[dict[str, Any]]:
    """Return the calibration log once it has ``count`` entries (the sync runs at start)."""
    entries = await ctl.log("calibration")
    for _ in range(POLLS):
        if len(entries) >= count:
            break
        await asyncio.sleep(POLL_S)
        entries = await ctl.log("calibration")
    return entries


async def deviation_logged(ctl: Controller) -> int:
    """Check the start-up sync's entry against the time service's skew; return its seq."""
    entries = await calibration_entries(ctl, 2)
    kinds = [e["kind"] for e in entries]
    ctl.expect_equal("calibration log entries", kinds, ["log_created", "time_deviation"])
    logged = entries[1]["fields"]["deviation_s"]
    ctl.expect_close("logged deviation = time service's skew", float(logged), SKEW_S, 1e-6)
    intact = await ctl.call("verify_log", log="calibration")
    ctl.expect_equal("untampered calibration log verifies", intact["ok"], True)
    ctl.expect_equal("entries verified", intact["entries"], 2)
    return int(entries[1]["seq"])


async def run(ctl: Controller) -> None:
    """Let the gateway log a deviation, forge it on disk, and have the gateway find it."""
    seq = await deviation_logged(ctl)
    await ctl.advance(by=600.0)
    done = await ctl.call("tamper_log", log="calibration", entry=seq, how="change", fields=FORGED)
    ctl.expect_equal("attacker changed the deviation entry", done["entry"], seq)
    forged = (await ctl.log("calibration"))[seq]["fields"]
    ctl.expect_equal("log now shows the forged deviation", forged["deviation_s"], 0.0)
    result = await ctl.call("verify_log", log="calibration")
    ctl.expect_equal("tampered calibration log reported not intact", result["ok"], False)
    ctl.expect_equal("verification names the changed entry", result["first_bad"], done["entry"])
    ctl.expect_equal("entries verified before it", result["entries"], seq)
    system = await ctl.call("verify_log", log="system")
    ctl.expect_equal("untouched system log verifies", system["ok"], True)


SCENARIO = Scenario(
    name="tampered-calibration-log-detected",
    description="a calibration-log entry changed on the gateway's disk is reported and named",
    state=state_from_dict(
        {
            "seed": 29,
            "population": {"count": 1},
            "pki": {"enabled": True, "certificates": ["gateway", "timeservice"]},
            "settings": {
                "timeservice": {"skew_s": SKEW_S},
                "gateway": {"time_max_deviation_s": LIMIT_S, "time_sync_every_s": WEEK_S},
            },
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["log_chain"]}}},
)
