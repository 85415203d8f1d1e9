"""What the server counts, for `/metrics` (Prometheus text format) and `deviceflow stats`.

One `Metrics` object per application, with its own registry, so that several
apps in one process (tests) do not add up. Every component that counts takes
it as an optional argument; a fresh `Metrics()` counts into a registry nobody
reads, so counting is always safe.

Enedis calls and budget waits are also kept in the store, per minute, because
`deviceflow stats` runs in another process and must see every instance.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from deviceflow.errors import StoreUnavailable
from deviceflow.store import Store

log = logging.getLogger("deviceflow.metrics")

# Record kinds of the per-minute counters; keys are minutes since the epoch.
ENEDIS_CALLS = "enedis_calls"
BUDGET_WAITS = "budget_waits"
MINUTE = 60
DAY = 86400


class Metrics:
    def __init__(self, store: Store | None = None, clock=time.time):
        self.store = store
        self.clock = clock
        self.registry = registry = CollectorRegistry()
        self.flows = Counter(
            "deviceflow_flows",
            "Device flows by outcome: started, approved, denied, failed (bad state, "
            "expired code, unusable upstream answer), delivered",
            ["outcome"],
            registry=registry,
        )
        self.polls = Counter(
            "deviceflow_polls",
            "Device-code polls of /device/token by answer: tokens, or the error code",
            ["answer"],
            registry=registry,
        )
        self.refreshes = Counter(
            "deviceflow_refreshes",
            "Refresh-token requests by answer: tokens, or the error code",
            ["answer"],
            registry=registry,
        )
        self.data_calls = Counter(
            "deviceflow_data_calls",
            "Answers of /data/proxy by HTTP status and source "
            "(legacy: v5 API, new: Data Connect 2026, none: Enedis not called)",
            ["status", "source"],
            registry=registry,
        )
        self.enedis_calls = Counter(
            "deviceflow_enedis_calls",
            "Calls to Enedis by API (token, data, subscribed_services) and "
            "HTTP status (or timeout, unreachable, unreadable)",
            ["api", "status"],
            registry=registry,
        )
        self.budget_waits = Counter(
            "deviceflow_enedis_budget_waits",
            "Calls that had to wait for a slot of ENEDIS_MAX_CALLS_PER_SECOND, by outcome (served, refused)",
            ["outcome"],
            registry=registry,
        )
        self.store_errors = Counter(
            "deviceflow_store_errors", "Store operations that failed (the request got 503)", registry=registry
        )
        self._outcomes: dict[Counter, Outcome] = {}

    # --- what the routes and the Enedis client call

    def answer(self, counter: Counter) -> Outcome:
        """A context that counts its block's outcome on `counter`: `tokens` when it returns,
        else the OAuth error code of what it raised."""
        outcome = self._outcomes.get(counter)
        if outcome is None:
            outcome = self._outcomes[counter] = Outcome(counter)
        return outcome

    def data_call(self, status: int, source: str = "none") -> None:
        self.data_calls.labels(str(status), source).inc()

    def enedis_call(self, api: str, status: int | str) -> None:
        """One call made to Enedis (`status`: its HTTP status, or `timeout` / `unreachable` / `unreadable`)."""
        self.enedis_calls.labels(api, str(status)).inc()
        self._count_minute(ENEDIS_CALLS)

    def budget_wait(self, outcome: str = "served") -> None:
        """A call that waited for the outbound budget: `served` after the wait, or `refused` (429)."""
        self.budget_waits.labels(outcome).inc()
        self._count_minute(BUDGET_WAITS)

    def _count_minute(self, kind: str) -> None:
        if self.store is None:
            return
        try:
            self.store.incr(kind, str(int(self.clock() // MINUTE)), DAY + MINUTE)
        except StoreUnavailable:
            pass  # counting must never fail a data call; the store error is counted already

    # --- what /metrics serves

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Outcome:
    """Counts a block's outcome on a counter of answers; one per counter, entered by any thread. A class
    rather than a generator, and each label's child looked up once: polls count every answer."""

    def __init__(self, counter: Counter):
        self.counter = counter
        self.children: dict[str, Counter] = {}

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or isinstance(error, Exception):
            label = "tokens" if error is None else answer_label(error)
            child = self.children.get(label)
            if child is None:
                child = self.children[label] = self.counter.labels(label)
            child.inc()
        return False


def answer_label(exc: BaseException) -> str:
    """The error's RFC name (StoreUnavailable's is temporarily_unavailable), or server_error."""
    return getattr(exc, "error", None) or "server_error"


def recent(store: Store, kind: str, seconds: float, now: float) -> int:
    """Sum of a per-minute counter over the last `seconds` (the current minute included)."""
    first = int((now - seconds) // MINUTE) + 1
    return sum(int(count) for minute, count in store.scan(kind) if int(minute) >= first)
