"""The device access token request (RFC 8628 §3.4, §3.5): the device polls until the person has decided.

Invariants: tokens are delivered exactly once, to the poll that wins the APPROVED -> DELIVERED
compare-and-set; the clear tokens exist only in that poll's answer. A flow that failed after approval is
DENIED again, so the device hears access_denied, not invalid_grant (on which DomoticzLinky disables itself).

A pending poll makes no store round trip when it can: each instance remembers the flows it read as pending
(`PendingView`), which the store invalidates for all of them at once, and counts polls in its own memory.
So a pending answer lags an approval made on another instance by at most a second (never more than one
`interval`; an approval on this instance is seen at once), and the polling budget (LIMIT_REQUESTS_PER_MINUTE)
is per instance: a device alternating between N instances may poll up to N times the budget before it hears
slow_down.
"""

from __future__ import annotations

import json
import logging
import threading
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
    StoreUnavailable,
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
    SETTLED,
    FlowRecord,
    sealed_for,
)
from deviceflow.flow.tokens import Tokens
from deviceflow.store import Store, digest

log = logging.getLogger("deviceflow.flow")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
POLL_WINDOW = 60
# How long a view of pending flows trusts what it read, and how long a SETTLED record hides a flow from
# every view: the second must exceed the first by the refresh period and any clock skew between instances.
VIEW_MEMORY = 30
SETTLED_MEMORY = 90
# How often a view reads the SETTLED records; it trusts none of its flows when it has not read them for twice
# as long, so a pending answer lags a settlement by less than a second, never more than the shortest interval.
VIEW_REFRESH = 0.5


class PendingView:
    """This process's view of pending flows, so that a pending poll makes no store round trip.

    It holds the flows this process read as pending within the last VIEW_MEMORY seconds, and the polls it
    counted for each in fixed windows of POLL_WINDOW seconds. Settling a flow (consent) first writes a
    SETTLED record that lives SETTLED_MEMORY seconds; every view reads the SETTLED records every `refresh`
    seconds while it is polled (one store round trip for all its flows), reads the store again for any flow
    among them, and for every flow when its last read is older than twice `refresh` (another thread may be
    reading them). So a pending answer lags a settlement made on another instance by less than 2 × `refresh`
    (a second), and a settlement made on this instance by at most as much (not at all, but for a poll that
    read the flow just before it was settled). A flow read before its settlement is remembered at most
    VIEW_MEMORY seconds, less than its SETTLED record lives, so it cannot outlive the record that hides it.
    Entries past both are swept once a window."""

    def __init__(self, store: Store, refresh: float = VIEW_REFRESH, clock=time.time):
        self.store = store
        self.refresh = refresh
        self.clock = clock
        self._seen: dict[str, tuple[str, float, float]] = {}  # device_key -> (client_id, code_expires, read_at)
        self._polls: dict[str, tuple[float, int]] = {}  # device_key -> (window_end, count)
        self._settled: frozenset = frozenset()
        self._next_refresh = 0.0
        self._refreshed_at = float("-inf")
        self._refreshing = threading.Lock()
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def recent(self, device_key: str, now: float) -> tuple[str, float] | None:
        """(client_id, code_expires) of a flow read as pending lately and not settled since, else None."""
        if now >= self._next_refresh:
            self._refresh(now)
        if now - self._refreshed_at >= 2 * self.refresh:
            return None  # the settled flows are not known lately enough
        seen = self._seen.get(device_key)
        if seen is None or now - seen[2] >= VIEW_MEMORY or device_key in self._settled:
            return None
        return seen[0], seen[1]

    def _refresh(self, now: float) -> None:
        """The flows settled lately, read by one thread while the others go on with the previous set."""
        if not self._refreshing.acquire(blocking=False):
            return
        try:
            if now < self._next_refresh:
                return
            try:
                self._settled = frozenset(key for key, _ in self.store.scan(SETTLED))
            except StoreUnavailable:
                with self._lock:
                    self._seen = {}  # nothing is known: polls read the store (and answer 503 while it is down)
                return
            self._refreshed_at, self._next_refresh = now, now + self.refresh
        finally:
            self._refreshing.release()

    def remember(self, device_key: str, client_id: str, code_expires: float, read_at: float) -> None:
        """A flow read as pending from the store at `read_at` (taken before the read)."""
        with self._lock:  # the sweep rebuilds the dict: a change during it would be lost, or break it
            self._seen[device_key] = (client_id, code_expires, read_at)

    def forget(self, device_key: str) -> None:
        """The flow left PENDING through this instance: the next poll reads the store."""
        with self._lock:
            self._seen.pop(device_key, None)

    def count(self, device_key: str, now: float) -> int:
        """Count a poll in its window (opened by the first poll); the count so far in this instance."""
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            polls = self._polls.get(device_key)
            polls = (now + POLL_WINDOW, 1) if polls is None or polls[0] <= now else (polls[0], polls[1] + 1)
            self._polls[device_key] = polls  # tuples: smaller than lists, and left alone by the garbage collector
            return polls[1]

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + POLL_WINDOW
        self._polls = {key: polls for key, polls in self._polls.items() if polls[0] > now}
        self._seen = {key: seen for key, seen in self._seen.items() if now - seen[2] < VIEW_MEMORY}


class DeviceCodeGrant:
    """The token endpoint's device_code grant."""

    def __init__(
        self,
        config: Config,
        store: Store,
        tokens: Tokens,
        clock=time.time,
        passthrough=None,
        pending: PendingView | None = None,
    ):
        """`passthrough` exchanges the authorization code of a device that lent its secret, at its poll;
        `pending` is the instance's view of pending flows, shared with the consent step that settles them."""
        self.config = config
        self.store = store
        self.tokens = tokens
        self.clock = clock
        self.passthrough = passthrough
        self.pending = pending or PendingView(store, clock=clock)

    def poll(self, client_id: str, device_code: str) -> dict:
        check_client(self.config, client_id)
        if not device_code:
            raise InvalidRequest("device_code is required")
        device_key = digest(device_code)
        now = self.clock()
        seen = self.pending.recent(device_key, now)
        if seen is not None and seen[0] == client_id and seen[1] > now:
            self._pending(device_key, now)
        flow = self.store.get(FLOW, device_key)
        if flow is None or flow["client_id"] != client_id:
            raise InvalidGrant("unknown device_code")
        status = flow["status"]
        if status == PENDING:
            if flow["code_expires"] <= self.clock():
                self.pending.forget(device_key)
                if flow.get("lent"):
                    self.store.delete(LENT_SECRET, device_key)
                raise ExpiredToken("the device code has expired, start again")
            self.pending.remember(device_key, client_id, flow["code_expires"], now)
            self._pending(device_key, now)
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

    def _pending(self, device_key: str, now: float):
        """The answer to a poll of a pending flow: slow_down past this instance's polling budget."""
        interval = self.config.interval
        if self.pending.count(device_key, now) > self.config.limit_requests_per_minute:
            raise SlowDown(f"poll at most every {interval} seconds", interval=interval)
        raise AuthorizationPending("waiting for the user to approve", interval=interval)

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
