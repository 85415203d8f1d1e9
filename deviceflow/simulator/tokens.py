"""The token endpoints, the codes and tokens they issue, and the bearer check of the data APIs.

* ``/oauth2/v3/token``: client_credentials, the application's own token, with
  ``expires_in`` as a *string*, like Enedis;
* ``/v1/oauth2/token``: authorization_code (with PKCE S256) and refresh_token,
  for the generic pass-through mode; its tokens reach only the PRMs of the consent.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from typing import TYPE_CHECKING, Literal, TypedDict

import bottle

from deviceflow.simulator.protocol import (
    NO_STORE,
    bearer_token,
    json_answer,
    oauth_error,
    request_arg,
    same_secret,
    unauthorized,
)

if TYPE_CHECKING:
    from deviceflow.simulator.control import Knobs

CODE_LIFETIME = 300  # authorization codes (v1 consent)
REFRESH_LIFETIME = 3 * 366 * 86400


class AccessToken(TypedDict):
    kind: Literal["v1", "v3"]  # v1: a customer's consent; v3: the application itself
    client_id: str
    prms: tuple[str, ...] | None  # None: a v3 token, not bound to any PRM
    expires: float


class RefreshToken(TypedDict):
    prms: tuple[str, ...]
    expires: float


class AuthorizationCode(TypedDict):
    client_id: str
    prms: tuple[str, ...]
    redirect_uri: str
    explicit_redirect_uri: bool  # the authorize request named it: the token request must repeat it
    code_challenge: str | None
    expires: float


def s256_challenge(verifier: str) -> str:
    """The PKCE S256 challenge of a code verifier."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _invalid_grant() -> bottle.HTTPResponse:
    return oauth_error(
        400,
        "invalid_grant",
        "The provided authorization grant or refresh token is invalid, expired, "
        "revoked, does not match the redirection URI used in the authorization request, or was "
        "issued to another client",
    )


def _unsupported_grant_type() -> bottle.HTTPResponse:
    return oauth_error(
        400, "unsupported_grant_type", "The authorization grant type is not supported by the authorization server"
    )


class TokenEndpoints:
    """The authorization server: issues codes and tokens, redeems them, checks bearers.

    Invariants: a code and a refresh token are redeemed at most once (a refused
    attempt uses them up too); a record past its `expires` is never honoured
    (purging only frees memory); every record is guarded by `_lock`, as
    waitress serves from many threads.

    client_id: the only client accepted.
    client_secret: the secret token requests must carry; None accepts any (or none).
    knobs: read for `token_lifetime`.
    """

    def __init__(self, client_id: str, client_secret: str | None, clock, knobs: Knobs):
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock
        self.knobs = knobs
        self._lock = threading.Lock()
        self._access_tokens: dict[str, AccessToken] = {}
        self._refresh_tokens: dict[str, RefreshToken] = {}
        self._codes: dict[str, AuthorizationCode] = {}

    # -- issued by the v1 consent page --------------------------------------

    def issue_code(
        self, prms: tuple[str, ...], redirect_uri: str, explicit_redirect_uri: bool, code_challenge: str | None
    ) -> str:
        """A new authorization code for the PRMs a customer consented to, valid CODE_LIFETIME seconds."""
        code = new_secret()
        with self._lock:
            self._purge()
            self._codes[code] = {
                "client_id": self.client_id,
                "prms": prms,
                "redirect_uri": redirect_uri,
                "explicit_redirect_uri": explicit_redirect_uri,
                "code_challenge": code_challenge,
                "expires": self.clock() + CODE_LIFETIME,
            }
        return code

    # -- the endpoints ------------------------------------------------------

    def token_v3(self) -> bottle.HTTPResponse:
        form = self._authenticated_form()
        if request_arg(form, "grant_type") != "client_credentials":
            return _unsupported_grant_type()
        token, lifetime = new_secret(), self.knobs.token_lifetime
        with self._lock:
            self._purge()
            self._access_tokens[token] = {
                "kind": "v3",
                "client_id": self.client_id,
                "prms": None,
                "expires": self.clock() + lifetime,
            }
        return json_answer(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                # a string, as Enedis's swagger (and Enedis) does
                "expires_in": str(lifetime),
                "scope": "am_application_scope default",
            },
            NO_STORE,
        )

    def token_v1(self) -> bottle.HTTPResponse:
        form = self._authenticated_form()
        grant_type = request_arg(form, "grant_type")
        if grant_type == "authorization_code":
            prms = self._redeem_code(form)
        elif grant_type == "refresh_token":
            prms = self._redeem_refresh_token(form)
        else:
            return _unsupported_grant_type()
        access, refresh, lifetime = new_secret(), new_secret(), self.knobs.token_lifetime
        now = self.clock()
        with self._lock:
            self._purge()
            self._access_tokens[access] = {
                "kind": "v1",
                "client_id": self.client_id,
                "prms": prms,
                "expires": now + lifetime,
            }
            self._refresh_tokens[refresh] = {"prms": prms, "expires": now + REFRESH_LIFETIME}
        issued_at = str(int(now * 1000))
        return json_answer(
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "token_type": "Bearer",
                "expires_in": lifetime,
                "scope": "",
                "refresh_token_issued_at": issued_at,
                "issued_at": issued_at,
                "usage_points_id": ",".join(prms),
            },
            NO_STORE,
        )

    def _authenticated_form(self) -> bottle.FormsDict:
        """The form of a token request with a form content type, a grant type and the client's credentials.

        Raises the OAuth error otherwise. HTTP Basic credentials, also accepted by Enedis, win over the form's.
        """
        request = bottle.request
        if request.content_type.split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise oauth_error(400, "invalid_request", "Le Content-Type doit être application/x-www-form-urlencoded")
        form = request.forms
        client_id, client_secret = request_arg(form, "client_id"), request_arg(form, "client_secret")
        if request.auth and request.auth[0]:
            client_id, client_secret = request.auth
        if not request_arg(form, "grant_type") or not client_id:
            raise oauth_error(400, "invalid_request", "The request is missing a required parameter")
        if client_id != self.client_id or (
            self.client_secret is not None and not same_secret(client_secret or "", self.client_secret)
        ):
            raise oauth_error(
                401,
                "invalid_client",
                "Client authentication failed (e.g., unknown client, no client "
                "authentication included, or unsupported authentication method)",
            )
        return form

    def _redeem_code(self, form: bottle.FormsDict) -> tuple[str, ...]:
        """The PRMs of a live code whose redirect URI and PKCE verifier match; raises invalid_grant otherwise."""
        code = request_arg(form, "code")
        if not code:
            raise oauth_error(400, "invalid_request", "code parameter is required")
        with self._lock:
            grant = self._codes.pop(code, None)  # single use, even if refused below
        if grant is None or grant["expires"] <= self.clock():
            raise _invalid_grant()
        redirect_uri = request_arg(form, "redirect_uri")
        if (grant["explicit_redirect_uri"] or redirect_uri) and redirect_uri != grant["redirect_uri"]:
            raise _invalid_grant()
        if grant["code_challenge"]:
            verifier = request_arg(form, "code_verifier") or ""
            if not same_secret(s256_challenge(verifier), grant["code_challenge"]):
                raise _invalid_grant()
        return grant["prms"]

    def _redeem_refresh_token(self, form: bottle.FormsDict) -> tuple[str, ...]:
        """The PRMs of a live refresh token, which is used up (rotated); raises invalid_grant otherwise."""
        refresh = request_arg(form, "refresh_token")
        if not refresh:
            raise oauth_error(400, "invalid_request", "refresh_token parameter is required")
        with self._lock:
            grant = self._refresh_tokens.pop(refresh, None)
        if grant is None or grant["expires"] <= self.clock():
            raise _invalid_grant()
        return grant["prms"]

    def _purge(self) -> None:
        """Forget expired tokens and codes; the caller holds the lock."""
        now = self.clock()
        for records in (self._access_tokens, self._refresh_tokens, self._codes):
            for key in [k for k, v in records.items() if v["expires"] <= now]:
                del records[key]

    # -- the data APIs' side ------------------------------------------------

    def bearer(self, allow_v1: bool) -> AccessToken:
        """The live access token the request carries; raises the gateway's 401 otherwise.

        allow_v1: whether a customer's (v1) token is honoured; the 2026 APIs take only the application's (v3).
        """
        token = bearer_token()
        if not token:
            raise unauthorized(missing=True)
        with self._lock:
            info = self._access_tokens.get(token)
        if info is None or info["expires"] <= self.clock() or (info["kind"] == "v1" and not allow_v1):
            raise unauthorized(missing=False)
        return info

    def holds_live_token(self) -> bool:
        """Whether the request carries an access token that is still live (of any kind)."""
        token = bearer_token()
        with self._lock:
            info = self._access_tokens.get(token) if token is not None else None
        return info is not None and info["expires"] > self.clock()

    def revoke_access_tokens(self) -> None:
        """Enedis forgetting every access token it issued (refresh tokens stay)."""
        with self._lock:
            self._access_tokens.clear()
