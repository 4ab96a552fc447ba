"""CA service settings (``[ca]`` table, ``SMTB_CA_*`` environment).

The passphrase that encrypts the CA keys comes from ``passphrase``, usually
set as ``SMTB_CA_PASSPHRASE``. Its default, ``smtb-test-ca``, is public: it
only keeps a test CA directory from being usable by mistake. Set your own
for anything that leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from smtestbed.services._runtime.config import ServiceConfig, choice, doc
from smtestbed.services.ca.authority import Policy

DEFAULT_PASSPHRASE = "smtb-test-ca"
DEFAULT_PORT = 8480


@dataclass(frozen=True, slots=True, kw_only=True)
class CaConfig(ServiceConfig):
    """Settings of the CA service and of the ``smtb ca`` commands."""

    data_dir: str = doc("smtb-data/ca", "CA directory (SQLite state, keys, PEM copies)")
    passphrase: str = doc(DEFAULT_PASSPHRASE, "passphrase of the CA keys (SMTB_CA_PASSPHRASE)")
    create: bool = doc(True, "create the CA directory on first start if it does not exist")
    family: str = choice("brainpool", "brainpool", "nist", help="CA curves when created")
    base_url: str = doc(
        f"http://ca.test.example:{DEFAULT_PORT}", "URL of this service in CRL distribution points"
    )
    host: str = doc("127.0.0.1", "address the HTTP API listens on")
    port: int = doc(DEFAULT_PORT, "port of the HTTP API (0: any free port)")
    admin_secret: str = doc("", "bearer secret that authorises POST /revoke (empty: none)")
    crl_validity_s: float = doc(86400.0, "nextUpdate - thisUpdate of each CRL, s")
    crl_renew_before_s: float = doc(3600.0, "publish a new CRL this long before nextUpdate, s")
    crl_check_s: float = doc(60.0, "simulated time between checks for CRLs due, s")
    token_ttl_s: float = doc(7 * 86400.0, "lifetime of enrolment tokens, s")
    ldap_url: str = doc("", "publish certificates and CRLs to this LDAP server (empty: off)")
    ldap_base_dn: str = doc("dc=pki,dc=test,dc=example", "LDAP subtree the CA publishes under")
    ldap_bind_dn: str = doc("cn=admin,dc=pki,dc=test,dc=example", "LDAP account that writes")
    ldap_password: str = doc("", "password of ldap_bind_dn (SMTB_CA_LDAP_PASSWORD)")

    def policy(self) -> Policy:
        """Return the authority's operating settings."""
        return Policy(
            crl_validity=timedelta(seconds=self.crl_validity_s),
            token_ttl=timedelta(seconds=self.token_ttl_s),
        )
