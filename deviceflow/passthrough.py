"""The upstream token endpoint in generic pass-through mode (FLOW=DEVICE), with no web framework in it.

Two calls lend the proxy's `CLIENT_SECRET` to upstream, and only two: the
authorization_code exchange when the person comes back from consent, and the
refresh_token grant a device sends to `/device/proxy`. The PHP server lent the
secret to whatever grant a device named (client_credentials included, which
gave anyone an application token); here any other grant is refused before a
single byte leaves the proxy.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from deviceflow.config import Config
from deviceflow.errors import InvalidRequest, UnsupportedGrantType, UpstreamBadAnswer, UpstreamRefused
from deviceflow.flow.tokens import REFRESH_TOKEN_GRANT
from deviceflow.upstream import json_body, loggable, make_session, send

log = logging.getLogger("deviceflow.passthrough")

AUTHORIZATION_CODE_GRANT = "authorization_code"
JSON = "application/json"


@dataclass(frozen=True)
class Forwarded:
    """Upstream's answer to a forwarded request, to be handed to the device as it is."""

    status: int
    body: bytes
    content_type: str


class Passthrough:
    """Calls to `TOKEN_ENDPOINT` on behalf of devices."""

    def __init__(self, config: Config, session=None):
        self.config = config
        self.session = session or make_session(config)

    def exchange_code(self, code: str, client_id: str, secret: str = "", verifier: str | None = None) -> dict:
        """The upstream token response for an authorization code (RFC 6749 §4.1.3).

        Raises an UpstreamError (timeout, unreachable, not JSON, refused) when no
        token came back; its message holds no secret and no upstream text.
        """
        form = {"grant_type": AUTHORIZATION_CODE_GRANT, "code": code, "client_id": client_id}
        if self.config.redirect_uri:  # it went to the authorization endpoint, so it must come here too
            form["redirect_uri"] = self.config.redirect_uri
        if secret:
            form["client_secret"] = secret
        if verifier:
            form["code_verifier"] = verifier
        response = send(self.session, self.config, "POST", self.config.token_endpoint, data=form)
        body = json_body(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            error = body.get("error") if isinstance(body, dict) else None
            log.warning(
                "authorization code exchange refused by upstream: HTTP %d, error %s",
                response.status_code,
                loggable(error) or "(none)",
            )
            raise UpstreamRefused(f"upstream answered {response.status_code} without an access token")
        return body

    def forward_refresh(self, form: dict[str, str], client_id: str) -> Forwarded:
        """Forward a device's refresh_token request as the PHP server does, with the secret added.

        `client_id` is the id the device presented, already allowed; upstream
        gets `CLIENT_ID` instead when one is configured (the device may use an
        EXTERNAL_CLIENT_ID alias). Any grant but refresh_token is refused here,
        before any call: the secret is never lent to another grant.
        """
        grant = form.get("grant_type", "")
        if not grant:
            raise InvalidRequest("grant_type is required")
        if grant != REFRESH_TOKEN_GRANT:
            raise UnsupportedGrantType("/device/proxy forwards the refresh_token grant only")
        if not form.get("refresh_token"):
            raise InvalidRequest("refresh_token is required")
        outgoing = {**form, "client_id": self.config.client_id or client_id}
        if self.config.client_secret:
            outgoing["client_secret"] = self.config.client_secret
        url = self.config.token_endpoint
        if self.config.redirect_uri:
            # In the query string, where the PHP server put it (Enedis's v1 token endpoint reads it there).
            url += ("&" if "?" in url else "?") + urlencode({"redirect_uri": self.config.redirect_uri})
        response = send(self.session, self.config, "POST", url, data=outgoing)
        log.info("refresh_token request forwarded to upstream: HTTP %d", response.status_code)
        content_type = response.headers.get("Content-Type", "")
        try:
            json_body(response)
        except UpstreamBadAnswer as error:
            # A load balancer's HTML page is no answer a device can read: JSON, upstream's error status kept.
            status = response.status_code if response.status_code >= 400 else error.status
            return Forwarded(status, json.dumps(error.body()).encode(), JSON)
        return Forwarded(response.status_code, response.content, content_type or JSON)
