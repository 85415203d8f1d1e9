"""Every error the proxy answers with, as data: each class knows what the client hears.

An `ApiError` is what a device or a program reads: its RFC name (`error`), its HTTP status, a
description, and the headers that go with it (`WWW-Authenticate`, `Retry-After`). The web layer
turns any of them into a JSON answer in one place and decides nothing about them.

Three families share that root, so that none is caught in place of another:
- `OAuthError`: the token protocol itself (RFC 6749 §5.2, RFC 8628 §3.5, RFC 6750 §3.1);
- `UpstreamError`: upstream (Enedis, or a generic token endpoint) could not be used;
- `StoreUnavailable`: the store cannot be reached; the request may be retried.

A `PageError` is what a person sees in the browser: it names the page text, not an RFC error.

This module imports nothing from the package, so that any module may raise these without a cycle.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as an RFC 6749 JSON body: `{"error": ..., "error_description": ...}`.

    `extra` fields (such as `interval` of slow_down) are added to the body. A `retry_after` in
    seconds, when set, is sent as `Retry-After`.
    """

    error = "invalid_request"
    status = 400
    retry_after: int | None = None

    def __init__(self, description: str = "", **extra):
        super().__init__(description or self.error)
        self.description = description
        self.extra = extra

    def body(self) -> dict:
        body = {"error": self.error, "error_description": self.description or self.error.replace("_", " ")}
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else {}


# --- the token protocol (RFC 6749 §5.2, RFC 8628 §3.5)


class OAuthError(ApiError):
    """An error of the OAuth protocol, told to the device that asked."""


class InvalidRequest(OAuthError):
    error = "invalid_request"


class MethodNotAllowed(InvalidRequest):
    """A known path asked with a method it does not take: still invalid_request, with HTTP's own status."""

    status = 405


class InvalidClient(OAuthError):
    error, status = "invalid_client", 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class AuthorizationPending(OAuthError):
    error = "authorization_pending"


class SlowDown(OAuthError):
    error = "slow_down"


class ExpiredToken(OAuthError):
    error = "expired_token"


class AccessDenied(OAuthError):
    error = "access_denied"


class VersionMismatch(OAuthError):
    """The device's User-Agent names a version older than VERSION_MIN."""

    error = "version_mismatch"


class InvalidToken(OAuthError):
    """A Bearer token that is unknown, expired or revoked (RFC 6750 §3.1)."""

    error, status = "invalid_token", 401

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": 'Bearer error="invalid_token"'}


class InsufficientScope(OAuthError):
    error, status = "insufficient_scope", 403


class TemporarilyUnavailable(OAuthError):
    error, status = "temporarily_unavailable", 503


class TooManyRequests(OAuthError):
    error, status = "too_many_requests", 429

    def __init__(self, description: str = "", retry_after: int = 60):
        super().__init__(description)
        self.retry_after = retry_after


class NotFound(OAuthError):
    error, status = "not_found", 404


class ServerError(OAuthError):
    """Anything the proxy did not foresee; the client never sees a traceback."""

    error, status = "server_error", 500


# --- upstream could not be used


class UpstreamError(ApiError):
    """Upstream could not be used; `status` and `error` are what the device gets."""

    status = 502
    error = "upstream_unreachable"

    def __init__(self, description: str = "upstream is not reachable"):
        super().__init__(description)

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


class UpstreamUnreachable(UpstreamError):
    status, error = 502, "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status, error = 504, "upstream_timeout"


class UpstreamBadAnswer(UpstreamError):
    """Upstream answered, but with something unusable (not JSON, wrong shape, too large)."""

    status, error = 502, "upstream_error"


class UpstreamRefused(UpstreamError):
    """The token endpoint answered, but issued no token (an OAuth error, or no access_token)."""

    status, error = 502, "upstream_refused"


class UpstreamBusy(UpstreamError):
    """No call to Enedis now: the outbound budget is spent, or Enedis throttles us."""

    status, error = 429, "too_many_requests"

    def __init__(self, description: str, retry_after: int):
        super().__init__(description)
        self.retry_after = retry_after


class StaleConsent(Exception):
    """An `autorisation_id` whose services all began before the flow: not a share made for it.

    Never answered as such: the consent step turns it into the `stale_consent` page."""


# --- the store


class StoreUnavailable(ApiError):
    """The store cannot be reached; the request gets 503 and may be retried.

    The message (for logs) says what failed; the device hears only that the store is unavailable."""

    error, status = "temporarily_unavailable", 503

    def __init__(self, message: str = "the store is not available"):
        super().__init__("the store is not available, retry later")
        self.args = (message,)


# --- what the person sees go wrong; the web layer picks the page


class PageError(Exception):
    """A browser-side failure; `reason` names the page text to show (deviceflow.texts)."""

    def __init__(self, reason: str, status: int = 400, retry_after: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else {}
