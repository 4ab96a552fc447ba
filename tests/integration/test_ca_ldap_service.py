"""The CA service mirrors its certificates and CRLs into a real slapd."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.config import load_config
from smtestbed.services._runtime.testing import endpoint_settings, free_port, service_in_process
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.config import CaConfig
from smtestbed.services.ca.ldap import LdapPublisher
from smtestbed.services.ca.service import CaService

from tests.integration.slapd import Slapd, running_slapd
from tests.unit.ca.ca_helpers import BASE_URL, PASSPHRASE, make_csr

GATEWAY = "gw0077.smgw.test.example"
CA_CNS = ("smtb Test SM-Root-CA", "smtb Test SMGW Sub-CA", "smtb Test EMT Sub-CA")


@contextlib.asynccontextmanager
async def _ca(endpoints: Endpoints, folder: Path, slapd: Slapd) -> AsyncIterator[CaService]:
    settings = {
        **endpoint_settings(endpoints),
        "data_dir": str(folder),
        "create": "false",
        "port": str(free_port()),
        "admin_secret": "admin",
        "ldap_url": slapd.url,
        "ldap_base_dn": slapd.base_dn,
        "ldap_bind_dn": slapd.root_dn,
        "ldap_password": slapd.password,
    }
    config = load_config(
        CaConfig, "ca", env={"SMTB_CA_PASSPHRASE": PASSPHRASE.decode()}, overrides=settings
    )
    async with service_in_process(CaService(config)) as service:
        yield service


def test_issued_certificate_and_new_crl_appear_in_ldap(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """CA certificates and CRLs at start, an issued certificate, then the CRL after revoking it."""
    authority = Authority.create(tmp_path / "ca", PASSPHRASE, base_url=BASE_URL)
    token = authority.create_token(purpose="issue", profile="smgw-tls", subject=GATEWAY)
    authority.close()

    async def scenario(slapd: Slapd) -> dict[str, Any]:
        async with _ca(endpoints, tmp_path / "ca", slapd) as ca, aiohttp.ClientSession() as web:
            url = f"http://127.0.0.1:{ca.port}"
            pem = make_csr(GATEWAY).decode()
            body = {"csr": pem, "profile": "smgw-tls", "token": token}
            async with web.post(f"{url}/issue", json=body) as resp:
                issued = await resp.json()
            revoke = {"serial": issued["serial"], "reason": "keyCompromise"}
            async with web.post(
                f"{url}/revoke", json=revoke, headers={"Authorization": "Bearer admin"}
            ) as resp:
                assert resp.status == 200, await resp.text()
            await asyncio.sleep(0.1)
            return {"issued": issued, "counters": ca.counters()}

    with running_slapd(tmp_path / "slapd") as slapd:
        result = asyncio.run(scenario(slapd))
        ldap = LdapPublisher(slapd.url, slapd.base_dn, slapd.root_dn, slapd.password)
        cas = {cn: ldap.ca_certificate(cn) for cn in CA_CNS}
        leaf = ldap.certificates(GATEWAY)
        crl = ldap.crl(CA_CNS[1])
    assert all(cert is not None for cert in cas.values()), cas
    assert [format(c.serial_number, "x") for c in leaf] == [result["issued"]["serial"].lower()]
    assert crl is not None
    assert crl.get_revoked_certificate_by_serial_number(leaf[0].serial_number) is not None
    assert result["counters"]["ldap_failed"] == 0
    assert result["counters"]["ldap_published"] >= 6
