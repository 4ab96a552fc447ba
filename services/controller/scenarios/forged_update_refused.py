"""forged-update-refused: the gateway installs only newer bundles its manufacturer signed.

The testbed gives the gateway the manufacturer's public key (``manufacturer_key``)
and keeps a foreign key beside it. The controller builds every bundle itself with
``smtb gateway make-bundle`` and pushes it (``push_firmware``):

1. 1.1.0 signed by the manufacturer: installed (the base line);
2. 2.0.0 signed by the foreign key: refused as ``bad_signature``;
3. 1.0.0 (older) and 1.1.0 (equal) signed by the manufacturer: refused as ``not_newer``;
4. 1.2.0 signed by the manufacturer: installed (the update path still works).

Each refusal must come as a ``gateway.update_refused`` event with its reason and a
``update_refused`` system-log entry, and the firmware on the gateway's disk
(``installed_firmware``: the files ``current`` points to) must stay byte for byte what
the controller built for the version before; each installation must put exactly the
built files there. Control: the gateway skips the signature check
(``unsafe_skip_checks = ["update_signature"]``), so the forged 2.0.0 is installed and
the scenario must fail.
"""

from __future__ import annotations

from typing import Any

from smtestbed.proto import topics
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.state import state_from_dict

BASE, FORGED, NEWER = "1.1.0", "2.0.0", "1.2.0"
REFUSALS = (
    (FORGED, "foreign", "bad_signature"),
    ("1.0.0", "manufacturer", "not_newer"),
    (BASE, "manufacturer", "not_newer"),
)


async def installed(ctl: Controller, pushed: dict[str, Any]) -> None:
    """Check that a pushed bundle was installed: accepted, and its files on the disk."""
    version = pushed["version"]
    ctl.expect_equal(f"{version} accepted", pushed["answer"]["accepted"], True)
    disk = await ctl.call("installed_firmware")
    ctl.expect_equal(f"version on disk after {version}", disk["version"], version)
    ctl.expect_equal(f"files on disk are the built {version}", disk["files"], pushed["files"])


async def refusals_logged(ctl: Controller) -> list[dict[str, Any]]:
    """Return the ``update_refused`` entries of the system log."""
    return [e for e in await ctl.log("system") if e["kind"] == "update_refused"]


async def refused(ctl: Controller, version: str, signer: str, reason: str, base: Any) -> None:
    """Push one bundle that must be refused for ``reason``; check event, log and disk."""
    logged = await refusals_logged(ctl)
    mark = ctl.mark()
    pushed = await ctl.call("push_firmware", version=version, signer=signer)
    what = f"{version} signed by {signer}"
    # A signature is checked before the manifest is read: that refusal names no version.
    event = await ctl.expect_event(
        topics.GATEWAY_UPDATE_REFUSED, since=mark, what=f"{what} refused", timeout_s=5.0
    )
    ctl.expect_equal(f"reason for {what}", event["body"]["reason"], reason)
    ctl.expect_no_event(topics.GATEWAY_UPDATE_INSTALLED, since=mark, what=f"{what} not installed")
    new = (await refusals_logged(ctl))[len(logged) :]
    reasons = [e["fields"]["reason"] for e in new]
    ctl.expect_equal(f"system log records {what} refused", reasons, [reason])
    disk = await ctl.call("installed_firmware")
    ctl.expect_equal(f"firmware on disk unchanged by {what}", disk, base)
    ctl.expect_equal(f"gateway's answer for {what}", pushed["answer"]["accepted"], False)


async def run(ctl: Controller) -> None:
    """Install a base, push three bundles that must be refused, then a valid newer one."""
    nothing = await ctl.call("installed_firmware")
    ctl.expect_equal("no firmware installed at the start", nothing["version"], None)
    await installed(ctl, await ctl.call("push_firmware", version=BASE))
    base = await ctl.call("installed_firmware")
    for version, signer, reason in REFUSALS:
        await refused(ctl, version, signer, reason, base)
    await installed(ctl, await ctl.call("push_firmware", version=NEWER))


SCENARIO = Scenario(
    name="forged-update-refused",
    description="foreign-signed, older and equal bundles refused and logged; a newer one installs",
    state=state_from_dict({"seed": 21, "population": {"count": 1}}),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["update_signature"]}}},
)
