"""What an EMT checks before it accepts a TAF delivery (format in ``proto/delivery.py``).

In this order, the first failure refusing the whole batch with its reason:

1. the message is a ``taf.delivery`` with readable content and chain (``malformed``);
2. the detached signature matches the content bytes under the first certificate's key,
   with the hash its size asks for (``bad_signature``);
3. that certificate is a gateway signature certificate (profile ``smgw-sig``): subject
   OU ``SMGW``, key usage digitalSignature without keyAgreement, and no extended key
   usage, which tells it from the gateway's TLS certificate (``wrong_role``);
4. it chains to an SM-PKI trust root, every CA's CRL present and current, and it is
   neither revoked nor outside its validity at the moment of receipt (wall clock, the
   same time the TLS handshake is checked at) (``untrusted``, ``revoked``, ``expired``,
   ``not_yet_valid``, ``no_revocation_info``);
5. the content is addressed to this EMT (``wrong_emt``), and names the signing gateway:
   its ``gateway`` is the signer's CN or the CN's first label (``gw0`` for
   ``gw0.smgw.test.example``); the TLS peer that brought it, when known, has role
   ``SMGW`` and the signer's CN, since a gateway's TLS and signature certificates
   carry the same name (``wrong_gateway``).

Which meter belongs to which gateway is checked per record by the EMT store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from smtestbed.proto.delivery import BatchContent, Refusal, SignedBatch, signature_valid
from smtestbed.services._runtime.errors import ProtocolError, TestbedError
from smtestbed.services._runtime.pki import ChainStatus, TrustFiles, check_chain, common_name, role

__all__ = ["DeliveryRefusedError", "VerifiedBatch", "gateway_signature_role", "verify_delivery"]

SMGW_ROLE = "SMGW"
_CHAIN_REFUSALS = {
    ChainStatus.REVOKED: Refusal.REVOKED,
    ChainStatus.EXPIRED: Refusal.EXPIRED,
    ChainStatus.NOT_YET_VALID: Refusal.NOT_YET_VALID,
    ChainStatus.NO_REVOCATION_INFO: Refusal.NO_REVOCATION_INFO,
    ChainStatus.UNTRUSTED: Refusal.UNTRUSTED,
    ChainStatus.INVALID: Refusal.UNTRUSTED,
}


class DeliveryRefusedError(TestbedError):
    """The EMT refuses a whole delivery.

    Attributes:
        reason: why (a :class:`Refusal` value).
        detail: words for people.
    """

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedBatch:
    """A delivery that passed every check.

    Attributes:
        gateway: the signer certificate's CN, the gateway's authenticated name.
        signer_serial: its serial number, lower-case hex.
        content: the signed content, parsed.
        batch: content bytes, signature and chain as received (evidence).
    """

    gateway: str
    signer_serial: str
    content: BatchContent
    batch: SignedBatch


def gateway_signature_role(cert: x509.Certificate) -> str:
    """Return "" if ``cert`` looks like a gateway signature certificate, else what it lacks."""
    if role(cert) != SMGW_ROLE:
        return f"subject OU is {role(cert)!r}, not {SMGW_ROLE!r}"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "no key usage"
    if not usage.digital_signature or usage.key_agreement:
        return "key usage is not digitalSignature alone"
    try:
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return ""
    return "has an extended key usage (a TLS certificate)"


async def verify_delivery(
    message: dict[str, Any], *, trust: TrustFiles, emt: str, peer: str | None, at: datetime
) -> VerifiedBatch:
    """Check a ``taf.delivery`` message as the module docstring lists.

    Args:
        message: the received JSON object.
        trust: the SM-PKI roots, sub-CA certificates and CRLs.
        emt: this EMT's name (the content's ``emt`` must be it).
        peer: the TLS peer's CN, or None when the batch came another way.
        at: aware moment of receipt, for certificate validity and CRLs.

    Raises:
        DeliveryRefusedError: the first check that failed.
    """
    try:
        batch = SignedBatch.from_map(message)
    except ProtocolError as exc:
        raise DeliveryRefusedError(Refusal.MALFORMED, str(exc)) from exc
    if not signature_valid(batch):
        raise DeliveryRefusedError(Refusal.BAD_SIGNATURE, "signature does not match the content")
    signer = batch.chain[0]
    fault = gateway_signature_role(signer)
    if fault:
        raise DeliveryRefusedError(Refusal.WRONG_ROLE, fault)
    await _check_status(signer, batch.chain[1:], trust, at)
    content = _content(batch)
    _check_names(content, signer, emt=emt, peer=peer)
    return VerifiedBatch(
        gateway=common_name(signer),
        signer_serial=f"{signer.serial_number:x}",
        content=content,
        batch=batch,
    )


async def _check_status(
    signer: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    trust: TrustFiles,
    at: datetime,
) -> None:
    trust.refresh()
    verdict = await check_chain(
        signer,
        intermediates=[*chain, *trust.intermediates],
        trust_roots=trust.roots,
        crls=trust.crls,
        at=at,
    )
    if not verdict.ok:
        raise DeliveryRefusedError(_CHAIN_REFUSALS[verdict.status], verdict.detail)


def _content(batch: SignedBatch) -> BatchContent:
    try:
        return BatchContent.from_bytes(batch.content)
    except ProtocolError as exc:
        raise DeliveryRefusedError(Refusal.MALFORMED, str(exc)) from exc


def _check_names(
    content: BatchContent, signer: x509.Certificate, *, emt: str, peer: str | None
) -> None:
    if content.emt != emt:
        raise DeliveryRefusedError(Refusal.WRONG_EMT, f"batch is for {content.emt!r}")
    name = common_name(signer)
    if content.gateway not in (name, name.split(".")[0]):
        detail = f"content names {content.gateway!r}, the signer is {name!r}"
        raise DeliveryRefusedError(Refusal.WRONG_GATEWAY, detail)
    if peer is not None and peer != name:
        detail = f"TLS peer {peer!r} is not the signer {name!r}"
        raise DeliveryRefusedError(Refusal.WRONG_GATEWAY, detail)
