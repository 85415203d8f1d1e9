"""Consent at upstream (RFC 8628 §3.3, RFC 6749 §4.1): the person is sent to the authorization endpoint with a
fresh `state`, and comes back with the outcome.

Invariants (each one a defence; see the README's security section):
- a state is single use, bound to the browser that asked for it, and to its first outcome: it takes
  RETURNS_PER_STATE returns at most, for one `autorisation_id` only (the first it saw), and is spent once its
  flow is approved or denied, or by any return that could never approve it;
- a v2 return is believed only for a fresh share that Enedis names, one share per flow;
- returns naming a flow of this browser count against the network's budget;
- a flow moves out of PENDING once, by compare-and-set (`settle_pending`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from urllib.parse import urlencode

from deviceflow import randomness, sealing
from deviceflow.config import Config
from deviceflow.errors import PageError, StaleConsent, StoreUnavailable, UpstreamError
from deviceflow.flow.clients import network_of
from deviceflow.flow.device_code_grant import SETTLED_MEMORY, PendingView
from deviceflow.flow.records import (
    APPROVED,
    AUTHORIZATION_CODE_PURPOSE,
    CONSENT_RETURNS,
    DENIED,
    FLOW,
    LENT_SECRET,
    MODE_CLIENT_CREDENTIALS,
    MODE_DEVICE,
    PENDING,
    SETTLED,
    STATE,
    STATE_RETURNS,
    USER_CODE,
    FlowRecord,
    StateRecord,
    sealed_for,
)
from deviceflow.flow.verification import PendingFlow
from deviceflow.store import Store, digest
from deviceflow.upstream import loggable
from deviceflow.usage_points import parse_usage_points

log = logging.getLogger("deviceflow.flow")

# Seconds the person is told to wait before reloading when Enedis has not registered a v2 share yet.
NO_USAGE_POINTS_RETRY = 5
# Returns from the consent page: a state takes this many within its lifetime
# (reloads while Enedis registers a share), and one network this many in the
# window; each v2 return may cost Enedis look-ups.
RETURNS_PER_STATE = 5
RETURNS_PER_ADDRESS = 30
RETURNS_PER_ADDRESS_WINDOW = 15 * 60

STATE_SUFFIX = re.compile(r"[A-Za-z0-9_-]{1,16}")
# A state suffix asking for client_credentials, which works only with the proxy's own secret.
CLIENT_CREDENTIALS_SUFFIX = "-cg"

# Redirect parameters never handed to the device: the exchange's own, and every
# field of a token response (RFC 6749 §5.1, §5.2; OpenID's id_token), so that a
# query string can neither override nor fill in what only upstream may say.
RESERVED_TOKEN_FIELDS = frozenset(
    {
        "code",
        "state",
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "scope",
        "id_token",
        "error",
        "error_description",
        "error_uri",
    }
)


class Consent:
    """The way to upstream's consent page and back."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock=time.time,
        upstream=None,
        passthrough=None,
        pending: PendingView | None = None,
    ):
        """`upstream` is the Enedis client, used to turn a v2 `autorisation_id` into usage points;
        `passthrough` (deviceflow.passthrough) exchanges the authorization code in FLOW=DEVICE; `pending`
        is the instance's view of pending flows, told when a flow is settled here."""
        self.config = config
        self.store = store
        self.clock = clock
        self.upstream = upstream
        self.passthrough = passthrough
        self.pending = pending

    def consent_url(self, pending: PendingFlow, browser_id: str, state_suffix: str = "") -> str:
        """Bind a fresh single-use state to this browser and give the consent URL."""
        if state_suffix and not STATE_SUFFIX.fullmatch(state_suffix):
            state_suffix = ""
        mode = MODE_CLIENT_CREDENTIALS
        if self.config.device_mode and not (
            state_suffix.endswith(CLIENT_CREDENTIALS_SUFFIX) and self.config.client_secret
        ):
            mode = MODE_DEVICE
        state = randomness.token_urlsafe(24) + state_suffix
        client_id = self.config.client_id or pending.client_id
        params = {
            "client_id": client_id,
            "response_type": "code",
            "state": state,
            "duration": self.config.duration,
            "redirect_uri": self.config.redirect_uri,
        }
        # The page showed the flow from its user code's record alone; the button press checks the flow itself,
        # which may be settled behind a record whose deletion failed.
        flow = self.store.get(FLOW, pending.device_key)
        if flow is None or flow["status"] != PENDING or flow["code_expires"] <= self.clock():
            raise PageError("unknown_code")
        if flow.get("scope"):
            params["scope"] = flow["scope"]
        record: StateRecord = {
            "device": pending.device_key,
            "browser": digest(browser_id),
            "mode": mode,
            "started": self.clock(),
            "client_id": client_id,
            "autorisation_id": None,
        }
        if self.config.pkce and mode == MODE_DEVICE:
            verifier = randomness.token_urlsafe(48)
            record["verifier"] = verifier
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            params.update(code_challenge=challenge.decode(), code_challenge_method="S256")
        self.store.put(STATE, state, record, self.config.code_lifetime)
        separator = "&" if "?" in self.config.authorization_endpoint else "?"
        return f"{self.config.authorization_endpoint}{separator}{urlencode(params)}"

    def finish(self, params: dict, browser_id: str, address: str | None = None) -> FlowRecord:
        """Settle the flow named by `state`; returns the approved flow record.

        Raises PageError for a missing/replayed state, another browser, an
        expired flow, a refusal at Enedis, or a return the proxy cannot trust.
        A state is bound to its first outcome: it takes RETURNS_PER_STATE
        returns at most, for one `autorisation_id` only (the first it saw),
        and is spent once the flow is approved or denied, or by any return
        that could never approve it. A v2 share that Enedis has not
        registered yet, or Enedis not answering, leaves it, so that reloading
        the page tries again. When `address` is given, a return naming a
        flow of this browser counts against that network's budget.
        """
        state = params.get("state") or ""
        record = self.store.get(STATE, state) if state else None
        if record is None:
            raise PageError("bad_state")
        if not browser_id or not hmac.compare_digest(record["browser"], digest(browser_id)):
            raise PageError("bad_state")
        # Counted once the return names a flow of this browser: returns that name none cost nothing,
        # and must not let a neighbour behind the same address spend the person's budget.
        if (
            address is not None
            and self.store.incr(CONSENT_RETURNS, network_of(address), RETURNS_PER_ADDRESS_WINDOW) > RETURNS_PER_ADDRESS
        ):
            raise PageError("too_many_returns", 429, RETURNS_PER_ADDRESS_WINDOW)
        if self.store.incr(STATE_RETURNS, state, self.config.code_lifetime) > RETURNS_PER_STATE:
            self._discard_state(state)
            raise PageError("bad_state")
        device_key = record["device"]
        flow = self.store.get(FLOW, device_key)
        if flow is None or flow["status"] != PENDING:
            self._discard_state(state)
            raise PageError("unknown_code")
        if flow["code_expires"] <= self.clock():
            self._discard_state(state)
            raise PageError("expired_code")

        if params.get("error"):
            self._take_state(state)
            self.settle_pending(device_key, {"status": DENIED})
            log.info("consent refused at upstream (%s)", loggable(params.get("error")))
            raise PageError("denied")

        if record["mode"] == MODE_DEVICE:
            self._take_state(state)  # an authorization code is good for one exchange, however it ends
            changes = self._exchange_code(params, flow, record, device_key)
        else:
            changes = {"usage_points": self._consented_usage_points(state, params, record)}
            self._take_state(state)
        return self.settle_pending(device_key, {"status": APPROVED, **changes})

    def settle_pending(self, device_key: str, changes: dict) -> FlowRecord:
        """Move a PENDING flow on (approved or denied), once: PageError when it is not pending any more."""
        # First the record that hides the flow from every instance's view of pending flows (device_code_grant).
        self.store.put(SETTLED, device_key, {}, SETTLED_MEMORY)
        before = self.store.update_if(FLOW, device_key, {"status": PENDING}, changes)
        if self.pending is not None:
            self.pending.forget(device_key)  # this instance's next poll reads the settled flow
        if before is None:
            raise PageError("unknown_code")
        if before.get("lent") and not changes.get("sealed_code"):
            self.store.delete(LENT_SECRET, device_key)  # refused, failed or minted by the proxy: its use is over
        self._end_user_code(before["user_code"], device_key)
        return {**before, **changes}

    def _end_user_code(self, user_code: str, device_key: str) -> None:
        """The confirmation page shows a flow while its user code's record lives: end the record, if it is still
        this flow's (expired, the code may have been drawn again for another). A failure leaves the page showing a
        form that the button press refuses (consent_url reads the flow): the settlement itself stands."""
        try:
            self.store.update_if(USER_CODE, user_code, {"device": device_key}, {}, ttl=0)  # expires now
        except StoreUnavailable:
            log.warning("a settled flow's user code could not be ended: its page shows until the code expires")

    def _take_state(self, state: str) -> None:
        """Take the state: what makes completion single-use. None means
        another request with the same state got there first."""
        if self.store.take(STATE, state) is None:
            raise PageError("bad_state")

    def _discard_state(self, state: str) -> None:
        """Spend a state that can no longer approve its flow."""
        self.store.delete(STATE, state)

    def _consented_usage_points(self, state: str, params: dict, record: StateRecord) -> list[str]:
        """client_credentials: the usage points this return proves consent for, in the
        configured consent version's form only. v2: Enedis names them from the
        `autorisation_id`; v1: the redirect carries them (Enedis cannot be asked, see
        config.startup_warnings)."""
        autorisation_id = params.get("autorisation_id") or ""
        if self.config.enedis_authorize_version == "v2":
            if not autorisation_id:
                self._discard_state(state)
                raise PageError("bad_return")
            self._bind_state(state, autorisation_id)
            return self._shared_usage_points(state, autorisation_id, record)
        try:
            if autorisation_id or not params.get("code"):
                raise ValueError("not a v1 return")
            return parse_usage_points(params.get("usage_point_id", ""))
        except ValueError:
            self._discard_state(state)
            raise PageError("bad_return") from None

    def _bind_state(self, state: str, autorisation_id: str) -> None:
        """Tie a state to the first `autorisation_id` it sees; another one is refused."""
        if self.store.update_if(STATE, state, {"autorisation_id": None}, {"autorisation_id": autorisation_id}):
            return
        record = self.store.get(STATE, state)
        bound = str(record.get("autorisation_id")) if record else ""
        if record is None or not hmac.compare_digest(bound.encode(), autorisation_id.encode()):
            log.warning("a consent return named another autorisation_id than its state's first one: refused")
            raise PageError("bad_state")

    def _shared_usage_points(self, state: str, autorisation_id: str, record: StateRecord) -> list[str]:
        """v2 consent: Enedis names the usage points of a fresh share, not the browser's URL."""
        if self.upstream is None:
            raise PageError("upstream_unavailable", 502)
        try:
            points = self.upstream.usage_points_for(
                autorisation_id, started=record["started"], flow_key=record["device"]
            )
        except ValueError:
            self._discard_state(state)
            raise PageError("bad_usage_points") from None
        except StaleConsent:
            raise PageError("stale_consent", 403) from None
        except UpstreamError as error:
            raise PageError("upstream_unavailable", error.status, error.retry_after) from None
        if not points:
            raise PageError("no_usage_points", 503, NO_USAGE_POINTS_RETRY)
        return points

    def _exchange_code(self, params: dict, flow: FlowRecord, record: StateRecord, device_key: str) -> dict:
        """FLOW=DEVICE: the upstream token response for the device, plus the redirect's extra parameters.

        The state and the code are spent, so a flow that cannot complete is denied at once: the
        device hears access_denied instead of polling until the code expires.
        """
        if self.passthrough is None or not params.get("code"):
            self.settle_pending(device_key, {"status": DENIED})
            raise PageError("bad_request")
        if flow.get("lent") and flow.get("public_key"):
            # Only the device code opens the lent secret: the exchange waits for the device's next poll,
            # the code sealed the same way (the success page cannot tell whether upstream will take it).
            grant = {
                "code": params["code"],
                "client_id": record.get("client_id", ""),
                "verifier": record.get("verifier"),
                "extra": {k: v for k, v in params.items() if k not in RESERVED_TOKEN_FIELDS},
            }
            return {
                "sealed_code": sealing.seal_to(
                    flow["public_key"], json.dumps(grant).encode(), sealed_for(AUTHORIZATION_CODE_PURPOSE, device_key)
                )
            }
        try:
            response = self.passthrough.exchange_code(
                params["code"], record.get("client_id", ""), self.config.client_secret, record.get("verifier")
            )
        except UpstreamError as error:
            self.settle_pending(device_key, {"status": DENIED})
            raise PageError("exchange_failed", error.status) from None
        extra = {k: v for k, v in params.items() if k not in RESERVED_TOKEN_FIELDS and k not in response}
        if not flow.get("public_key"):  # a flow started before FLOW=DEVICE was configured holds no key
            return {"upstream": response, "extra": extra}
        answer = json.dumps({"upstream": response, "extra": extra}).encode()
        return {"sealed": sealing.seal_to(flow["public_key"], answer, device_key.encode())}
