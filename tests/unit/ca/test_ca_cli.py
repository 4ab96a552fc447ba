"""``smtb ca``: a CA directory from the command line, with CSRs made by openssl."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.cli import group

from tests.unit.ca.ca_helpers import make_csr, openssl_verify

ENV = {"SMTB_CA_PASSPHRASE": "cli test passphrase"}
GATEWAY = "gw0007.smgw.test.example"


def _smtb_ca(*args: str) -> Result:
    return CliRunner(env=ENV).invoke(group, list(args), catch_exceptions=False)


def _openssl_csr(folder: Path, common_name: str) -> Path:
    key, csr = folder / "gw.key", folder / "gw.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:brainpoolP256r1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={common_name}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return csr


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    """A CA directory made by `smtb ca init`."""
    result = _smtb_ca("init", "--dir", str(tmp_path / "ca"))
    assert result.exit_code == 0, result.output
    return tmp_path / "ca"


def test_init_writes_ca_certificates_and_first_crls_as_pem(ca_dir: Path) -> None:
    """init leaves root, smgw and emt certificates, a chain and three CRLs (number 1)."""
    assert sorted(p.name for p in (ca_dir / "certs").iterdir()) == [
        "chain.pem",
        "emt.pem",
        "root.pem",
        "smgw.pem",
    ]
    for name in ("root", "smgw", "emt"):
        text = (ca_dir / "crl" / f"{name}.crl.pem").read_text()
        assert text.startswith("-----BEGIN X509 CRL-----")
    crl_text = subprocess.run(
        ["openssl", "crl", "-noout", "-crlnumber", "-in", str(ca_dir / "crl/smgw.crl.pem")],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert crl_text.strip() == "crlNumber=0x01"


def test_issue_revoke_round_trip_with_an_openssl_csr(tmp_path: Path, ca_dir: Path) -> None:
    """An openssl CSR is issued, verifies, is revoked, and then fails with error 23."""
    out = tmp_path / "gw.pem"
    result = _smtb_ca(
        "issue",
        "--dir",
        str(ca_dir),
        "--csr",
        str(_openssl_csr(tmp_path, GATEWAY)),
        "--profile",
        "smgw-tls",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    serial = re.match(r"serial ([0-9a-f]+) smgw-tls", result.output)
    assert serial is not None, result.output
    assert openssl_verify(ca_dir, "smgw", out).stdout.strip().endswith("OK")
    shown = _smtb_ca("show", "--dir", str(ca_dir)).output
    assert f"{serial[1]}  valid" in shown
    result = _smtb_ca(
        "revoke",
        "--dir",
        str(ca_dir),
        "--serial",
        f"0x{serial[1].upper()}",
        "--reason",
        "keyCompromise",
    )
    assert result.exit_code == 0, result.output
    assert "CRL smgw #2 with 1 entries" in result.output
    revoked = openssl_verify(ca_dir, "smgw", out)
    assert "error 23" in revoked.stdout + revoked.stderr


def test_crl_command_publishes_the_next_crl_of_each_ca(ca_dir: Path) -> None:
    """`smtb ca crl` moves every CA to CRL number 2; `--ca` picks one."""
    assert _smtb_ca("crl", "--dir", str(ca_dir)).output.count("#2 ") == 3
    assert "smgw  #3" in _smtb_ca("crl", "--dir", str(ca_dir), "--ca", "smgw").output


def test_token_command_prints_a_token_the_ca_accepts_once(ca_dir: Path) -> None:
    """A token from `smtb ca token` enrols exactly the bound profile and subject."""
    result = _smtb_ca(
        "token", "--dir", str(ca_dir), "--profile", "emt-sig", "--subject", "emt.test.example"
    )
    token = result.output.strip()
    assert result.exit_code == 0
    assert len(token) >= 32
    authority = Authority.open(ca_dir, ENV["SMTB_CA_PASSPHRASE"].encode())
    issued = authority.issue(make_csr("emt.test.example"), "emt-sig", Requester(token=token))
    authority.close()
    assert (issued.issuer, issued.subject) == ("emt", "emt.test.example")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "--dir", "{tmp}/nothing"), "not a CA directory"),
        (("revoke", "--dir", "{ca}", "--serial", "xyz"), "serial: 'xyz' is not a hex serial"),
        (("revoke", "--dir", "{ca}", "--serial", "abc"), "serial: no certificate abc"),
        (
            (
                "issue",
                "--dir",
                "{ca}",
                "--csr",
                "{tmp}/none.csr",
                "--profile",
                "smgw-tls",
                "--out",
                "{tmp}/x.pem",
            ),
            "--csr: cannot read",
        ),
    ],
)
def test_errors_are_one_line_with_exit_code_1(
    tmp_path: Path, ca_dir: Path, args: tuple[str, ...], message: str
) -> None:
    """A refused command prints `Error: <field>: <why>` on one line, no traceback."""
    filled = [a.format(tmp=tmp_path, ca=ca_dir) for a in args]
    result = _smtb_ca(*filled)
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_wrong_passphrase_is_a_one_line_error(ca_dir: Path) -> None:
    """Opening the CA with another SMTB_CA_PASSPHRASE fails cleanly and says which variable."""
    result = CliRunner(env={"SMTB_CA_PASSPHRASE": "wrong"}).invoke(
        group, ["show", "--dir", str(ca_dir)]
    )
    assert result.exit_code == 1
    assert "SMTB_CA_PASSPHRASE" in result.output
