"""The one error tree of smtestbed.

Every error a user can cause (bad config, bad bytes, a refusing peer) is a
:class:`TestbedError`. The CLI prints such an error as one line and exits 1;
anything else reaching the top level is a bug and keeps its traceback.
"""

from __future__ import annotations


class TestbedError(Exception):
    """Base of every error that smtestbed raises on purpose."""

    __test__ = False  # keep pytest from collecting this as a test class


class ConfigError(TestbedError):
    """A configuration value, file or command-line option is invalid.

    Attributes:
        key: the dotted configuration key at fault, or "" when the whole file is.
    """

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


class ProtocolError(TestbedError):
    """Bytes or a message on a wire do not follow the format they claim.

    Attributes:
        reason: short machine-readable cause (``bad_crc``, ``truncated``, ...).
        offset: byte offset in the input where the fault was found, or None.
    """

    def __init__(
        self, message: str, *, reason: str = "malformed", offset: int | None = None
    ) -> None:
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}")
        self.reason = reason
        self.offset = offset


class RequestError(TestbedError):
    """A request's parameters are invalid; the message names the field.

    Attributes:
        field: the parameter at fault.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class PeerError(TestbedError):
    """The other side of a request refused it or could not be reached."""


class UnknownServiceError(PeerError):
    """A request named a service that is not registered with the broker."""


class ServiceUnavailableError(PeerError):
    """A request named a service that is registered but dead (missed heartbeats)."""


class RequestTimeoutError(PeerError):
    """No reply arrived within the request's timeout, after all retries."""


class RemoteError(PeerError):
    """The service handled the request and answered with an error.

    Attributes:
        code: the error class name the service reported (``ConfigError``, ...).
    """

    def __init__(self, message: str, *, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class ServiceError(TestbedError):
    """A service failed to start or stopped abnormally."""
