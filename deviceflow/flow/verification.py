"""User interaction (RFC 8628 §3.3): the person types the user code and confirms it.

Invariants: every failed entry is counted against guessing, per network, per site and for the whole
server, before anything else is said; a confirmation form is accepted only with the CSRF token made for
this browser and this user code, with a key every instance on the store shares.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from deviceflow import randomness
from deviceflow.config import Config
from deviceflow.errors import PageError
from deviceflow.flow.clients import IPV6_SITE, network_of
from deviceflow.flow.device_authorization import normalize_user_code
from deviceflow.flow.records import (
    ALL_NETWORKS,
    FAILED_GUESSES,
    FAILED_SITES,
    FLOW,
    PENDING,
    SERVER_KEY,
    SERVER_META,
    USER_CODE,
    UserCodeRecord,
)
from deviceflow.store import Store

log = logging.getLogger("deviceflow.flow")

# Failed user-code entries are counted per network (an IPv4 address, an IPv6
# /64) and for the whole server. Past GUESSES_GLOBAL within the window, code
# entry is refused only to sites that failed within it (an IPv4 address, an
# IPv6 /48, the most a household, a hosted machine or a tunnel broker hands
# out): a guesser spread over many addresses gets one guess per site and hour,
# and a person whose network has not failed is not refused for what others did.
# Past GUESSES_CEILING, which takes thousands of sites, everybody waits: the hard
# bound on guesses (scheme and odds in docs/security.md, "Guessing user codes").
GUESSES_PER_ADDRESS = 10
GUESSES_PER_ADDRESS_WINDOW = 15 * 60
GUESSES_GLOBAL = 300
GUESSES_CEILING = 3000
GUESSES_GLOBAL_WINDOW = 3600
SERVER_KEY_LIFETIME = 10 * 365 * 86400
# The CSRF key is read again this often (seconds): a key the store lost and an instance wrote anew is
# everybody's within this time, rather than never for an instance that had read the old one.
SERVER_KEY_REREAD = 60
# A network's second code while its first is being checked (two at once from one network: a guesser, or two
# people behind one address at the same instant) is told to retry after this many seconds.
CHECK_RETRY_AFTER = 1


@dataclass(frozen=True)
class PendingFlow:
    """What the confirmation page shows about a flow."""

    user_code: str
    client_id: str
    application: str
    device_key: str


class Verification:
    """The verification URI's side of the flow: user codes, the guessing limits, CSRF."""

    def __init__(self, config: Config, store: Store, clock=time.time):
        self.config = config
        self.store = store
        self.clock = clock
        self._key: bytes | None = None
        self._key_read_at = 0.0
        self._checks: set[str] = set()  # networks whose code is being checked
        self._checks_lock = threading.Lock()

    def _check_guess_budget(self, found: dict, network: str, site: str) -> None:
        """Past the failed-entry limits the person is told to wait (429): their network's own
        limit, or the server-wide one when their site has failed too."""
        if found.get((FAILED_GUESSES, network), 0) >= GUESSES_PER_ADDRESS:
            raise PageError("too_many_attempts", 429, GUESSES_PER_ADDRESS_WINDOW)
        overall = found.get((FAILED_GUESSES, ALL_NETWORKS), 0)
        if overall >= GUESSES_CEILING or (overall >= GUESSES_GLOBAL and (FAILED_SITES, site) in found):
            raise PageError("too_many_attempts", 429, GUESSES_GLOBAL_WINDOW)

    def _count_failed_guess(self, address: str) -> None:
        self.store.incr(FAILED_GUESSES, network_of(address), GUESSES_PER_ADDRESS_WINDOW)
        self.store.incr(FAILED_SITES, network_of(address, IPV6_SITE), GUESSES_GLOBAL_WINDOW)
        overall = self.store.incr(FAILED_GUESSES, ALL_NETWORKS, GUESSES_GLOBAL_WINDOW)
        if overall == GUESSES_GLOBAL:
            log.warning(
                "%d wrong user codes within the hour: code entry is refused to the sites that failed "
                "until the window ends",
                GUESSES_GLOBAL,
            )
        elif overall == GUESSES_CEILING:
            log.warning(
                "%d wrong user codes within the hour, from many sites: code entry is refused to everybody "
                "until the window ends",
                GUESSES_CEILING,
            )

    def find_pending(self, typed_code: str, address: str) -> PendingFlow:
        """The pending flow behind a typed user code, counting failures against guessing."""
        network = network_of(address)
        with self._checking(network):
            return self._find_pending(typed_code, address, network)

    @contextmanager
    def _checking(self, network: str):
        """One code at a time per network in this instance: a check reads the failed entries before it counts
        its own, so checks running together would all be judged against the same count."""
        with self._checks_lock:
            if network in self._checks:
                raise PageError("too_many_attempts", 429, CHECK_RETRY_AFTER)
            self._checks.add(network)
        try:
            yield
        finally:
            with self._checks_lock:
                self._checks.discard(network)

    def _find_pending(self, typed_code: str, address: str, network: str) -> PendingFlow:
        site = network_of(address, IPV6_SITE)
        code = normalize_user_code(typed_code)
        wanted = [(FAILED_GUESSES, network), (FAILED_GUESSES, ALL_NETWORKS), (FAILED_SITES, site)]
        found = self.store.get_many([*wanted, (USER_CODE, code)] if code else wanted)  # one read of the store
        self._check_guess_budget(found, network, site)
        link = found.get((USER_CODE, code))
        pending = self._pending_flow(code, link) if link else None
        if pending is None:
            self._count_failed_guess(address)
            raise PageError("unknown_code")
        return pending

    def _pending_flow(self, code: str, link: UserCodeRecord) -> PendingFlow | None:
        # A user code's record lives while its flow is pending (settling the flow deletes it).
        if "client_id" in link:
            return PendingFlow(code, link["client_id"], link["application"], link["device"])
        # A record written by a version whose user codes named only their flow: the flow tells.
        record = self.store.get(FLOW, link["device"])
        if record is None or record["status"] != PENDING or record["code_expires"] <= self.clock():
            return None
        return PendingFlow(code, record["client_id"], record.get("application", ""), link["device"])

    def csrf_token(self, browser_id: str, user_code: str) -> str:
        return hmac.new(self._server_key(), f"{browser_id}|{user_code}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, browser_id: str, user_code: str, token: str) -> None:
        if (
            not browser_id
            or not token
            or not hmac.compare_digest(self.csrf_token(browser_id, user_code).encode(), token.encode())
        ):
            raise PageError("bad_csrf", 403)

    def _server_key(self) -> bytes:
        # Shared by every instance on the store, so a form served by one is accepted by another. Only the
        # first `add` writes it, but the store may lose it (a rollback, a store emptied): read again now and then.
        now = self.clock()
        if self._key is None or now - self._key_read_at >= SERVER_KEY_REREAD:
            key = self.store.get(SERVER_META, SERVER_KEY)
            if key is None:
                self.store.add(SERVER_META, SERVER_KEY, {"key": randomness.token_hex(32)}, SERVER_KEY_LIFETIME)
                key = self.store.get(SERVER_META, SERVER_KEY)
            self._key, self._key_read_at = bytes.fromhex(key["key"]), now
        return self._key
