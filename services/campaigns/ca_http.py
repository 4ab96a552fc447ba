"""Fuzz the CA's HTTP API through the real service process.

A broker and ``smtb ca run`` start on 127.0.0.1 ports over a fresh CA directory holding
one enrolment token. Each input is one HTTP request built from a seed: a mutated JSON
body for ``POST /issue`` or ``/revoke``, a raw CSR (PEM or DER, bytes flipped) as
``application/pkcs10``, a wrong content type, an empty or oversized body, or a mangled
path. After every request ``GET /status`` is read.

A crash is a 5xx answer, a dropped connection or the service exiting; a refusal that is
not JSON ``{"error", "field"}`` or whose status is not 4xx breaks the contract (also a
crash); a request that gets no answer within the per-input limit is a hang. The proof:
for every refused request the status (issued and revoked counts, CRL numbers) equals
the one read before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from smtestbed.services._runtime import process
from smtestbed.services._runtime.testing import free_port, random_endpoints, service_process
from smtestbed.services.ca.authority import Authority
from smtestbed.services.ca.config import DEFAULT_PASSPHRASE
from smtestbed.services.campaigns.crashes import HANG, CrashBook
from smtestbed.services.campaigns.fuzz_report import FuzzReport
from smtestbed.services.campaigns.mutation_engine import Budget
from smtestbed.services.campaigns.mutator import Mutator
from yarl import URL

SUBJECT = "gw0042.smgw.test.example"
ADMIN = "fuzz admin secret"
KEY_SCALAR = 0x5EED_CAFE  # a fixed key: the same seed sends the same CSR bytes
HUGE = 70 * 1024  # over the API's 64 KiB body limit
PATHS = (
    "/issue",
    "/revoke",
    "/status",
    "/ca/root.crt",
    "/ca/smgw.crt",
    "/crl/emt.crl",
    "/ca/nope.crt",
    "/crl/../status",
    "/issue?profile=smgw-tls&token=x",
    "/%00/crl/root.crl",
    "/ca/ROOT.crt",
    "//issue",
)
CONTENT_TYPES = (
    "application/json",
    "application/pkcs10",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTP request of the campaign."""

    method: str
    path: str
    content_type: str
    body: bytes
    bearer: str = ""

    def saved(self) -> bytes:
        """Return the request as JSON bytes (what a crash file holds)."""
        fields = {
            "method": self.method,
            "path": self.path,
            "content_type": self.content_type,
            "bearer": self.bearer,
            "body_hex": self.body.hex(),
        }
        return json.dumps(fields).encode()


def make_csr(common_name: str, secret: int) -> x509.CertificateSigningRequest:
    """Return a CSR for ``common_name`` on the brainpoolP256r1 key of scalar ``secret``."""
    key = ec.derive_private_key(secret, ec.BrainpoolP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def prepare_ca(folder: Path) -> str:
    """Create a CA directory in ``folder``; return one ``smgw-tls`` enrolment token."""
    shutil.rmtree(folder, ignore_errors=True)
    authority = Authority.create(
        folder, DEFAULT_PASSPHRASE.encode(), base_url="http://ca.test.example:8480"
    )
    try:
        return authority.create_token(purpose="issue", profile="smgw-tls", subject=SUBJECT)
    finally:
        authority.close()


def seeds(token: str) -> tuple[list[bytes], list[bytes]]:
    """Return the JSON body seeds and the raw CSR seeds (PEM and DER)."""
    csr = make_csr(SUBJECT, KEY_SCALAR)
    pem = csr.public_bytes(serialization.Encoding.PEM)
    der = csr.public_bytes(serialization.Encoding.DER)
    bodies = [
        {"csr": pem.decode(), "profile": "smgw-tls", "token": "not-a-token"},
        {"csr": pem.decode(), "profile": "gwa-tls", "token": token},
        {"csr": "", "profile": "smgw-tls"},
        {"serial": "01ab", "reason": "keyCompromise", "token": "x"},
        {"serial": "zz", "reason": "nonsense"},
        {"serial": 5, "reason": ["a"], "token": None},
        [1, 2, 3],
    ]
    return [json.dumps(b).encode() for b in bodies], [pem, der]


class RequestMaker:
    """Derive requests from the seeds with one seeded generator."""

    def __init__(self, token: str, *, seed: int) -> None:
        json_seeds, csr_seeds = seeds(token)
        self.json = Mutator(json_seeds, seed=seed)
        self.csr = Mutator(csr_seeds, seed=seed + 1)
        self.rng = self.json.rng

    def next(self) -> Request:
        """Return the next request (shape picked at random, then mutated)."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            return Request(
                method="POST",
                path=rng.choice(("/issue", "/revoke")),
                content_type="application/json",
                body=self.json.next(),
                bearer=rng.choice(("", "", "Bearer wrong", f"Basic {ADMIN}")),
            )
        if roll < 0.6:
            query = rng.choice(("?profile=smgw-tls&token=x", "?profile=", "", "?profile=%ff"))
            body = self.csr.next()
            return Request(
                method="POST", path=f"/issue{query}", content_type="application/pkcs10", body=body
            )
        return self._odd(roll)

    def _odd(self, roll: float) -> Request:
        rng = self.rng
        if roll < 0.7:
            body = rng.choice((b"", b"\x00" * HUGE, b"{" * HUGE))
            return Request(method="POST", path=rng.choice(PATHS), content_type="", body=body)
        path = rng.choice(PATHS)
        if rng.random() < 0.5:
            raw = bytearray(path.encode())
            raw[rng.randrange(len(raw))] = rng.choice(b"/.%?#az0~-_")
            path = "/" + raw.decode("ascii", errors="replace").lstrip("/")
        return Request(
            method=rng.choice(("GET", "POST", "PUT", "DELETE", "HEAD")),
            path=path,
            content_type=rng.choice(CONTENT_TYPES),
            body=self.json.next() if rng.random() < 0.5 else b"",
        )


@dataclass(slots=True, kw_only=True)
class Answer:
    """What the service answered one request (status 0: no answer)."""

    status: int
    body: bytes
    content_type: str


async def send(http: aiohttp.ClientSession, url: str, request: Request) -> Answer:
    """Send ``request`` to the service at ``url`` and read the whole answer."""
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    if request.bearer:
        headers["Authorization"] = request.bearer
    async with http.request(
        request.method,
        URL(url + request.path, encoded=True),
        data=request.body,
        headers=headers,
        skip_auto_headers=("Content-Type",),
    ) as resp:
        return Answer(status=resp.status, body=await resp.read(), content_type=resp.content_type)


def contract_breach(request: Request, answer: Answer) -> str:
    """Return what is wrong with ``answer`` ("" when it keeps the API's contract)."""
    if answer.status >= 500:
        return f"status {answer.status}"
    if answer.status < 400:
        return ""
    try:
        body = json.loads(answer.body) if request.method != "HEAD" else {"error": "", "field": ""}
    except ValueError:
        return f"refusal {answer.status} is not JSON: {answer.body[:80]!r}"
    if not isinstance(body, dict) or set(body) != {"error", "field"}:
        return f"refusal {answer.status} is not {{error, field}}: {answer.body[:80]!r}"
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Bed:
    """The CA process of a campaign and its base URL."""

    url: str
    proc: process.Popen
    log_path: Path


@contextlib.contextmanager
def ca_bed(folder: Path) -> Iterator[tuple[Bed, str]]:
    """Start a broker and the CA service on loopback ports; yield it and its token."""
    folder.mkdir(parents=True, exist_ok=True)
    token = prepare_ca(folder / "ca")
    endpoints, port = random_endpoints(), free_port()
    settings = {
        "data_dir": str(folder / "ca"),
        "create": "false",
        "port": str(port),
        "admin_secret": ADMIN,
    }
    log_path = folder / "ca.log"
    with (
        service_process("broker", endpoints, log_path=folder / "broker.log"),
        service_process("ca", endpoints, settings=settings, log_path=log_path) as proc,
    ):
        yield Bed(url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path), token


class CaCampaign:
    """Send mutated requests to a running CA and check each answer and the status after it."""

    def __init__(self, bed: Bed, http: aiohttp.ClientSession, token: str, *, seed: int) -> None:
        self.bed, self.http = bed, http
        self.maker = RequestMaker(token, seed=seed)
        self.inputs = self.refused = self.accepted = 0
        self.changed_on_refusal = 0
        self.answers: dict[str, int] = {}

    async def status(self) -> dict[str, Any]:
        """Return ``GET /status`` (the proof's before/after state)."""
        async with self.http.get(f"{self.bed.url}/status") as resp:
            value: dict[str, Any] = await resp.json()
            return value

    async def one(self, request: Request, limit_s: float) -> tuple[str, str]:
        """Send one request; return (crash kind, message), ("", "") when all is well."""
        before = await self.status()
        try:
            answer = await asyncio.wait_for(send(self.http, self.bed.url, request), limit_s)
        except TimeoutError:
            return (HANG, f"no answer within {limit_s} s")
        except aiohttp.ClientError as exc:
            dead = self.bed.proc.poll() is not None
            return ("ServiceExited" if dead else "ConnectionDropped", repr(exc))
        self.answers[str(answer.status)] = self.answers.get(str(answer.status), 0) + 1
        breach = contract_breach(request, answer)
        if breach:
            return ("ContractBreach", breach)
        if answer.status >= 400:
            self.refused += 1
            if await self.status() != before:
                self.changed_on_refusal += 1
                return ("StateChanged", f"status changed by a {answer.status} refusal")
        else:
            self.accepted += 1
        return ("", "")

    async def fuzz(self, budget: Budget, book: CrashBook) -> None:
        """Send requests until the budget is spent or the service died."""
        start = time.monotonic()
        while not budget.exhausted(start, self.inputs):
            request = self.maker.next()
            self.inputs += 1
            kind, message = await self.one(request, max(budget.per_input_s, 5.0))
            if kind:
                book.record(
                    kind, f"ca-http {request.method} {request.path}", message, request.saved()
                )
            if self.bed.proc.poll() is not None:
                return


async def _campaign(
    bed: Bed, token: str, budget: Budget, book: CrashBook, seed: int
) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        campaign = CaCampaign(bed, http, token, seed=seed)
        before = await campaign.status()
        start = time.monotonic()
        await campaign.fuzz(budget, book)
        seconds = time.monotonic() - start
        alive = bed.proc.poll() is None
        after = await campaign.status() if alive else {}
    return {
        "seconds": seconds,
        "inputs": campaign.inputs,
        "alive": alive and "Traceback" not in bed.log_path.read_text(errors="replace"),
        "refused": campaign.refused,
        "accepted": campaign.accepted,
        "answers": dict(sorted(campaign.answers.items())),
        "unchanged": campaign.changed_on_refusal == 0,
        "status_before": before,
        "status_after": after,
    }


def fuzz_ca_http(budget: Budget, *, seed: int, out: Path) -> FuzzReport:
    """Run the CA HTTP campaign; return its report (``gateway`` holds the CA's proof)."""
    book = CrashBook("ca-http", out / "crashes")
    with ca_bed(out / "ca-http") as (bed, token):
        result = asyncio.run(_campaign(bed, token, budget, book, seed))
    return FuzzReport(
        target="ca-http",
        engine="mutator",
        seed=seed,
        seconds=float(result.pop("seconds")),
        inputs=int(result.pop("inputs")),
        corpus=9,
        crashes=book.unique(),
        hangs=[c for c in book.crashes.values() if c.kind == HANG],
        gateway=result,
    )
