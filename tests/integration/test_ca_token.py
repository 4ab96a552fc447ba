"""The CA service's POST /token on a real aiohttp server, with events on a real bus."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints, Event
from smtestbed.services._runtime.testing import bus_client, wait_for_event
from smtestbed.services.ca.state import DB_FILE

from tests.integration.test_ca_http import ADMIN, GATEWAY, _ca, _post, _prepare
from tests.unit.ca.ca_helpers import make_csr

BEARER = {"Authorization": f"Bearer {ADMIN}"}


def _tokens(folder: Path) -> int:
    """Return how many tokens the CA directory stores (read with sqlite3, not the CA)."""
    with sqlite3.connect(folder / DB_FILE) as db:
        (count,) = db.execute("SELECT count(*) FROM tokens").fetchone()
    return int(count)


def test_admin_token_issues_once_for_its_subject_and_profile(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """POST /token with the admin secret: 201; the token issues that CSR once, then is used up."""
    _prepare(tmp_path / "ca", [])
    request = {"csr": make_csr(GATEWAY).decode(), "profile": "smgw-tls"}

    async def scenario() -> tuple[tuple[int, Any], ...]:
        async with _ca(endpoints, tmp_path / "ca") as url, aiohttp.ClientSession() as http:
            body = {"profile": "smgw-tls", "subject": GATEWAY}
            made = await _post(http, f"{url}/token", body, headers=BEARER)
            token = made[1].get("token", "")
            first = await _post(http, f"{url}/issue", {**request, "token": token})
            again = await _post(http, f"{url}/issue", {**request, "token": token})
        return made, first, again

    (status, made), (first, issued), (again, refused) = asyncio.run(scenario())
    assert status == 201, made
    assert (made["purpose"], made["profile"], made["subject"]) == ("issue", "smgw-tls", GATEWAY)
    assert datetime.fromisoformat(made["expires"]) > datetime.now(UTC) + timedelta(days=6)
    assert (first, issued["subject"], issued["profile"]) == (201, GATEWAY, "smgw-tls")
    assert (again, refused["field"]) == (403, "token")
    assert "used" in refused["error"]


BAD_TOKENS: list[tuple[dict[str, str], Any, int, str]] = [
    ({}, {"profile": "smgw-tls", "subject": GATEWAY}, 401, "authorization"),
    (
        {"Authorization": "Bearer wrong"},
        {"profile": "smgw-tls", "subject": GATEWAY},
        403,
        "authorization",
    ),
    (
        {"Authorization": f"Basic {ADMIN}"},
        {"profile": "smgw-tls", "subject": GATEWAY},
        403,
        "authorization",
    ),
    (BEARER, {"profile": "no-such-profile", "subject": GATEWAY}, 422, "profile"),
    (BEARER, {"profile": "root", "subject": GATEWAY}, 422, "profile"),
    (BEARER, {"profile": "smgw-tls", "subject": "Not A Host"}, 422, "subject"),
    (BEARER, {"profile": "smgw-tls", "subject": GATEWAY, "purpose": "x"}, 422, "purpose"),
    (BEARER, {"subject": GATEWAY}, 422, "profile"),
    (BEARER, {"profile": "smgw-tls", "subject": 7}, 422, "subject"),
    (BEARER, [1, 2], 400, "body"),
]


def test_refused_token_requests_name_the_field_publish_an_event_and_store_nothing(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """No secret 401, a wrong one 403, a bad profile/subject/purpose 422: each names its
    field, is a ca.request_refused event with action token, and stores no token."""
    _prepare(tmp_path / "ca", [])

    async def scenario() -> tuple[list[tuple[int, Any, str]], list[Event]]:
        answers, events = [], []
        async with bus_client(endpoints) as client, _ca(endpoints, tmp_path / "ca") as url:
            sub = client.subscribe([topics.CA_REQUEST_REFUSED])
            await asyncio.sleep(0.5)  # let the subscription reach the broker
            async with aiohttp.ClientSession() as http:
                for headers, body, _, _ in BAD_TOKENS:
                    async with http.post(f"{url}/token", json=body, headers=headers) as resp:
                        challenge = resp.headers.get("WWW-Authenticate", "")
                        answers.append((resp.status, await resp.json(), challenge))
            for _ in BAD_TOKENS:
                events.append(await wait_for_event(sub, lambda e: True))
        return answers, events

    answers, events = asyncio.run(scenario())
    for (_, _, want_status, want_field), (got, body, _) in zip(BAD_TOKENS, answers, strict=True):
        assert (got, body["field"]) == (want_status, want_field), body
        assert body["error"]
    assert answers[0][2].startswith("Bearer")
    assert [(e.body["action"], e.body["field"]) for e in events] == [
        ("token", field) for _, _, _, field in BAD_TOKENS
    ]
    assert _tokens(tmp_path / "ca") == 0
