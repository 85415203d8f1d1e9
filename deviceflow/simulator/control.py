"""The test knobs: one table of their defaults and bounds, POST /_control, GET /_stats, injected failures.

POST /_control needs ``Authorization: Bearer <control_token>`` (made per
simulator; ``serve --demo`` prints it at start-up), and every knob is bounded:
whoever reaches a demo server must not be able to freeze it with a delay or
fill its memory with failures. Its JSON object sets knobs by name, and also
takes two actions: ``reset`` (knobs to their defaults, counts to zero) and
``revoke_tokens`` (Enedis forgetting its access tokens).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading

import bottle

from deviceflow.simulator.protocol import (
    bearer_token,
    forbidden,
    html_answer,
    json_answer,
    not_found,
    same_secret,
    throttled,
    unauthorized,
)
from deviceflow.simulator.tokens import REFRESH_LIFETIME, TokenEndpoints

# A delay holds a thread per data call, and failures are kept in memory until used or reset.
CONTROL_MAX_BODY = 64 * 1024
MAX_DELAY = 60.0
MAX_FAILURES = 100
MAX_FAILURE_TIMES = 10_000
MAX_FAILURE_TEXT = 16 * 1024  # `match` and `body`, as JSON text
MAX_SUBSCRIBED_DELAY_CALLS = 100
FAILURE_FIELDS = frozenset({"match", "status", "times", "body", "next_access_time"})
ACTIONS = ("reset", "revoke_tokens")


@dataclasses.dataclass(frozen=True)
class Knob:
    """One knob: its type, its default, and the inclusive range POST /_control accepts (None: any value of the type).

    For the list knob (`fail`), the range bounds the number of entries, and POST /_control adds entries.
    """

    name: str
    type: type  # bool, int, float or list
    default: object
    low: float | None = None
    high: float | None = None
    meaning: str = ""

    def fresh_default(self):
        return list(self.default) if self.type is list else self.default

    def parse(self, value):
        """`value` from a POST /_control as this knob's type; ValueError (or TypeError) when refused."""
        if self.type is bool:
            return _boolean(self.name, value)
        if self.type is list:
            entries = [value] if isinstance(value, dict) else value
            if not isinstance(entries, list):
                raise ValueError(f"{self.name} must be an object or a list")
            for entry in entries:
                check_failure(entry)
            return entries
        number = self.type(value)
        if not self.low <= number <= self.high:
            bounds = f"{self.low:g}-{self.high:g}" if self.type is float else f"{self.low}-{self.high}"
            raise ValueError(f"{self.name} out of range ({bounds})")
        return number


def _boolean(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a boolean")
    return value


KNOBS = (
    Knob("delay", float, 0.0, 0, MAX_DELAY, "seconds each data call carrying a live token waits"),
    Knob("v5_enabled", bool, True, meaning="off: the v5 APIs answer 404, as switched off at Enedis"),
    Knob("fail", list, (), 0, MAX_FAILURES, "failures to inject, by path prefix (see check_failure)"),
    Knob(
        "subscribed_delay_calls",
        int,
        0,
        0,
        MAX_SUBSCRIBED_DELAY_CALLS,
        "lookups of a fresh v2 consent by /subscribed_services/v1 that do not see it yet",
    ),
    Knob("token_lifetime", int, 12600, 1, REFRESH_LIFETIME, "seconds an access token lives"),
    Knob("comptage_subscribed", bool, True, meaning="off: comptage_auto answers the gateway's 403"),
    Knob("v2_reshare_fails", bool, False, meaning="on: sharing an already shared PRM fails, as at Enedis"),
)


def check_failure(entry) -> None:
    """One `fail` entry of POST /_control, within its bounds; else ValueError.

    match: the path prefix it applies to ("" matches all); status: 100-599 (500);
    times: how many calls it fails (1); body: JSON, or text sent as HTML (None: Enedis's
    usual body for the status); next_access_time: for a 429's body.
    """
    if not (
        isinstance(entry, dict)
        and set(entry) <= FAILURE_FIELDS
        and isinstance(entry.get("match", ""), str)
        and 100 <= int(entry.get("status", 500)) <= 599
        and 1 <= int(entry.get("times", 1)) <= MAX_FAILURE_TIMES
        and isinstance(entry.get("next_access_time") or "", str)
    ):
        raise ValueError(f"bad fail entry (fields {', '.join(sorted(FAILURE_FIELDS))}; times 1-{MAX_FAILURE_TIMES})")
    if len(json.dumps(entry)) > MAX_FAILURE_TEXT:
        raise ValueError(f"a fail entry is at most {MAX_FAILURE_TEXT} bytes")


def failure_answer(entry: dict, path: str) -> bottle.HTTPResponse:
    """The answer of an injected failure: its own body, or what Enedis answers with its status at `path`."""
    status = int(entry.get("status", 500))
    body = entry.get("body")
    if isinstance(body, str):  # e.g. an HTML page from a load balancer
        return html_answer(status, body)
    if body is not None:
        return json_answer(status, body)
    if status == 429:
        return throttled(entry.get("next_access_time"))
    if status == 401:
        return unauthorized(missing=False)
    if status == 403:
        return forbidden()
    if status == 404:
        return not_found()
    if path.startswith(("/metering_data", "/customers_", "/oauth2", "/v1/oauth2")):
        return json_answer(
            status, {"error": "technical_error", "error_description": "Technical error. Please try later."}
        )
    return json_answer(status, {"code": str(status), "message": "Problème technique dans l'interrogation du SI coeur"})


class Knobs:
    """The values of KNOBS (as attributes: `knobs.delay`), and the calls counted per endpoint name.

    Invariant: POST /_control keeps every knob within its Knob's bounds (code in
    the same process, such as tests, may set them directly). `lock` guards the
    counts and the pending failures; the other knobs are read without it, as a
    single attribute read.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: collections.Counter = collections.Counter()
        for knob in KNOBS:
            setattr(self, knob.name, knob.fresh_default())

    def reset(self) -> None:
        """Knobs back to their defaults and counts to zero."""
        with self.lock:
            for knob in KNOBS:
                setattr(self, knob.name, knob.fresh_default())
            self.calls.clear()

    def count(self, name: str) -> None:
        with self.lock:
            self.calls[name] += 1

    def take_failure(self, path: str) -> dict | None:
        """The first pending failure whose `match` prefixes `path`, used once (and dropped when used up)."""
        with self.lock:
            for entry in self.fail:
                if path.startswith(entry.get("match", "")):
                    entry["times"] = int(entry.get("times", 1)) - 1
                    if entry["times"] <= 0:
                        self.fail.remove(entry)
                    return entry
        return None

    def state(self) -> dict:
        """The counts and every knob, as GET /_stats answers them."""
        with self.lock:
            return {
                "calls": dict(self.calls),
                **{
                    knob.name: ([dict(entry) for entry in self.fail] if knob.type is list else getattr(self, knob.name))
                    for knob in KNOBS
                },
            }


class ControlEndpoints:
    """POST /_control and GET /_stats of one simulator.

    control_token: the bearer POST /_control needs.
    tokens: revoked by the `revoke_tokens` action.
    """

    def __init__(self, knobs: Knobs, control_token: str, tokens: TokenEndpoints):
        self.knobs = knobs
        self.control_token = control_token
        self.tokens = tokens

    def control(self) -> bottle.HTTPResponse:
        """Set knobs and take actions from a JSON object; answers the state, as GET /_stats.

        All or nothing: when any value is refused, nothing changes; except that a `reset` happens
        before the bound on pending failures is checked against those the request adds.
        """
        # The token first: nothing of an unauthenticated request is read, nothing changes.
        token = bearer_token()
        if token is None or not same_secret(token, self.control_token):
            return json_answer(
                401,
                {
                    "error": "invalid_token",
                    "error_description": "POST /_control needs Authorization: Bearer <control token>",
                },
                {"WWW-Authenticate": 'Bearer realm="Enedis simulator control"'},
            )
        if (bottle.request.content_length or 0) > CONTROL_MAX_BODY:
            return _invalid_request(413, f"at most {CONTROL_MAX_BODY} bytes")
        try:
            request = json.loads(bottle.request.body.read(CONTROL_MAX_BODY) or b"{}")
            if not isinstance(request, dict):
                raise ValueError("a JSON object is expected")
            changes = {knob.name: knob.parse(request[knob.name]) for knob in KNOBS if knob.name in request}
            actions = {name: _boolean(name, request[name]) for name in ACTIONS if name in request}
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            return _invalid_request(400, str(exc)[:200])
        if actions.get("reset"):
            self.knobs.reset()
        failures = changes.pop("fail", [])
        with self.knobs.lock:
            if len(self.knobs.fail) + len(failures) > MAX_FAILURES:
                return _invalid_request(400, f"at most {MAX_FAILURES} failures pending")
            if actions.get("revoke_tokens"):
                self.tokens.revoke_access_tokens()
            for name, value in changes.items():
                setattr(self.knobs, name, value)
            self.knobs.fail.extend(dict(entry) for entry in failures)
        return json_answer(200, self.knobs.state())

    def stats(self) -> bottle.HTTPResponse:
        return json_answer(200, self.knobs.state())


def _invalid_request(status: int, description: str) -> bottle.HTTPResponse:
    return json_answer(status, {"error": "invalid_request", "error_description": description})
