"""Errors of the CA: a refused request names its field; a broken CA directory says why."""

from __future__ import annotations

from smtestbed.services._runtime.errors import RequestError, TestbedError


class CaError(TestbedError):
    """The CA directory is missing, unreadable, or its keys do not decrypt."""


class InvalidRequestError(RequestError):
    """A request is malformed or asks for something the profile forbids (HTTP 400)."""


class RefusedError(RequestError):
    """The requester is not authorised for what it asked (HTTP 403)."""


class NotFoundError(RequestError):
    """A request names a CA, certificate or profile that does not exist (HTTP 404)."""
