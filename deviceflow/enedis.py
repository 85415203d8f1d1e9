"""The Enedis client in client_credentials mode: the proxy's own token, the
outbound budget, and the data calls that `/data/proxy` forwards.

Every DomoticzLinky install asks for its data between 08:00 and 09:00, and all
of them share one Enedis application quota, so:

- the client_credentials token lives in the store, where every instance finds
  it, encrypted under a key derived from CLIENT_SECRET (deviceflow.sealing),
  which every one of them has and a copy of the store does not; it is fetched
  by one thread of one instance at a time (a lock record in the store plus an
  in-process lock), renewed shortly before it expires, and renewed once when
  Enedis answers 401;
- no more than ENEDIS_MAX_CALLS_PER_SECOND calls leave all the instances
  sharing the store: each call reserves a slot in a one-second window counted
  in the store, at most BUDGET_WAIT seconds ahead, and waits for it;
- data calls waiting on Enedis (or on the budget) hold a server thread each,
  so they may take at most three quarters of THREADS: the rest stays free for
  /device/token polls, which must never queue behind them;
- data paths are an allow-list: the URL sent to Enedis is built from a known
  path, never joined with what the device sent.

Since Data Connect 2026 (ENEDIS_API_MODE), a v5 request is answered by the
v5 API as is (`legacy`), by the 2026 APIs translated to and from v5 with
deviceflow.translate (`new`), or by the 2026 APIs with the v5 API as a
fallback (`auto`). The v2 consent's `autorisation_id` is turned into usage
points here too (`usage_points_for`).

No Bottle in here: the web layer renders what `fetch_v5` answers.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import requests

from deviceflow import limits, sealing, translate
from deviceflow.config import Config
from deviceflow.errors import (
    StaleConsent,
    UpstreamBadAnswer,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from deviceflow.metrics import Metrics
from deviceflow.store import Store
from deviceflow.upstream import json_body, make_session, parse_json, send, understood
from deviceflow.usage_points import is_usage_point

log = logging.getLogger("deviceflow.enedis")

# The v5 data APIs a device may ask through /data/proxy/, exactly as written
# after that prefix: anything else is unknown, whatever its encoding.
V5_PATHS = frozenset(
    {
        translate.DAILY_CONSUMPTION,
        translate.CONSUMPTION_LOAD_CURVE,
        translate.DAILY_CONSUMPTION_MAX_POWER,
        translate.DAILY_PRODUCTION,
        translate.PRODUCTION_LOAD_CURVE,
        translate.USAGE_POINTS_CONTRACTS,
        translate.USAGE_POINTS_ADDRESSES,
        translate.IDENTITY,
        translate.CONTACT_DATA,
    }
)

# All that a v5 API takes: anything else a device adds to its query stays here.
V5_QUERY = ("usage_point_id", "start", "end")

CLIENT_CREDENTIALS_GRANT = "client_credentials"
SOURCE_LEGACY, SOURCE_NEW = "legacy", "new"
MODE_LEGACY, MODE_NEW = "legacy", "new"  # and "auto"

# The v2 consent: POST {DATA_ENDPOINT}/subscribed_services/v1 names the
# usage points of an autorisationId (an int64). A share appears there a moment
# after the person is sent back, so an empty list is asked again after these
# pauses (seconds) while the person's browser waits.
SUBSCRIBED_SERVICES = "subscribed_services/v1"
SUBSCRIBED_STATES = ("ACTIF", "DEMANDE")
SUBSCRIBED_RETRY_PAUSES = (0.5, 1.0, 1.5)
AUTORISATION_ID = re.compile(r"[0-9]{1,19}")
INT64_MAX = 2**63 - 1
REDEEM_KIND, SHARE_KIND = "redeem", "share"
# A redeemed service stays held at least this long: longer than it counts as fresh (from the day
# before the flow began, up to two days), so that a short DURATION cannot free it for another flow.
SHARE_HOLD_MINIMUM = 3 * 86400
ENEDIS_ZONE = ZoneInfo("Europe/Paris")  # the dates Enedis writes are French ones

# A call that cannot get a slot within this many seconds is answered 429 (ENEDIS_MAX_CALLS_PER_SECOND).
BUDGET_WAIT = 10
# The token is renewed this long before Enedis says it expires (a tenth of its
# life for short-lived tokens), so no call goes out with a token about to die.
TOKEN_RENEW_MARGIN = 300
# When Enedis gives no usable expires_in.
DEFAULT_TOKEN_LIFETIME = 600
# Share of THREADS kept free from data calls (at least two threads).
RESERVED_THREADS_SHARE = 4
# How often an instance waiting for another instance's token fetch looks again.
LOCK_POLL = 0.05
# When an Enedis 429 says nothing about when to come back.
DEFAULT_RETRY_AFTER = 60
MAX_RETRY_AFTER = 86400

TOKEN_KIND, TOKEN_KEY, TOKEN_LOCK_KEY = "enedis", "token", "token-lock"
BUDGET_KIND = "budget"


# Failures after which, in `auto`, the other API is worth asking (not UpstreamBusy).
NO_ANSWER = (UpstreamUnreachable, UpstreamTimeout, UpstreamBadAnswer)


@dataclass(frozen=True)
class Answer:
    """What Enedis answered a data call, ready to be sent back to the device.

    `source` is "legacy" (v5 forwarded) or "new" (Data Connect 2026,
    translated); `retry_after` (seconds) accompanies a 429."""

    status: int
    body: bytes
    content_type: str
    source: str
    retry_after: int | None = None


def data_path(raw_path: str, prefix: str = "/data/proxy/") -> str | None:
    """The v5 path named by a request path as the client sent it (not decoded),
    or None when it is not exactly one of the known APIs: `..`, `//host`,
    `@host`, `\\`, a scheme or any percent-encoding never match."""
    if not raw_path.startswith(prefix):
        return None
    path = raw_path[len(prefix) :]
    return path if path in V5_PATHS else None


class EnedisClient:
    """Calls to Enedis with the proxy's own client_credentials token.

    Public API:
    - `fetch_v5(path, query) -> Answer`: a v5 data request, answered per
      ENEDIS_API_MODE, in v5 shape;
    - `usage_points_for(autorisation_id, started, flow_key) -> list[str]`: the usage
      points of a v2 consent (empty when Enedis has not registered it yet);
    - `call(method, url, api="data", **kwargs) -> requests.Response`: any
      Enedis API call, with the token, within the budget, renewed and retried
      once on a 401; `api` names it in the metrics (data, subscribed_services);
    - `access_token(stale=None) -> str`: the shared token, fetched once;
    - `wait_for_slot()`: reserve a place in the outbound budget, or UpstreamBusy.
    Failures are UpstreamError subclasses (502, 504, 429) or StoreUnavailable.
    Every call made and every wait for the budget is counted in `metrics`.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        session: requests.Session | None = None,
        clock=time.time,
        sleep=time.sleep,
        metrics: Metrics | None = None,
    ):
        self.config = config
        self.store = store
        self.session = session or make_session(config)
        self.clock = clock
        self.sleep = sleep
        self.metrics = metrics or Metrics()
        self._token_lock = threading.Lock()
        reserved = max(2, config.threads // RESERVED_THREADS_SHARE)
        self._data_calls = threading.BoundedSemaphore(max(1, config.threads - reserved))
        rate = config.enedis_max_calls_per_second
        # Under one call a second, a window is as long as one call's share.
        self.window = max(1.0, 1.0 / rate)
        self.per_window = max(1, math.floor(rate * self.window + 1e-9))
        # A lock record outlives a crashed holder by no more than one token call.
        self.lock_ttl = sum(config.timeouts) + BUDGET_WAIT + 5

    # --- data

    def fetch_v5(self, path: str, query: Mapping[str, str]) -> Answer:
        """A v5 data request (`path` from V5_PATHS, empty query parameters
        left out) answered as a v5 client expects, per ENEDIS_API_MODE."""
        if path not in V5_PATHS:
            raise ValueError("not a known v5 data path")
        params = {name: value for name, value in query.items() if value != ""}
        if not self._data_calls.acquire(blocking=False):
            raise UpstreamBusy("too many data requests are waiting for Enedis, retry later", BUDGET_WAIT)
        try:
            return self._by_mode(path, params)
        finally:
            self._data_calls.release()

    def _by_mode(self, path: str, params: dict[str, str]) -> Answer:
        mode = self.config.enedis_api_mode
        if mode == MODE_LEGACY:
            return self._forward_v5(path, params)
        try:
            calls = translate.to_new(path, params)
        except translate.RequestRejected as rejected:
            # Enedis would refuse it too (the 2026 APIs with a 500 that hides why)
            return Answer(rejected.status, json.dumps(rejected.body).encode(), "application/json", SOURCE_NEW)
        if calls is None:
            return self._forward_v5(path, params)
        try:
            with understood(f"enedis {path}"):
                answer = self._ask_new(path, params, calls)
        except NO_ANSWER as error:
            if mode == MODE_NEW:
                raise
            log.info("enedis %s: the 2026 API gave no answer (%s), asking v5", path, error.error)
            return self._fall_back_to_v5(path, params, error)
        if mode == MODE_NEW or not translate.should_fall_back(answer.status, answer.body):
            return answer
        log.info("enedis %s: the 2026 API answered %d, asking v5", path, answer.status)
        return self._fall_back_to_v5(path, params, answer)

    def _fall_back_to_v5(self, path: str, params: dict[str, str], new: Answer | UpstreamError) -> Answer:
        """`auto`: the v5 answer when it is one; when v5 fails too, what the
        2026 API said, the API that counts (a switched-off v5 answers 404,
        which DomoticzLinky would read as "no data")."""
        try:
            legacy = self._forward_v5(path, params)
        except NO_ANSWER:
            legacy = None
        if legacy is not None and (legacy.status < 400 or legacy.status == 429):
            return legacy
        if isinstance(new, UpstreamError):
            raise new
        return new

    def _forward_v5(self, path: str, params: dict[str, str]) -> Answer:
        started = time.monotonic()
        query = [(name, params[name]) for name in V5_QUERY if name in params]
        response = self.call("GET", f"{self.config.data_endpoint}/{path}", params=query)
        log.info("enedis %s -> %d in %.2fs", path, response.status_code, time.monotonic() - started)
        with understood(f"enedis {path}"):
            return self._answer(response, SOURCE_LEGACY)

    def _ask_new(self, path: str, params: dict[str, str], calls: tuple[translate.NewCall, ...]) -> Answer:
        """The Data Connect 2026 calls answering a v5 request, their answers
        turned into the v5 one. The first call is the one that matters: without
        an answer to it, UpstreamError; the others (a contract's synthesis and
        metering) only add fields, and are left out when they fail."""
        answers: list[tuple[int, bytes]] = []
        metering_answered = False
        for new_call in calls:
            started = time.monotonic()
            url = f"{self.config.data_endpoint}/{new_call.path}"
            try:
                response = self.call(new_call.method, url, params=list(new_call.query.items()))
            except (UpstreamUnreachable, UpstreamTimeout):
                if not answers:
                    raise
                break
            status = response.status_code
            api = new_call.path.removesuffix("/" + params.get("usage_point_id", ""))
            log.info("enedis %s -> %d in %.2fs", api, status, time.monotonic() - started)
            if status == 401:  # still, with a renewed token: see _answer
                raise UpstreamBadAnswer("Enedis refused the proxy's access token")
            if status == 429:
                # A part of the answer throttled is no answer: the device retries later for all of it.
                v5_status, body = translate.to_v5(path, params, [(status, _readable(response.content))])
                return Answer(
                    v5_status,
                    json.dumps(body).encode(),
                    "application/json",
                    SOURCE_NEW,
                    retry_after_of(response, self.clock()),
                )
            answers.append((status, _readable(response.content)))
            metering_answered |= new_call.path.startswith(translate.COMPTAGE) and 200 <= status < 300
            if len(answers) == 1 and not 200 <= status < 300:
                break  # the others could not make up for it
        status, body = translate.to_v5(path, params, answers)
        if (
            path == translate.USAGE_POINTS_CONTRACTS
            and status == 200
            and not metering_answered
            and self.config.enedis_api_mode != MODE_NEW
        ):
            body = self._metering_from_v5(path, params, body)
        return Answer(status, json.dumps(body).encode(), "application/json", SOURCE_NEW)

    def _metering_from_v5(self, path: str, params: dict[str, str], body: dict) -> dict:
        """`auto`, a contract without `comptage_auto` (an application not
        subscribed to it gets 403): the off-peak hours and the meter type from
        the v5 contract while v5 still answers. DomoticzLinky's users on an
        off-peak tariff would otherwise lose them. Whatever v5 says, the 2026
        contract is answered."""
        try:
            legacy = self._forward_v5(path, params)
            v5_point = json.loads(legacy.body)["customer"]["usage_points"][0] if legacy.status == 200 else {}
            offpeak = (v5_point.get("contracts") or {}).get("offpeak_hours")
            meter_type = (v5_point.get("usage_point") or {}).get("meter_type")
        except (UpstreamError, ValueError, LookupError, TypeError, AttributeError):  # busy, down, or not a v5 contract
            return body
        point = body["customer"]["usage_points"][0]
        if isinstance(offpeak, str) and offpeak:
            point["contracts"]["offpeak_hours"] = offpeak
        if isinstance(meter_type, str) and meter_type:
            point["usage_point"]["meter_type"] = meter_type
        return body

    def _answer(self, response: requests.Response, source: str) -> Answer:
        status = response.status_code
        if status == 401:
            # Still refused with a token fetched a moment ago: the proxy's
            # credentials are at fault, not the device's token, so no 401
            # (DomoticzLinky would refresh its token and try again, forever).
            raise UpstreamBadAnswer("Enedis refused the proxy's access token")
        if 300 <= status < 400:
            raise UpstreamBadAnswer(f"Enedis answered {status} (a redirect, not followed)")
        body = response.content  # JSON, whatever Content-Type Enedis claims (text/html is never relayed)
        if not _is_json(body):
            if status < 400:
                raise UpstreamBadAnswer(f"Enedis answered {status} with a body that is not JSON")
            description = f"Enedis answered {status} with a body that is not JSON"
            body = json.dumps({"error": "upstream_error", "error_description": description}).encode()
        retry_after = retry_after_of(response, self.clock()) if status == 429 else None
        return Answer(status, body, "application/json", source, retry_after)

    # --- the v2 consent

    def usage_points_for(self, autorisation_id: str, started: float, flow_key: str) -> list[str]:
        """The usage points of a fresh v2 consent: every distinct `pointId` of
        its ACTIF or DEMANDE services that began (`dateDebut`, a French date)
        no earlier than the day before `started` (epoch, when the flow began),
        asked again briefly while the list is empty; [] when it still is.

        An `autorisation_id` is a short number that anyone may learn or guess;
        only a share made for this flow proves that the person owns the
        meter. Enedis keeps the id when a person withdraws and shares again,
        and the new share is fresh. Enedis refuses to share a meter that is
        already shared, so one share comes back to one flow: the first flow
        (`flow_key`) to redeem its services holds them, and another flow
        presenting the id is refused, however fresh the share. Raises
        ValueError for an id that is not an Enedis autorisationId (nothing is
        sent), StaleConsent when every service is older or the share is held
        by another flow, UpstreamError when Enedis cannot say, UpstreamBusy
        at once when no thread or no outbound slot is free (a browser waits)."""
        number = autorisation_number(autorisation_id)
        if not self._data_calls.acquire(blocking=False):
            raise UpstreamBusy("too many requests are waiting for Enedis, retry later", BUDGET_WAIT)
        try:
            services = self._subscribed_services(number)
            for pause in SUBSCRIBED_RETRY_PAUSES:
                if services:
                    break
                self.sleep(pause)
                services = self._subscribed_services(number)
        finally:
            self._data_calls.release()
        name = self._loggable_id(number)
        if not services:
            log.info("v2 consent %s: Enedis lists no service for it yet", name)
            return []
        earliest = datetime.fromtimestamp(started, ENEDIS_ZONE).date() - timedelta(days=1)
        fresh = [s for s in services if (_day(s.get("dateDebut")) or date.min) >= earliest]
        if not fresh:
            began = max(filter(None, map(_day, (s.get("dateDebut") for s in services))), default=None)
            log.warning(
                "v2 consent %s refused: its services began on %s, before this flow; someone may be "
                "redeeming another person's consent (the person must withdraw the share on Enedis's "
                "site and share again)",
                name,
                began.isoformat() if began else "an unknown date",
            )
            raise StaleConsent(name)
        # Each service is held on its own: a listing that grows (a service registered later, a DEMANDE
        # turned ACTIF) must not make the services already redeemed free again. The hold outlives
        # the freshness window, whatever DURATION.
        hold = max(self.config.duration_seconds, SHARE_HOLD_MINIMUM)
        for service in fresh:
            claim = self._keyed(f"{number}|{service.get('id')}@{service.get('dateDebut')}")
            if not self.store.add(SHARE_KIND, claim, {"flow": flow_key}, hold):
                holder = self.store.get(SHARE_KIND, claim)
                if holder is None or not hmac.compare_digest(str(holder.get("flow")).encode(), flow_key.encode()):
                    log.warning(
                        "v2 consent %s refused: this share was already redeemed by another flow; someone may be "
                        "redeeming another person's consent",
                        name,
                    )
                    raise StaleConsent(name)
        points = list(dict.fromkeys(service["pointId"] for service in fresh))
        count = self.store.incr(REDEEM_KIND, name, self.config.duration_seconds)
        log.info("v2 consent %s redeemed (redemption %d) for usage points %s", name, count, ",".join(points))
        return points

    def _subscribed_services(self, number: int) -> list[dict]:
        """The ACTIF or DEMANDE services of an autorisationId that name a usage point."""
        response = self.call(
            "POST",
            f"{self.config.data_endpoint}/{SUBSCRIBED_SERVICES}",
            api="subscribed_services",
            wait=False,
            json={"autorisationId": number, "comptage": False},
        )
        status = response.status_code
        if status == 429:
            raise UpstreamBusy("Enedis is throttling the proxy, retry later", retry_after_of(response, self.clock()))
        if status != 200:
            log.warning("subscribed_services answered %d", status)
            raise UpstreamBadAnswer(f"Enedis answered {status} to the subscribed services search")
        body = json_body(response)
        listed = body.get("serviceSouscrit") if isinstance(body, dict) else None
        if listed is None and isinstance(body, dict):
            listed = []  # an empty page may come without its list
        if not isinstance(listed, list):
            raise UpstreamBadAnswer("the subscribed services answer holds no list")
        with understood("subscribed_services"):
            return [
                service
                for service in listed
                if isinstance(service, dict)
                and service.get("etatCode") in SUBSCRIBED_STATES
                and is_usage_point(service.get("pointId"))
            ]

    def _loggable_id(self, number: int) -> str:
        """An autorisationId is short: a plain hash of it would be reversed in
        seconds, so logs and the store get a digest keyed with the secret."""
        return self._keyed(str(number))[:12]

    def _keyed(self, text: str) -> str:
        key = (self.config.client_secret or self.config.client_id).encode()
        return hmac.new(key, text.encode(), "sha256").hexdigest()

    # --- any call

    def call(
        self, method: str, url: str, api: str = "data", headers: dict | None = None, wait: bool = True, **kwargs
    ) -> requests.Response:
        """One Enedis API call with the proxy's token: within the budget (waiting
        for a slot unless `wait` is False), renewed once and retried once when
        Enedis answers 401."""

        def attempt(token: str) -> requests.Response:
            authorized = {**(headers or {}), "Authorization": f"Bearer {token}"}
            return self._send(api, method, url, headers=authorized, wait=wait, **kwargs)

        token = self.access_token()
        response = attempt(token)
        if response.status_code == 401:
            log.info("Enedis refused the cached token: renewing it")
            response = attempt(self.access_token(stale=token))
        return response

    def _send(self, api: str, method: str, url: str, wait: bool = True, **kwargs) -> requests.Response:
        """Every call to Enedis: its API's hourly quota, a slot of the budget, then the request, counted."""
        quota = self._take_quota(api, url)
        try:
            self.wait_for_slot(wait)
        except UpstreamBusy:
            if quota:
                limits.give_back(self.store, *quota)
            raise
        try:
            response = send(self.session, self.config, method, url, **kwargs)
        except UpstreamTimeout:
            self.metrics.enedis_call(api, "timeout")
            raise
        except UpstreamUnreachable:
            self.metrics.enedis_call(api, "unreachable")
            raise
        except UpstreamBadAnswer:  # too large, or not decodable
            self.metrics.enedis_call(api, "unreadable")
            raise
        self.metrics.enedis_call(api, response.status_code)
        return response

    def _take_quota(self, api: str, url: str) -> tuple[str, int] | None:
        """Count a call to a data API against its hourly quota (limits.py); UpstreamBusy past it.
        The token endpoint is no data API: its calls (one every few hours) are not counted."""
        prefix = self.config.data_endpoint + "/"
        if api == "token" or not url.startswith(prefix):
            return None
        name = limits.quota_api(url[len(prefix) :])
        minute, wait = limits.take_quota(self.store, name, self.config.enedis_max_calls_per_hour, self.clock())
        if wait:
            raise UpstreamBusy("the proxy's hourly quota of calls to this Enedis API is spent, retry later", wait)
        return name, minute

    # --- the shared token

    def access_token(self, stale: str | None = None) -> str:
        """The client_credentials token every instance shares. `stale` is a
        token Enedis has just refused: another one is returned (fetched, or
        already fetched by someone else)."""
        token = self._cached(stale)
        if token:
            return token
        with self._token_lock:  # one thread per process goes on...
            token = self._cached(stale)
            if token:
                return token
            return self._fetch_once(stale)

    def _cached(self, stale: str | None) -> str | None:
        record = self.store.get(TOKEN_KIND, TOKEN_KEY)
        try:
            token = sealing.decrypt(self.config.client_secret, record["encrypted"]).decode() if record else None
        except (KeyError, sealing.CannotOpen, UnicodeDecodeError):
            # Sealed under another secret (rotated), or unreadable: no token, fetch one.
            token = None
        return token if token and token != stale else None

    def _fetch_once(self, stale: str | None) -> str:
        """...and one process among those sharing the store fetches."""
        deadline = self.clock() + self.lock_ttl
        while not self.store.add(TOKEN_KIND, TOKEN_LOCK_KEY, {"since": self.clock()}, self.lock_ttl):
            self.sleep(LOCK_POLL)
            token = self._cached(stale)
            if token:
                return token
            if self.clock() > deadline:
                raise UpstreamTimeout("the Enedis token is taking too long to come")
        try:
            return self._cached(stale) or self._fetch_token()
        finally:
            self.store.delete(TOKEN_KIND, TOKEN_LOCK_KEY)

    def _fetch_token(self) -> str:
        response = self._send(
            "token",
            "POST",
            self.config.token_endpoint_v3,
            data={
                "grant_type": CLIENT_CREDENTIALS_GRANT,
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret,
            },
        )
        status = response.status_code
        if status == 429:
            raise UpstreamBusy("Enedis is throttling the proxy, retry later", retry_after_of(response, self.clock()))
        if status != 200:
            log.warning("the Enedis token endpoint answered %d", status)
            if status in (400, 401, 403):
                raise UpstreamBadAnswer("Enedis refused the proxy's client credentials")
            raise UpstreamBadAnswer(f"the Enedis token endpoint answered {status}")
        try:
            body = parse_json(response.content)
        except UpstreamBadAnswer:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise UpstreamBadAnswer("the Enedis token answer holds no access_token")
        lifetime = _seconds(body.get("expires_in"), DEFAULT_TOKEN_LIFETIME)
        encrypted = sealing.encrypt(self.config.client_secret, token.encode())
        self.store.put(
            TOKEN_KIND, TOKEN_KEY, {"encrypted": encrypted}, lifetime - min(TOKEN_RENEW_MARGIN, lifetime / 10)
        )
        log.info("new Enedis client_credentials token, valid %ds", lifetime)
        return token

    # --- the outbound budget

    def wait_for_slot(self, wait: bool = True) -> None:
        """Take a slot in the budget shared through the store and wait for it:
        the first window (this one or one of the next) still holding room,
        no further than BUDGET_WAIT seconds ahead, or only this window when
        `wait` is False; UpstreamBusy if none."""
        now = self.clock()
        window = int(now // self.window)
        while window * self.window <= now + (BUDGET_WAIT if wait else 0):
            start, end = window * self.window, (window + 1) * self.window
            if self.store.incr(BUDGET_KIND, str(window), end - now + 1) <= self.per_window:
                if start > now:
                    self.metrics.budget_wait("served")
                    self.sleep(start - now)
                return
            window += 1
        log.warning("outbound budget spent for the next %ds", BUDGET_WAIT if wait else self.window)
        self.metrics.budget_wait("refused")
        raise UpstreamBusy("the proxy's budget of calls to Enedis is spent, retry later", BUDGET_WAIT)


# --- helpers


def autorisation_number(autorisation_id: str) -> int:
    """The v2 consent's `autorisation_id` as the int64 Enedis expects, or ValueError."""
    if not AUTORISATION_ID.fullmatch(autorisation_id or "") or not 0 < int(autorisation_id) <= INT64_MAX:
        raise ValueError("autorisation_id must be a positive integer")
    return int(autorisation_id)


def _day(value) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if isinstance(value, str) else None
    except ValueError:
        return None


def _is_json(body: bytes) -> bool:
    try:
        parse_json(body)
    except UpstreamBadAnswer:
        return False
    return True


def _readable(body: bytes):
    """An answer for deviceflow.translate: its JSON, or "" when it has none
    that parse_json takes (translate then answers `upstream_error`)."""
    try:
        return parse_json(body)
    except UpstreamBadAnswer:
        return ""


def _seconds(value, default: int) -> int:
    """`expires_in` as Enedis sends it: a number, or a string of digits."""
    try:
        seconds = int(float(value))
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


_NEXT_ACCESS = re.compile(r'nextAccessTime\\?"\s*:\s*\\?"([^"\\]+)')
_ENEDIS_TIME = re.compile(r"(\d{4})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2})\s*(?:([+-])(\d{2}):?(\d{2}))?")
_MONTHS = {
    m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)
}


def parse_next_access_time(text: str) -> float | None:
    """The epoch of Enedis's `nextAccessTime` ("2026-Jul-18 05:00:00+0000 UTC",
    found anywhere in a 429 body, even inside an escaped JSON string), or None."""
    found = _NEXT_ACCESS.search(text)
    if not found:
        return None
    value = found.group(1).strip()
    match = _ENEDIS_TIME.match(value)
    try:
        if match:
            year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
            if month.lower() not in _MONTHS:
                return None
            moment = datetime(
                int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second), tzinfo=UTC
            )
            offset = (int(off_h) * 3600 + int(off_m) * 60) * (-1 if sign == "-" else 1) if sign else 0
            return moment.timestamp() - offset
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def retry_after_of(response: requests.Response, now: float) -> int:
    """Seconds a device should wait after an Enedis 429: until `nextAccessTime`
    when the body names it, else Enedis's own Retry-After, else a minute."""
    moment = parse_next_access_time(response.content.decode("utf-8", "replace"))
    if moment is not None:
        return int(min(MAX_RETRY_AFTER, max(1, math.ceil(moment - now))))
    header = response.headers.get("Retry-After", "").strip()
    if header.isascii() and header.isdigit():  # "²" is a digit to isdigit(), not to int()
        return int(min(MAX_RETRY_AFTER, max(1, int(header))))
    return DEFAULT_RETRY_AFTER
