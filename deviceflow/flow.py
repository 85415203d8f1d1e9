"""The device flow (RFC 8628) as the proxy runs it, with no web framework in it.

Life of a flow: a device asks for codes (`start`), a person confirms the user
code and is sent to Enedis (`begin`), Enedis sends the person back
(`complete`: approved or denied), and the device polling `/device/token`
(`poll`) receives tokens exactly once. In client_credentials mode the proxy
mints its own tokens, bound to the consented usage points; they are minted at
delivery so that no clear token is ever stored, and stored by digest only. In
FLOW=DEVICE, upstream's token response waits for the poll sealed to a key
only the device_code opens (deviceflow.sealing). A client_secret the device
lends (no CLIENT_SECRET configured) is sealed the same way, so the server
cannot use it until the device polls: the code exchange then happens at that
poll, the authorization code having waited sealed too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from deviceflow import sealing
from deviceflow.config import ACCESS_TOKEN_LIFETIME, Config
from deviceflow.errors import (AccessDenied, AuthorizationPending, ExpiredToken, InvalidClient, InvalidGrant,
                               InvalidRequest, InvalidToken, PageError, SlowDown, StaleConsent,
                               TemporarilyUnavailable, TooManyRequests, UpstreamError, VersionMismatch)
from deviceflow.store import Store, digest
from deviceflow.usage_points import parse_usage_points

log = logging.getLogger("deviceflow.flow")

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_TOKEN_GRANT = "refresh_token"

# No vowels (no words), no look-alikes (0/O, 1/I): RFC 8628 §6.1.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
# An expired device code is remembered this long, so the device hears
# `expired_token` (start again) rather than `invalid_grant` (DomoticzLinky
# disables itself on invalid_grant).
EXPIRED_MEMORY = 24 * 3600
# Failed user-code entries are counted per network (an IPv4 address, an IPv6
# /64) and for the whole server. Past GUESSES_GLOBAL within the window, code
# entry is refused only to sites that failed within it (an IPv4 address, an
# IPv6 /48, the most a household, a hosted machine or a tunnel broker hands
# out): a guesser
# spread over many addresses gets one guess per site and hour, and a person
# whose network has not failed is not refused for what others did. Past
# GUESSES_CEILING, which takes thousands of sites, everybody waits: the hard
# bound on guesses (scheme and odds in the README).
GUESSES_PER_ADDRESS = 10
GUESSES_PER_ADDRESS_WINDOW = 15 * 60
GUESSES_GLOBAL = 300
GUESSES_CEILING = 3000
GUESSES_GLOBAL_WINDOW = 3600
IPV6_NETWORK, IPV6_SITE = 64, 48
# Device codes issued per client address: a home asks for a few a year; a
# flood would fill the store with pending flows (and the user-code space
# with live codes, raising the odds of a guess).
DEVICE_CODES_PER_ADDRESS = 30
DEVICE_CODES_WINDOW = 10 * 60

# A lent client_secret outlives the code by this much (seconds), so that a device
# polling at its interval (at most 60 s) still exchanges a code approved at the last moment.
LENT_SECRET_GRACE = 120

# Seconds the person is told to wait before reloading when Enedis has not registered a v2 share yet.
NO_USAGE_POINTS_RETRY = 5
# Returns from the consent page: a state takes this many within its lifetime
# (reloads while Enedis registers a share), and one network this many in the
# window; each v2 return may cost Enedis look-ups.
RETURNS_PER_STATE = 5
RETURNS_PER_ADDRESS = 30
RETURNS_PER_ADDRESS_WINDOW = 15 * 60

STATE_SUFFIX = re.compile(r"[A-Za-z0-9_-]{1,16}")
USER_AGENT_VERSION = re.compile(r"^[^/\s]+/(\d+(?:\.\d+){0,2})(?:[\s;(]|$)")

# Redirect parameters never handed to the device: the exchange's own, and every
# field of a token response (RFC 6749 §5.1, §5.2; OpenID's id_token), so that a
# query string can neither override nor fill in what only upstream may say.
RESERVED_TOKEN_FIELDS = frozenset({
    "code", "state", "access_token", "token_type", "expires_in", "refresh_token", "scope", "id_token",
    "error", "error_description", "error_uri",
})

PENDING, APPROVED, DENIED, DELIVERED = "pending", "approved", "denied", "delivered"
MODE_CLIENT_CREDENTIALS, MODE_DEVICE = "client_credentials", "device"
# Chains of refresh tokens adopted from another server (the PHP one) are named so.
IMPORTED_CHAIN_PREFIX = "imported-"


@dataclass(frozen=True)
class PendingFlow:
    """What the confirmation page shows about a flow."""
    user_code: str
    client_id: str
    application: str
    device_key: str


def format_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def normalize_user_code(typed: str) -> str | None:
    """Typed input matched case-insensitively, ignoring spaces and dashes."""
    code = re.sub(r"[\s-]", "", typed or "").upper()
    if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in code):
        return None
    return code


def check_user_agent(config: Config, user_agent: str | None) -> None:
    """VERSION_MIN: refuse devices older than the configured version."""
    if config.version_min is None:
        return
    match = USER_AGENT_VERSION.match(user_agent or "")
    wanted = ".".join(map(str, config.version_min))
    if not match:
        raise VersionMismatch(f"User-Agent must be Name/x.y.z with a version of at least {wanted}")
    version = tuple(int(p) for p in match.group(1).split("."))
    width = max(len(version), len(config.version_min))
    if version + (0,) * (width - len(version)) < config.version_min + (0,) * (width - len(config.version_min)):
        raise VersionMismatch(f"this client is too old: version {wanted} or newer is required")


def application_name(user_agent: str | None) -> str:
    """The product name a device announces (`DomoticzLinky/2.6.0` -> DomoticzLinky), shown to the person."""
    name = (user_agent or "").split("/", 1)[0].split(" ", 1)[0]
    return name if re.fullmatch(r"[A-Za-z0-9._-]{1,40}", name) else ""


def network_of(address: str, ipv6_prefix: int = IPV6_NETWORK) -> str:
    """The key a client address is counted under: an IPv4 address itself (an IPv4-mapped IPv6
    one included), an IPv6 address's network of `ipv6_prefix` bits, since one host holds a whole
    /64 and picks any address in it."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False))


class DeviceFlow:
    def __init__(self, config: Config, store: Store, upstream=None, clock=time.time, passthrough=None):
        """`upstream` is the Enedis client, used to turn a v2 `autorisation_id`
        into usage points; `passthrough` (deviceflow.passthrough) exchanges the
        authorization code at TOKEN_ENDPOINT in FLOW=DEVICE."""
        self.config = config
        self.store = store
        self.upstream = upstream
        self.clock = clock
        self.passthrough = passthrough

    # --- clients

    def check_client(self, client_id: str | None) -> str:
        if not client_id:
            raise InvalidRequest("client_id is required")
        allowed = self.config.allowed_client_ids
        if self.config.device_mode and not self.config.client_id:
            return client_id  # generic proxy: any client id
        if client_id not in allowed:
            raise InvalidClient("unknown client_id")
        return client_id

    # --- step 1: the device asks for codes

    def start(self, client_id: str, client_secret: str = "", scope: str = "", user_agent: str = "",
              address: str | None = None) -> dict:
        """A new flow for a known client; when `address` is given, it counts
        against that address's device-code budget (only requests that would
        create a flow count)."""
        client_id = self.check_client(client_id)
        if address is not None:
            self._check_code_budget(address)
        device_code = secrets.token_urlsafe(32)
        device_key = digest(device_code)
        lifetime = self.config.code_lifetime
        for _ in range(20):
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
            if self.store.add("user", user_code, {"device": device_key}, lifetime):
                break
        else:  # 20 collisions in a 2.6e10 space: the store is full of live codes
            raise TemporarilyUnavailable("no free user code, try again later")
        record = {
            "status": PENDING,
            "user_code": user_code,
            "client_id": client_id,
            "scope": scope or "",
            "application": application_name(user_agent),
            "code_expires": self.clock() + lifetime,
        }
        if self.config.device_mode:
            # Upstream's tokens will be sealed to it: the store never holds a key that opens them.
            record["public_key"] = sealing.public_key_for(device_code)
            if client_secret and not self.config.client_secret:
                # No configured secret: the device lends its own, sealed in a record of its own that
                # expires with the code (the flow's is remembered a day longer).
                record["lent"] = True
                sealed = sealing.seal_to(record["public_key"], client_secret.encode(), _aad("lent", device_key))
                self.store.put("lent", device_key, {"sealed": sealed}, lifetime + LENT_SECRET_GRACE)
        self.store.put("flow", device_key, record, lifetime + EXPIRED_MEMORY)
        base = self.config.base_url
        return {
            "device_code": device_code,
            "user_code": format_user_code(user_code),
            "verification_uri": f"{base}/device",
            "verification_uri_complete": f"{base}/device?code={format_user_code(user_code)}",
            "expires_in": lifetime,
            "interval": self.config.interval,
        }

    def _check_code_budget(self, address: str) -> None:
        """Count a device-code request from this address; 429 past the budget."""
        if self.store.incr("codes", network_of(address), DEVICE_CODES_WINDOW) > DEVICE_CODES_PER_ADDRESS:
            raise TooManyRequests("too many device codes asked from this address, retry later",
                                  retry_after=DEVICE_CODES_WINDOW)

    # --- step 2: the person confirms the code

    def check_guess_budget(self, address: str) -> None:
        """Past the failed-entry limits the person is told to wait (429): their network's own
        limit, or the server-wide one when their site has failed too."""
        if (self.store.get("guess", network_of(address)) or 0) >= GUESSES_PER_ADDRESS:
            raise PageError("too_many_attempts", 429, GUESSES_PER_ADDRESS_WINDOW)
        overall = self.store.get("guess", "*") or 0
        if overall >= GUESSES_CEILING or (
                overall >= GUESSES_GLOBAL and self.store.get("guessed", network_of(address, IPV6_SITE))):
            raise PageError("too_many_attempts", 429, GUESSES_GLOBAL_WINDOW)

    def _count_failed_guess(self, address: str) -> None:
        self.store.incr("guess", network_of(address), GUESSES_PER_ADDRESS_WINDOW)
        self.store.incr("guessed", network_of(address, IPV6_SITE), GUESSES_GLOBAL_WINDOW)
        overall = self.store.incr("guess", "*", GUESSES_GLOBAL_WINDOW)
        if overall == GUESSES_GLOBAL:
            log.warning("%d wrong user codes within the hour: code entry is refused to the sites that failed "
                        "until the window ends", GUESSES_GLOBAL)
        elif overall == GUESSES_CEILING:
            log.warning("%d wrong user codes within the hour, from many sites: code entry is refused to everybody "
                        "until the window ends", GUESSES_CEILING)

    def lookup(self, typed_code: str, address: str) -> PendingFlow:
        """The pending flow behind a typed user code, counting failures against guessing."""
        self.check_guess_budget(address)
        code = normalize_user_code(typed_code)
        link = self.store.get("user", code) if code else None
        record = self.store.get("flow", link["device"]) if link else None
        if record is None or record["status"] != PENDING or record["code_expires"] <= self.clock():
            self._count_failed_guess(address)
            raise PageError("unknown_code")
        return PendingFlow(code, record["client_id"], record.get("application", ""), link["device"])

    def csrf_token(self, browser_id: str, user_code: str) -> str:
        return hmac.new(self._server_key(), f"{browser_id}|{user_code}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, browser_id: str, user_code: str, token: str) -> None:
        if not browser_id or not token or not hmac.compare_digest(self.csrf_token(browser_id, user_code), token):
            raise PageError("bad_csrf", 403)

    def _server_key(self) -> bytes:
        # Shared by every instance on the store, so a form served by one is accepted by another.
        key = self.store.get("meta", "server_key")
        if key is None:
            self.store.add("meta", "server_key", {"key": secrets.token_hex(32)}, 10 * 365 * 86400)
            key = self.store.get("meta", "server_key")
        return bytes.fromhex(key["key"])

    def begin(self, pending: PendingFlow, browser_id: str, state_suffix: str = "") -> str:
        """Bind a fresh single-use state to this browser and give the consent URL."""
        if state_suffix and not STATE_SUFFIX.fullmatch(state_suffix):
            state_suffix = ""
        mode = MODE_CLIENT_CREDENTIALS
        # `-cg` asks for client_credentials, which works only with the proxy's own secret.
        if self.config.device_mode and not (state_suffix.endswith("-cg") and self.config.client_secret):
            mode = MODE_DEVICE
        state = secrets.token_urlsafe(24) + state_suffix
        client_id = self.config.client_id or pending.client_id
        params = {
            "client_id": client_id,
            "response_type": "code",
            "state": state,
            "duration": self.config.duration,
            "redirect_uri": self.config.redirect_uri,
        }
        flow = self.store.get("flow", pending.device_key) or {}
        if flow.get("scope"):
            params["scope"] = flow["scope"]
        record = {"device": pending.device_key, "browser": digest(browser_id), "mode": mode,
                  "started": self.clock(), "client_id": client_id, "autorisation_id": None}
        if self.config.pkce and mode == MODE_DEVICE:
            verifier = secrets.token_urlsafe(48)
            record["verifier"] = verifier
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            params.update(code_challenge=challenge.decode(), code_challenge_method="S256")
        self.store.put("state", state, record, self.config.code_lifetime)
        separator = "&" if "?" in self.config.authorization_endpoint else "?"
        return f"{self.config.authorization_endpoint}{separator}{urlencode(params)}"

    # --- step 3: Enedis sends the person back

    def complete(self, params: dict, browser_id: str, address: str | None = None) -> dict:
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
        record = self.store.get("state", state) if state else None
        if record is None:
            raise PageError("bad_state")
        if not browser_id or not hmac.compare_digest(record["browser"], digest(browser_id)):
            raise PageError("bad_state")
        # Counted once the return names a flow of this browser: returns that name none cost nothing,
        # and must not let a neighbour behind the same address spend the person's budget.
        if address is not None and self.store.incr(
                "returns", network_of(address), RETURNS_PER_ADDRESS_WINDOW) > RETURNS_PER_ADDRESS:
            raise PageError("too_many_returns", 429, RETURNS_PER_ADDRESS_WINDOW)
        if self.store.incr("state_returns", state, self.config.code_lifetime) > RETURNS_PER_STATE:
            self._discard(state)
            raise PageError("bad_state")
        device_key = record["device"]
        flow = self.store.get("flow", device_key)
        if flow is None or flow["status"] != PENDING:
            self._discard(state)
            raise PageError("unknown_code")
        if flow["code_expires"] <= self.clock():
            self._discard(state)
            raise PageError("expired_code")

        if params.get("error"):
            self._spend(state)
            self._settle(device_key, {"status": DENIED})
            log.info("consent refused at upstream (%s)", _loggable(params.get("error")))
            raise PageError("denied")

        if record["mode"] == MODE_DEVICE:
            self._spend(state)  # an authorization code is good for one exchange, however it ends
            changes = self._exchange(params, flow, record, device_key)
        else:
            changes = {"usage_points": self._consented_usage_points(state, params, record)}
            self._spend(state)
        return self._settle(device_key, {"status": APPROVED, **changes})

    def _spend(self, state: str) -> None:
        """Take the state: what makes completion single-use. None means
        another request with the same state got there first."""
        if self.store.take("state", state) is None:
            raise PageError("bad_state")

    def _discard(self, state: str) -> None:
        """Spend a state that can no longer approve its flow."""
        self.store.delete("state", state)

    def _consented_usage_points(self, state: str, params: dict, record: dict) -> list[str]:
        """client_credentials: the usage points this return proves consent for, in the
        configured consent version's form only. v2: Enedis names them from the
        `autorisation_id`; v1: the redirect carries them (Enedis cannot be asked, see
        config.startup_warnings)."""
        autorisation_id = params.get("autorisation_id") or ""
        if self.config.enedis_authorize_version == "v2":
            if not autorisation_id:
                self._discard(state)
                raise PageError("bad_return")
            self._bind(state, autorisation_id)
            return self._shared_usage_points(state, autorisation_id, record)
        try:
            if autorisation_id or not params.get("code"):
                raise ValueError("not a v1 return")
            return parse_usage_points(params.get("usage_point_id", ""))
        except ValueError:
            self._discard(state)
            raise PageError("bad_return") from None

    def _bind(self, state: str, autorisation_id: str) -> None:
        """Tie a state to the first `autorisation_id` it sees; another one is refused."""
        if self.store.update_if("state", state, {"autorisation_id": None}, {"autorisation_id": autorisation_id}):
            return
        record = self.store.get("state", state)
        if record is None or not hmac.compare_digest(str(record.get("autorisation_id")), autorisation_id):
            log.warning("a consent return named another autorisation_id than its state's first one: refused")
            raise PageError("bad_state")

    def _shared_usage_points(self, state: str, autorisation_id: str, record: dict) -> list[str]:
        """v2 consent: Enedis names the usage points of a fresh share, not the browser's URL."""
        if self.upstream is None:
            raise PageError("upstream_unavailable", 502)
        try:
            points = self.upstream.usage_points_for(autorisation_id, started=record["started"],
                                                    flow_key=record["device"])
        except ValueError:
            self._discard(state)
            raise PageError("bad_usage_points") from None
        except StaleConsent:
            raise PageError("stale_consent", 403) from None
        except UpstreamError as error:
            raise PageError("upstream_unavailable", error.status, error.retry_after) from None
        if not points:
            raise PageError("no_usage_points", 503, NO_USAGE_POINTS_RETRY)
        return points

    def _exchange(self, params: dict, flow: dict, record: dict, device_key: str) -> dict:
        """FLOW=DEVICE: the upstream token response for the device, plus the redirect's extra parameters.

        The state and the code are spent, so a flow that cannot complete is denied at once: the
        device hears access_denied instead of polling until the code expires.
        """
        # The device's own secret served this one exchange; it is not kept any longer.
        forget = {"client_secret": None}
        if self.passthrough is None or not params.get("code"):
            self._settle(device_key, {"status": DENIED, **forget})
            raise PageError("bad_request")
        if flow.get("lent") and flow.get("public_key"):
            # Only the device code opens the lent secret: the exchange waits for the device's next poll,
            # the code sealed the same way (the success page cannot tell whether upstream will take it).
            grant = {"code": params["code"], "client_id": record.get("client_id", ""),
                     "verifier": record.get("verifier"),
                     "extra": {k: v for k, v in params.items() if k not in RESERVED_TOKEN_FIELDS}}
            return {"sealed_code": sealing.seal_to(flow["public_key"], json.dumps(grant).encode(),
                                                   _aad("code", device_key))}
        secret = self.config.client_secret or flow.get("client_secret", "")
        try:
            response = self.passthrough.exchange_code(params["code"], record.get("client_id", ""), secret,
                                                      record.get("verifier"))
        except UpstreamError as error:
            self._settle(device_key, {"status": DENIED, **forget})
            raise PageError("exchange_failed", error.status) from None
        extra = {k: v for k, v in params.items() if k not in RESERVED_TOKEN_FIELDS and k not in response}
        if not flow.get("public_key"):  # a flow started before sealing: kept as it was
            return {"upstream": response, "extra": extra, **forget}
        answer = json.dumps({"upstream": response, "extra": extra}).encode()
        return {"sealed": sealing.seal_to(flow["public_key"], answer, device_key.encode()), **forget}

    def _settle(self, device_key: str, changes: dict) -> dict:
        before = self.store.update_if("flow", device_key, {"status": PENDING}, changes)
        if before is None:
            raise PageError("unknown_code")
        if before.get("lent") and not changes.get("sealed_code"):
            self.store.delete("lent", device_key)  # refused, failed or minted by the proxy: the secret's use is over
        return {**before, **changes}

    # --- step 4: the device polls

    def poll(self, client_id: str, device_code: str) -> dict:
        self.check_client(client_id)
        if not device_code:
            raise InvalidRequest("device_code is required")
        device_key = digest(device_code)
        flow = self.store.get("flow", device_key)
        if flow is None or flow["client_id"] != client_id:
            raise InvalidGrant("unknown device_code")
        status = flow["status"]
        interval = self.config.interval
        if status == PENDING:
            if flow["code_expires"] <= self.clock():
                if flow.get("lent"):
                    self.store.delete("lent", device_key)
                raise ExpiredToken("the device code has expired, start again")
            polls = self.store.incr("poll", device_key, 60)
            if polls > self.config.limit_requests_per_minute:
                raise SlowDown(f"poll at most every {interval} seconds", interval=interval)
            raise AuthorizationPending("waiting for the user to approve", interval=interval)
        if status == DENIED:
            raise AccessDenied("the user or upstream refused the authorization")
        if status == APPROVED:
            # One poller wins the compare-and-set; the clear tokens exist only in its answer.
            before = self.store.update_if("flow", device_key, {"status": APPROVED},
                                          {"status": DELIVERED, "upstream": None, "usage_points": None,
                                           "sealed": None, "sealed_code": None})
            if before is not None:
                if before.get("sealed_code"):
                    return self._exchange_lent(device_code, device_key, before)
                log.info("tokens delivered for a device flow")
                if before.get("sealed"):
                    return _unseal(device_code, before["sealed"], device_key)
                if before.get("upstream") is not None:
                    return {**before.get("extra", {}), **before["upstream"]}
                return self.mint(before["usage_points"], client_id, before.get("scope", ""))
        raise InvalidGrant("the device code was already used")

    def _exchange_lent(self, device_code: str, device_key: str, flow: dict) -> dict:
        """The code exchange of a flow whose device lent its secret, at the poll that won the delivery:
        the device code opens the secret and the code; both are erased whatever upstream answers."""
        lent = self.store.take("lent", device_key)
        try:
            grant = json.loads(sealing.open_with(device_code, flow["sealed_code"], _aad("code", device_key)))
            secret = sealing.open_with(device_code, lent["sealed"], _aad("lent", device_key)).decode() if lent else ""
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
        self.store.update_if("flow", device_key, {"status": DELIVERED}, {"status": DENIED})

    # --- tokens minted by the proxy

    def mint(self, usage_points: list[str], client_id: str, scope: str = "", chain: str | None = None,
             parent: str | None = None, consent_expires: float | None = None) -> dict:
        now = self.clock()
        chain = chain or secrets.token_hex(16)
        consent_expires = consent_expires or now + self.config.duration_seconds
        refresh_ttl = max(1.0, consent_expires - now)
        access_token, refresh_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        common = {"usage_points": usage_points, "client_id": client_id, "chain": chain, "scope": scope}
        if parent is None:
            self.store.put("chain", chain, _chain_record(usage_points), refresh_ttl)
        self.store.put("access", digest(access_token), common, ACCESS_TOKEN_LIFETIME)
        self.store.put("refresh", digest(refresh_token), _refresh_record(common, parent, consent_expires),
                       refresh_ttl)
        return {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "usage_points_id": ",".join(usage_points),
            "scope": scope,
        }

    def adopt(self, refresh_token: str, usage_points: list[str], expires: float, scope: str = "") -> bool:
        """File a refresh token issued by another server (the PHP one) as the
        start of its own chain, so that the device refreshes with it as if we
        had minted it. False when it is already filed (re-runs change nothing,
        a revoked import stays revoked) or already expired."""
        key = digest(refresh_token)
        ttl = expires - self.clock()
        if ttl <= 0:
            return False
        # The chain id follows from the token, so a re-run finds the same chain.
        chain = IMPORTED_CHAIN_PREFIX + key[:32]
        common = {"usage_points": usage_points, "client_id": self.config.client_id, "chain": chain, "scope": scope}
        self.store.add("chain", chain, _chain_record(usage_points), ttl)
        return self.store.add("refresh", key, _refresh_record(common, None, expires), ttl)

    def refresh(self, client_id: str, refresh_token: str, usage_points_id: str | None = None) -> dict:
        """Rotate a refresh token. The previous one keeps working until the new
        one is first used (a lost answer must not lock a device out); presented
        after that, it revokes the whole chain."""
        self.check_client(client_id)
        if not refresh_token:
            raise InvalidRequest("refresh_token is required")
        key = digest(refresh_token)
        token = self.store.get("refresh", key)
        chain = self.store.get("chain", token["chain"]) if token else None
        if token is None or chain is None or chain.get("revoked"):
            raise InvalidGrant("unknown or revoked refresh_token")
        if client_id != token.get("client_id") and not _as_imported(token):
            raise InvalidGrant("refresh_token was issued to another client_id")
        if usage_points_id:
            try:
                asked = set(parse_usage_points(usage_points_id))
            except ValueError:
                raise InvalidGrant("usage_points_id does not match the refresh_token") from None
            if asked != set(token["usage_points"]):
                raise InvalidGrant("usage_points_id does not match the refresh_token")
        if token["retired"]:
            self.revoke_chain(token["chain"])
            log.warning("a replaced refresh token was presented again: its chain is revoked")
            raise InvalidGrant("refresh_token was replaced; the authorization is revoked")

        new = self.mint(token["usage_points"], client_id, token.get("scope", ""), chain=token["chain"],
                        parent=key, consent_expires=token.get("expires"))
        new_key = digest(new["refresh_token"])
        if self.store.update_if("refresh", key, {"retired": False, "successor": token["successor"]},
                                {"successor": new_key}) is None:
            # A concurrent refresh with the same token won; this one's tokens go.
            self._forget(new)
            raise InvalidGrant("refresh_token already being used")
        if token["successor"]:
            self.store.delete("refresh", token["successor"])  # handed out, never used: lost answer
        if token.get("parent"):
            # First use of this token: the one it replaced stops working now.
            self.store.update_if("refresh", token["parent"], {"successor": key}, {"retired": True})
        return new

    def _forget(self, tokens: dict) -> None:
        self.store.delete("access", digest(tokens["access_token"]))
        self.store.delete("refresh", digest(tokens["refresh_token"]))

    def revoke_chain(self, chain: str) -> None:
        self.store.update_if("chain", chain, {}, {"revoked": True})

    def authenticate(self, access_token: str | None) -> dict:
        """The usage points behind a Bearer token minted by the proxy."""
        token = self.store.get("access", digest(access_token)) if access_token else None
        chain = self.store.get("chain", token["chain"]) if token else None
        if token is None or chain is None or chain.get("revoked"):
            raise InvalidToken("the access token is unknown, expired or revoked")
        return token


def _chain_record(usage_points: list[str]) -> dict:
    """One consent: every refresh token rotated from it shares it, and revoking it ends them all."""
    return {"revoked": False, "usage_points": usage_points}


def _as_imported(token: dict) -> bool:
    """A refresh token as the PHP server issued it, not yet rotated here. That
    server kept no client id with it, so any allowed one (CLIENT_ID or
    EXTERNAL_CLIENT_ID, whichever the plugin was built with) may present it;
    its successors carry the one that did."""
    return token["chain"].startswith(IMPORTED_CHAIN_PREFIX) and token.get("parent") is None


def _refresh_record(common: dict, parent: str | None, expires: float) -> dict:
    return {**common, "parent": parent, "successor": None, "retired": False, "expires": expires}


def _aad(purpose: str, device_key: str) -> bytes:
    """What a sealed value of a flow is bound to: its purpose and the flow, so that none stands in for another."""
    return f"{purpose}|{device_key}".encode()


def _unseal(device_code: str, sealed: str, device_key: str) -> dict:
    """Upstream's answer sealed at the callback, opened with the device code the device presented."""
    try:
        opened = json.loads(sealing.open_with(device_code, sealed, device_key.encode()))
    except sealing.CannotOpen:
        # Only an altered store gets here (the record was found by this code's digest).
        log.warning("a sealed upstream token response did not open: the device is told to start again")
        raise ExpiredToken("the authorization could not be delivered, start again") from None
    return {**opened["extra"], **opened["upstream"]}


def _loggable(value) -> str:
    """Upstream text for a log line: short, printable ASCII."""
    return re.sub(r"[^\x20-\x7e]", "?", str(value or ""))[:80]
