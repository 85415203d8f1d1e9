"""Device authorization (RFC 8628 §3.1, §3.2): a device asks for a device code and a user code.

Invariants: a user code names one live flow at a time (added only if free); the device code is never
stored, only its digest; every request that would create a flow counts against its network's budget.
"""

from __future__ import annotations

import re
import time

from deviceflow import randomness, sealing
from deviceflow.config import Config
from deviceflow.errors import TemporarilyUnavailable, TooManyRequests
from deviceflow.flow.clients import application_name, check_client, network_of
from deviceflow.flow.records import (
    DEVICE_CODES_ASKED,
    FLOW,
    LENT_SECRET,
    LENT_SECRET_PURPOSE,
    PENDING,
    USER_CODE,
    FlowRecord,
    UserCodeRecord,
    sealed_for,
)
from deviceflow.store import Record, Store, digest

# No vowels (no words), no look-alikes (0/O, 1/I): RFC 8628 §6.1.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
# Draws of a user code before giving up: 20 collisions in a 2.6e10 space means the store is full of live codes.
USER_CODE_DRAWS = 20
# An expired device code is remembered this long, so the device hears
# `expired_token` (start again) rather than `invalid_grant` (DomoticzLinky
# disables itself on invalid_grant).
EXPIRED_MEMORY = 24 * 3600
# Device codes issued per client address: a home asks for a few a year; a
# flood would fill the store with pending flows (and the user-code space
# with live codes, raising the odds of a guess).
DEVICE_CODES_PER_ADDRESS = 30
DEVICE_CODES_WINDOW = 10 * 60
# A lent client_secret outlives the code by this much (seconds), so that a device
# polling at its interval (at most 60 s) still exchanges a code approved at the last moment.
LENT_SECRET_GRACE = 120


def format_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def draw_user_code(random_bytes=randomness.token_bytes) -> str:
    """A user code, each letter drawn uniformly from the alphabet, from one draw of random bytes (a draw per
    letter, as `secrets.choice` does, would cost a lock or a system call each)."""
    fair = 256 - 256 % len(USER_CODE_ALPHABET)  # bytes from here on would favour the first letters
    code = ""
    while len(code) < USER_CODE_LENGTH:
        drawn = random_bytes(2 * USER_CODE_LENGTH)
        code += "".join(USER_CODE_ALPHABET[byte % len(USER_CODE_ALPHABET)] for byte in drawn if byte < fair)
    return code[:USER_CODE_LENGTH]


def normalize_user_code(typed: str) -> str | None:
    """Typed input matched case-insensitively, ignoring spaces and dashes."""
    code = re.sub(r"[\s-]", "", typed or "").upper()
    if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in code):
        return None
    return code


class DeviceAuthorization:
    """The device authorization endpoint: new flows, within each network's budget."""

    def __init__(self, config: Config, store: Store, clock=time.time):
        self.config = config
        self.store = store
        self.clock = clock

    def issue_codes(
        self, client_id: str, client_secret: str = "", scope: str = "", user_agent: str = "", address: str | None = None
    ) -> dict:
        """A new flow for a known client, as the device authorization response; when `address` is given,
        it counts against that address's device-code budget (only requests that would create a flow count)."""
        client_id = check_client(self.config, client_id)
        device_code = randomness.token_urlsafe(32)
        device_key = digest(device_code)
        lifetime = self.config.code_lifetime
        if address is not None:
            self._check_code_budget(address)  # first: a refused request costs one write, nothing more
        record: FlowRecord = {
            "status": PENDING,
            "client_id": client_id,
            "scope": scope or "",
            "application": application_name(user_agent),
            "code_expires": self.clock() + lifetime,
        }
        # The user code's record carries what the confirmation page shows: the page reads it alone.
        link: UserCodeRecord = {
            "device": device_key,
            "client_id": client_id,
            "application": record["application"],
        }
        also: list[Record] = []
        if self.config.device_mode:
            # Upstream's tokens will be sealed to it: the store never holds a key that opens them.
            record["public_key"] = sealing.public_key_for(device_code)
            if client_secret and not self.config.client_secret:
                # No configured secret: the device lends its own, sealed in a record of its own that
                # expires with the code (the flow's is remembered a day longer).
                record["lent"] = True
                sealed = sealing.seal_to(
                    record["public_key"], client_secret.encode(), sealed_for(LENT_SECRET_PURPOSE, device_key)
                )
                also.append((LENT_SECRET, device_key, {"sealed": sealed}, lifetime + LENT_SECRET_GRACE))
        for _ in range(USER_CODE_DRAWS):
            user_code = draw_user_code()
            # The flow is written with its user code, in one write, only when the code is free.
            flow = (FLOW, device_key, {**record, "user_code": user_code}, lifetime + EXPIRED_MEMORY)
            if self.store.add(USER_CODE, user_code, link, lifetime, also=[flow, *also]):
                break
        else:
            raise TemporarilyUnavailable("no free user code, try again later")
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
        if self.store.incr(DEVICE_CODES_ASKED, network_of(address), DEVICE_CODES_WINDOW) > DEVICE_CODES_PER_ADDRESS:
            raise TooManyRequests(
                "too many device codes asked from this address, retry later", retry_after=DEVICE_CODES_WINDOW
            )
