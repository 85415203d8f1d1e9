"""The device access token request (RFC 8628 §3.4, §3.5): the device polls until the person has decided.

Invariants: tokens are delivered exactly once, to the poll that wins the APPROVED -> DELIVERED
compare-and-set; the clear tokens exist only in that poll's answer. A flow that failed after approval is
DENIED again, so the device hears access_denied, not invalid_grant (on which DomoticzLinky disables itself).
"""

from __future__ import annotations

import json
import logging
import time

from deviceflow import sealing
from deviceflow.config import Config
from deviceflow.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidGrant,
    InvalidRequest,
    SlowDown,
    UpstreamError,
)
from deviceflow.flow.clients import check_client
from deviceflow.flow.records import (
    APPROVED,
    AUTHORIZATION_CODE_PURPOSE,
    DELIVERED,
    DENIED,
    FLOW,
    LENT_SECRET,
    LENT_SECRET_PURPOSE,
    PENDING,
    POLLS,
    FlowRecord,
    sealed_for,
)
from deviceflow.flow.tokens import Tokens
from deviceflow.store import Store, digest

log = logging.getLogger("deviceflow.flow")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
POLL_WINDOW = 60


class DeviceCodeGrant:
    """The token endpoint's device_code grant."""

    def __init__(self, config: Config, store: Store, tokens: Tokens, clock=time.time, passthrough=None):
        """`passthrough` exchanges the authorization code of a device that lent its secret, at its poll."""
        self.config = config
        self.store = store
        self.tokens = tokens
        self.clock = clock
        self.passthrough = passthrough

    def poll(self, client_id: str, device_code: str) -> dict:
        check_client(self.config, client_id)
        if not device_code:
            raise InvalidRequest("device_code is required")
        device_key = digest(device_code)
        flow = self.store.get(FLOW, device_key)
        if flow is None or flow["client_id"] != client_id:
            raise InvalidGrant("unknown device_code")
        status = flow["status"]
        interval = self.config.interval
        if status == PENDING:
            if flow["code_expires"] <= self.clock():
                if flow.get("lent"):
                    self.store.delete(LENT_SECRET, device_key)
                raise ExpiredToken("the device code has expired, start again")
            polls = self.store.incr(POLLS, device_key, POLL_WINDOW)
            if polls > self.config.limit_requests_per_minute:
                raise SlowDown(f"poll at most every {interval} seconds", interval=interval)
            raise AuthorizationPending("waiting for the user to approve", interval=interval)
        if status == DENIED:
            raise AccessDenied("the user or upstream refused the authorization")
        if status == APPROVED:
            # One poller wins the compare-and-set; the clear tokens exist only in its answer.
            before = self.store.update_if(
                FLOW,
                device_key,
                {"status": APPROVED},
                {"status": DELIVERED, "upstream": None, "usage_points": None, "sealed": None, "sealed_code": None},
            )
            if before is not None:
                return self._deliver(device_code, device_key, client_id, before)
        raise InvalidGrant("the device code was already used")

    def _deliver(self, device_code: str, device_key: str, client_id: str, flow: FlowRecord) -> dict:
        """The token response of the poll that won the delivery of an approved flow."""
        if flow.get("sealed_code"):
            return self._exchange_lent_code(device_code, device_key, flow)
        log.info("tokens delivered for a device flow")
        if flow.get("sealed"):
            return _open_upstream_answer(device_code, flow["sealed"], device_key)
        if flow.get("upstream") is not None:
            return {**flow.get("extra", {}), **flow["upstream"]}
        return self.tokens.mint(flow["usage_points"], client_id, flow.get("scope", ""))

    def _exchange_lent_code(self, device_code: str, device_key: str, flow: FlowRecord) -> dict:
        """The code exchange of a flow whose device lent its secret, at the poll that won the delivery:
        the device code opens the secret and the code; both are erased whatever upstream answers."""
        lent = self.store.take(LENT_SECRET, device_key)
        try:
            grant = json.loads(
                sealing.open_with(device_code, flow["sealed_code"], sealed_for(AUTHORIZATION_CODE_PURPOSE, device_key))
            )
            secret = (
                sealing.open_with(device_code, lent["sealed"], sealed_for(LENT_SECRET_PURPOSE, device_key)).decode()
                if lent
                else ""
            )
        except sealing.CannotOpen:
            log.warning("a sealed authorization code or lent secret did not open: the device is told to start again")
            secret, grant = "", None
        if not secret or grant is None:  # the lent secret expired (no poll for minutes) or was altered
            self._deny_delivered(device_key)
            raise ExpiredToken("the authorization could not be completed in time, start again")
        try:
            response = self.passthrough.exchange_code(grant["code"], grant["client_id"], secret, grant["verifier"])
        except UpstreamError:
            self._deny_delivered(device_key)
            raise AccessDenied("upstream refused the authorization code, start again") from None
        log.info("tokens delivered for a device flow")
        return {**{k: v for k, v in grant["extra"].items() if k not in response}, **response}

    def _deny_delivered(self, device_key: str) -> None:
        # The device then hears access_denied again, not invalid_grant (on which DomoticzLinky disables itself).
        self.store.update_if(FLOW, device_key, {"status": DELIVERED}, {"status": DENIED})


def _open_upstream_answer(device_code: str, sealed: str, device_key: str) -> dict:
    """Upstream's answer sealed at the callback, opened with the device code the device presented."""
    try:
        opened = json.loads(sealing.open_with(device_code, sealed, device_key.encode()))
    except sealing.CannotOpen:
        # Only an altered store gets here (the record was found by this code's digest).
        log.warning("a sealed upstream token response did not open: the device is told to start again")
        raise ExpiredToken("the authorization could not be delivered, start again") from None
    return {**opened["extra"], **opened["upstream"]}
