"""revoked-gwa-refused: a GWA revoked at the CA is refused once the gateway has the new CRL.

The testbed makes a test SM-PKI (``smtb ca init``, certificates issued by ``smtb ca
issue``): the gateway's WAN endpoint with its smgw-tls certificate fetches the CA's
CRLs at start and every ``wan_crl_every_s`` simulated seconds; the controller is the
GWA with its gwa-tls certificate (``wan_request``, mutual TLS 1.2).

1. The GWA registers a meter and reads the system log over the WAN: both done (the
   meter is in the gateway's list on the bus).
2. The controller revokes the GWA's certificate through the CA's HTTP API; the CA's
   answer (the independent truth) must say ``revoked``. Until its next CRL fetch the
   gateway still serves the GWA (it knows only the CRL it fetched).
3. The clock is advanced past the next fetch (``wan.crl_updated``). The GWA's next
   session is refused: ``wan.tls_refused`` with reason ``revoked``, a ``tls_refused``
   system-log entry, and the meter it asks to register is not registered.

Control: the gateway skips the CRL check on handshakes (``unsafe_skip_checks =
["crl"]``), so the revoked GWA is served and the scenario must fail.
"""

from __future__ import annotations

from typing import Any

from smtestbed.proto import topics
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.state import state_from_dict

CRL_EVERY_S = 3600.0
BEFORE, AFTER, AFTER_CRL = "39000001", "39000002", "39000003"
KEY = "000102030405060708090A0B0C0D0E0F"


def add_meter(meter: str) -> dict[str, Any]:
    """Return the GWA's request parameters registering ``meter``."""
    return {"meter": meter, "manufacturer": "EMH", "key": KEY}


async def registered(ctl: Controller) -> set[str]:
    """Return the meters the gateway has registered, asked on the bus."""
    return {m["meter"] for m in await ctl.call("meters")}


async def served(ctl: Controller, meter: str, when: str) -> None:
    """Check that the GWA registers ``meter`` and reads the system log over the WAN."""
    added = await ctl.call("wan_request", op="add_meter", params=add_meter(meter))
    ctl.check(f"GWA session {when}", added["connected"] and added["ok"], f"{added}")
    ctl.check(f"{meter} registered {when}", meter in await registered(ctl), "not in the list")
    log = await ctl.call("wan_request", op="read_log", params={"log": "system"})
    ctl.check(f"GWA reads the system log {when}", log["ok"], f"{log['error'] or log['reason']}")


async def revoke_gwa(ctl: Controller) -> None:
    """Revoke the GWA's certificate at the CA; check the CA reports it revoked."""
    gwa = await ctl.call("pki_identity", party="gwa")
    record = await ctl.call("revoke", serial=gwa["serial"], reason="keyCompromise")
    ctl.expect_equal("CA reports the GWA revoked", record["status"], "revoked")
    ctl.expect_equal("CA revoked the GWA's serial", record["serial"], gwa["serial"])


async def refused(ctl: Controller) -> None:
    """After the next CRL fetch: the GWA is refused and nothing it asks is done."""
    mark = ctl.mark()
    await ctl.advance(by=CRL_EVERY_S + 60.0)
    await ctl.expect_event(
        topics.WAN_CRL_UPDATED, since=mark, what="gateway fetched the CRLs after the revocation"
    )
    mark = ctl.mark()
    added = await ctl.call("wan_request", op="add_meter", params=add_meter(AFTER_CRL))
    ctl.check("revoked GWA's session refused", not added["connected"], f"{added}")
    await ctl.expect_event(
        topics.WAN_TLS_REFUSED, {"reason": "revoked"}, since=mark, what="wan.tls_refused revoked"
    )
    ctl.check(
        f"{AFTER_CRL} asked by the revoked GWA not registered",
        AFTER_CRL not in await registered(ctl),
        "registered",
    )
    entries = await ctl.log("system")
    logged = [e for e in entries if e["kind"] == "tls_refused"]
    reasons = [e["fields"].get("reason") for e in logged]
    ctl.check("system log records the revoked GWA refused", "revoked" in reasons, f"{reasons}")


async def run(ctl: Controller) -> None:
    """Serve the GWA, revoke it at the CA, fetch the next CRL, see it refused."""
    await ctl.advance(by=60.0)
    await served(ctl, BEFORE, "before the revocation")
    await revoke_gwa(ctl)
    await served(ctl, AFTER, "before the next CRL fetch")
    await refused(ctl)


SCENARIO = Scenario(
    name="revoked-gwa-refused",
    description="a GWA revoked at the CA is refused after the gateway's next CRL fetch",
    state=state_from_dict(
        {
            "seed": 23,
            "population": {"count": 1},
            "pki": {"enabled": True, "certificates": ["gateway", "gwa"]},
            "settings": {"gateway": {"wan_crl_every_s": CRL_EVERY_S}},
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["crl"]}}},
)
