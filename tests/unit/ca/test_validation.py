"""Path validation with CRLs: our validator against ``openssl verify -crl_check_all``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.services.ca.validation import (
    Reason,
    Usage,
    ValidationResult,
    ValidationToolError,
    openssl_verify,
    openssl_verify_argv,
    parse_openssl_verdict,
    validate,
    validate_async,
)

from tests.unit.ca import pki_factory as pki

AT = datetime(2031, 5, 4, 12, 0, tzinfo=UTC)

CURVES: dict[str, tuple[ec.EllipticCurve, ec.EllipticCurve]] = {
    "brainpoolP384r1-root-P256r1-sub": (ec.BrainpoolP384R1(), ec.BrainpoolP256R1()),
    "brainpoolP256r1": (ec.BrainpoolP256R1(), ec.BrainpoolP256R1()),
    "brainpoolP384r1": (ec.BrainpoolP384R1(), ec.BrainpoolP384R1()),
    "nist-P256": (ec.SECP256R1(), ec.SECP256R1()),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One certificate to check, the inputs around it and the expected verdict."""

    leaf: x509.Certificate
    crls: list[x509.CertificateRevocationList]
    usage: Usage
    expected: Reason
    intermediates: list[x509.Certificate]


def _case(
    h: pki.Hierarchy,
    leaf: pki.Issued,
    expected: Reason,
    *,
    usage: Usage = Usage.TLS_SERVER,
    crls: list[x509.CertificateRevocationList] | None = None,
    intermediates: list[x509.Certificate] | None = None,
) -> Case:
    return Case(
        leaf=leaf.cert,
        crls=[h.root_crl, h.sub_crl] if crls is None else crls,
        usage=usage,
        expected=expected,
        intermediates=[h.sub.cert] if intermediates is None else intermediates,
    )


def _valid(h: pki.Hierarchy) -> Case:
    return _case(h, h.leaf("gw1.test.example"), Reason.OK)


def _valid_client(h: pki.Hierarchy) -> Case:
    return _case(h, h.leaf("gwa.test.example"), Reason.OK, usage=Usage.TLS_CLIENT)


def _revoked(h: pki.Hierarchy) -> Case:
    leaf = h.leaf("gw2.test.example")
    return _case(h, leaf, Reason.REVOKED, crls=[h.root_crl, h.sub_crl_with([leaf.cert])])


def _sub_ca_revoked(h: pki.Hierarchy) -> Case:
    root_crl = pki.make_crl(
        h.root,
        number=2,
        this_update=AT - timedelta(hours=1),
        next_update=AT + timedelta(days=7),
        revoked=[h.sub.cert],
    )
    return _case(h, h.leaf("gw3.test.example"), Reason.REVOKED, crls=[root_crl, h.sub_crl])


def _expired(h: pki.Hierarchy) -> Case:
    leaf = h.leaf(
        "gw4.test.example", not_before=AT - timedelta(days=30), not_after=AT - timedelta(seconds=5)
    )
    return _case(h, leaf, Reason.EXPIRED)


def _not_yet_valid(h: pki.Hierarchy) -> Case:
    leaf = h.leaf("gw5.test.example", not_before=AT + timedelta(hours=1))
    return _case(h, leaf, Reason.NOT_YET_VALID)


def _foreign_ca(h: pki.Hierarchy) -> Case:
    foreign = pki.build_hierarchy(AT, prefix="foreign")
    return _case(h, foreign.leaf("gw6.test.example"), Reason.WRONG_ISSUER)


def _same_name_foreign_ca(h: pki.Hierarchy) -> Case:
    impostor = pki.build_hierarchy(AT)  # same CA names, other keys
    return _case(h, impostor.leaf("gw7.test.example"), Reason.WRONG_ISSUER)


def _foreign_chain_supplied(h: pki.Hierarchy) -> Case:
    foreign = pki.build_hierarchy(AT, prefix="foreign")
    crls = [h.root_crl, h.sub_crl, foreign.root_crl, foreign.sub_crl]
    leaf = foreign.leaf("gw8.test.example")
    return _case(h, leaf, Reason.WRONG_ISSUER, crls=crls, intermediates=[foreign.sub.cert])


def _client_cert_as_server(h: pki.Hierarchy) -> Case:
    leaf = h.leaf("gw9.test.example", profile=pki.TLS_CLIENT)
    return _case(h, leaf, Reason.WRONG_USAGE, usage=Usage.TLS_SERVER)


def _server_cert_as_client(h: pki.Hierarchy) -> Case:
    leaf = h.leaf("gw10.test.example", profile=pki.TLS_SERVER)
    return _case(h, leaf, Reason.WRONG_USAGE, usage=Usage.TLS_CLIENT)


def _non_repudiation_cert_as_server(h: pki.Hierarchy) -> Case:
    profile = pki.LeafProfile(
        key_usage=frozenset({"content_commitment"}), extended=pki.TLS_SERVER.extended
    )
    leaf = h.leaf("gw11.test.example", profile=profile)
    return _case(h, leaf, Reason.WRONG_USAGE, usage=Usage.TLS_SERVER)


def _stale_crl(h: pki.Hierarchy) -> Case:
    stale = h.sub_crl_with([], next_update=AT - timedelta(minutes=1))
    return _case(h, h.leaf("gw12.test.example"), Reason.CRL_STALE, crls=[h.root_crl, stale])


def _missing_sub_crl(h: pki.Hierarchy) -> Case:
    return _case(h, h.leaf("gw13.test.example"), Reason.CRL_MISSING, crls=[h.root_crl])


def _missing_root_crl(h: pki.Hierarchy) -> Case:
    return _case(h, h.leaf("gw14.test.example"), Reason.CRL_MISSING, crls=[h.sub_crl])


def _crl_signed_by_other_key(h: pki.Hierarchy) -> Case:
    forger = pki.Issued(cert=h.sub.cert, key=pki.build_hierarchy(AT).sub.key)
    forged = pki.make_crl(
        forger, number=9, this_update=AT - timedelta(hours=1), next_update=AT + timedelta(days=1)
    )
    return _case(h, h.leaf("gw15.test.example"), Reason.CRL_MISSING, crls=[h.root_crl, forged])


def _crl_not_yet_in_force(h: pki.Hierarchy) -> Case:
    early = pki.make_crl(
        h.sub, number=9, this_update=AT + timedelta(hours=1), next_update=AT + timedelta(days=1)
    )
    return _case(h, h.leaf("gw16.test.example"), Reason.CRL_MISSING, crls=[h.root_crl, early])


CASES: dict[str, Callable[[pki.Hierarchy], Case]] = {
    "valid-server": _valid,
    "valid-client": _valid_client,
    "revoked": _revoked,
    "sub-ca-revoked": _sub_ca_revoked,
    "expired": _expired,
    "not-yet-valid": _not_yet_valid,
    "wrong-issuer-foreign-ca": _foreign_ca,
    "wrong-issuer-same-name": _same_name_foreign_ca,
    "wrong-issuer-foreign-chain-supplied": _foreign_chain_supplied,
    "wrong-usage-client-as-server": _client_cert_as_server,
    "wrong-usage-server-as-client": _server_cert_as_client,
    "wrong-usage-no-digital-signature": _non_repudiation_cert_as_server,
    "crl-stale": _stale_crl,
    "crl-missing-sub": _missing_sub_crl,
    "crl-missing-root": _missing_root_crl,
    "crl-bad-signature": _crl_signed_by_other_key,
    "crl-not-yet-in-force": _crl_not_yet_in_force,
}


@pytest.fixture(scope="module", params=list(CURVES), ids=list(CURVES))
def hierarchy(request: pytest.FixtureRequest) -> pki.Hierarchy:
    """A root, a sub-CA and their CRLs on one curve pair, valid at AT."""
    root_curve, sub_curve = CURVES[request.param]
    return pki.build_hierarchy(AT, root_curve=root_curve, sub_curve=sub_curve)


def _both(h: pki.Hierarchy, case: Case) -> tuple[ValidationResult, ValidationResult]:
    ours = validate(
        case.leaf,
        intermediates=case.intermediates,
        trust_roots=[h.root.cert],
        crls=case.crls,
        at=AT,
        usage=case.usage,
    )
    theirs = openssl_verify(
        case.leaf,
        intermediates=case.intermediates,
        trust_roots=[h.root.cert],
        crls=case.crls,
        at=AT,
        usage=case.usage,
    )
    return ours, theirs


@pytest.mark.parametrize("name", list(CASES))
def test_validator_and_openssl_agree(hierarchy: pki.Hierarchy, name: str) -> None:
    """Our validator and `openssl verify -crl_check_all` reach the same expected verdict."""
    case = CASES[name](hierarchy)
    ours, theirs = _both(hierarchy, case)
    assert (ours.reason, theirs.reason) == (case.expected, case.expected), (ours, theirs)
    assert ours.ok is theirs.ok is (case.expected is Reason.OK)


def _check(h: pki.Hierarchy, leaf: pki.Issued, usage: Usage) -> ValidationResult:
    return validate(
        leaf.cert,
        intermediates=[h.sub.cert],
        trust_roots=[h.root.cert],
        crls=[h.root_crl, h.sub_crl],
        at=AT,
        usage=usage,
    )


def test_signature_usage_needs_digital_signature(hierarchy: pki.Hierarchy) -> None:
    """A key-agreement-only certificate is refused for signatures, a signature one accepted."""
    enc = _check(
        hierarchy, hierarchy.leaf("gw.test.example", profile=pki.ENCRYPTION), Usage.SIGNATURE
    )
    sig = _check(
        hierarchy, hierarchy.leaf("gw.test.example", profile=pki.SIGNATURE), Usage.SIGNATURE
    )
    assert (enc.reason, sig.reason) == (Reason.WRONG_USAGE, Reason.OK)


def test_encryption_usage_needs_key_agreement(hierarchy: pki.Hierarchy) -> None:
    """A signature-only certificate is refused for encryption, a key-agreement one accepted."""
    sig = _check(
        hierarchy, hierarchy.leaf("gw.test.example", profile=pki.SIGNATURE), Usage.ENCRYPTION
    )
    enc = _check(
        hierarchy, hierarchy.leaf("gw.test.example", profile=pki.ENCRYPTION), Usage.ENCRYPTION
    )
    assert (sig.reason, enc.reason) == (Reason.WRONG_USAGE, Reason.OK)


def test_validate_async_runs_inside_an_event_loop() -> None:
    """validate_async gives the verdict from within a running event loop."""
    h = pki.build_hierarchy(AT)
    leaf = h.leaf("gw.test.example")
    crls = [h.root_crl, h.sub_crl_with([leaf.cert])]

    async def check() -> ValidationResult:
        return await validate_async(
            leaf.cert,
            intermediates=[h.sub.cert],
            trust_roots=[h.root.cert],
            crls=crls,
            at=AT,
            usage=Usage.ANY,
        )

    assert asyncio.run(check()).reason is Reason.REVOKED


def test_validate_refuses_a_naive_moment() -> None:
    """A moment without a time zone is refused rather than guessed."""
    h = pki.build_hierarchy(AT)
    with pytest.raises(ValueError, match="timezone-aware"):
        _check_at(h, AT.replace(tzinfo=None))


def _check_at(h: pki.Hierarchy, at: datetime) -> ValidationResult:
    return validate(
        h.leaf("gw.test.example").cert,
        intermediates=[h.sub.cert],
        trust_roots=[h.root.cert],
        crls=[h.root_crl, h.sub_crl],
        at=at,
        usage=Usage.ANY,
    )


def test_openssl_argv_names_purpose_time_and_every_crl(tmp_path: Path) -> None:
    """The verify command carries -purpose, -attime in seconds and one -CRLfile per CRL."""
    h = pki.build_hierarchy(AT)
    argv = openssl_verify_argv(
        tmp_path,
        h.leaf("gw.test.example").cert,
        intermediates=[h.sub.cert],
        trust_roots=[h.root.cert],
        crls=[h.root_crl, h.sub_crl],
        at=AT + timedelta(microseconds=900_000),
        usage=Usage.TLS_CLIENT,
    )
    assert argv[argv.index("-purpose") + 1] == "sslclient"
    assert argv[argv.index("-attime") + 1] == str(int(AT.timestamp()))
    assert argv.count("-CRLfile") == 2
    assert {"-x509_strict", "-crl_check_all"} <= set(argv)
    assert (tmp_path / "leaf.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


def test_openssl_argv_has_no_purpose_for_signature(tmp_path: Path) -> None:
    """Signature usage has no OpenSSL purpose, so none is passed."""
    h = pki.build_hierarchy(AT)
    argv = openssl_verify_argv(
        tmp_path,
        h.leaf("gw.test.example").cert,
        intermediates=[],
        trust_roots=[h.root.cert],
        crls=[],
        at=None,
        usage=Usage.SIGNATURE,
    )
    assert "-purpose" not in argv
    assert "-untrusted" not in argv
    assert "-attime" not in argv


def test_openssl_verdict_names_the_first_error() -> None:
    """With several error lines, the first decides the reason and all are in the detail."""
    stderr = (
        "CN = gw\nerror 26 at 0 depth lookup: unsupported certificate purpose\n"
        "CN = gw\nerror 23 at 0 depth lookup: certificate revoked\n"
        "error leaf.pem: verification failed\n"
    )
    result = parse_openssl_verdict(2, "", stderr)
    assert (result.ok, result.reason) == (False, Reason.WRONG_USAGE)
    assert result.detail == (
        "error 26 at depth 0: unsupported certificate purpose; "
        "error 23 at depth 0: certificate revoked"
    )


def test_openssl_verdict_unknown_code_is_invalid() -> None:
    """An error code without a mapping is reported as 'invalid', not as OK."""
    result = parse_openssl_verdict(2, "", "error 94 at 0 depth lookup: something new\n")
    assert (result.ok, result.reason) == (False, Reason.INVALID)


def test_openssl_without_verdict_is_a_tool_error() -> None:
    """Output with neither 'OK' nor an error line raises ValidationToolError."""
    with pytest.raises(ValidationToolError, match="no verdict: Could not open file"):
        parse_openssl_verdict(1, "", "Could not open file or uri for loading certificate\n")


def test_missing_openssl_binary_is_a_tool_error() -> None:
    """A missing openssl executable raises ValidationToolError naming it."""
    h = pki.build_hierarchy(AT)
    with pytest.raises(ValidationToolError, match="cannot run /nonexistent/openssl verify"):
        openssl_verify(
            h.leaf("gw.test.example").cert,
            intermediates=[h.sub.cert],
            trust_roots=[h.root.cert],
            crls=[h.root_crl, h.sub_crl],
            at=AT,
            usage=Usage.ANY,
            openssl="/nonexistent/openssl",
        )
