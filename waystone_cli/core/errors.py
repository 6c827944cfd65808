"""The one error hierarchy.

Every error carries a message that is safe to show to a user or an API client.
They are translated in exactly two places: the CLI root (one red line and an exit
code) and the daemon's ``daemon.errors`` (OpenAI's error envelope with a status).
"""

from __future__ import annotations


class WaystoneError(Exception):
    """Base class: ``str(err)`` is safe to show."""

    status = 500
    type = "server_error"
    code: str | None = "internal_error"
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param


class ConfigError(WaystoneError):
    """The config file is missing, unreadable or does not validate."""

    status = 500
    code = "config_error"


class UsageError(WaystoneError):
    """The user asked for something that cannot be done (CLI exit 2 when misuse)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class NotFoundError(WaystoneError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class InvalidRequest(WaystoneError):
    """A client request is malformed (400)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class IdentityError(InvalidRequest):
    """``metadata.waystone`` or the identity headers are malformed."""

    code = "invalid_identity"


class AuthError(WaystoneError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotFound(WaystoneError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class BodyTooLarge(WaystoneError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class PolicyBlocked(WaystoneError):
    """A ruleset refused the request; 403 for policy, 429 for usage/rate limits."""

    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 403,
        code: str = "blocked",
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.headers = headers or {}


class UpstreamError(WaystoneError):
    """The provider could not be reached or failed (502)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class LedgerUnavailable(WaystoneError):
    """The ledger cannot be read where a request needs it (an evicted user's usage)."""

    status = 503
    code = "ledger_unavailable"


class ClusterUnavailable(WaystoneError):
    """The shared counters (Redis) cannot be used for a request a counter rule applies to."""

    status = 503
    code = "cluster_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
