"""What the flow keeps in the store: the kinds of record, their shapes, and the states of a flow.

Every secret a record is found by (device code, access and refresh tokens) is a key only as its digest
(deviceflow.store.digest); no record holds a clear token. Counters (`incr`) hold a bare integer.
"""

from __future__ import annotations

from typing import TypedDict

# --- record kinds, the first half of every store key

FLOW = "flow"  # FlowRecord, by the device code's digest
USER_CODE = "user"  # UserCodeRecord, by the user code (normalized, without its dash)
LENT_SECRET = "lent"  # LentSecretRecord, by the device code's digest
STATE = "state"  # StateRecord, by the `state` sent to the consent page
CHAIN = "chain"  # ChainRecord, by the chain id
ACCESS_TOKEN = "access"  # AccessTokenRecord, by the access token's digest
REFRESH_TOKEN = "refresh"  # RefreshTokenRecord, by the refresh token's digest
SERVER_META = "meta"  # {"key": hex}, under SERVER_KEY: the key of CSRF tokens, shared by every instance
SETTLED = "settled"  # {}, by the device code's digest: a flow approved or denied lately (PendingView forgets it)

SERVER_KEY = "server_key"

# Counters, each within its own window.
DEVICE_CODES_ASKED = "codes"  # device codes asked, per network
FAILED_GUESSES = "guess"  # failed user-code entries, per network, and under ALL_NETWORKS for the server
FAILED_SITES = "guessed"  # failed user-code entries, per site (an IPv4 address, an IPv6 /48)
CONSENT_RETURNS = "returns"  # returns from the consent page, per network
STATE_RETURNS = "state_returns"  # returns from the consent page, per state

ALL_NETWORKS = "*"

# --- the states of a flow: PENDING, then APPROVED or DENIED; APPROVED, then DELIVERED once a poll wins the tokens

PENDING, APPROVED, DENIED, DELIVERED = "pending", "approved", "denied", "delivered"

# How the consent of a flow ends: tokens minted by the proxy, or upstream's own handed to the device.
MODE_CLIENT_CREDENTIALS, MODE_DEVICE = "client_credentials", "device"


class FlowRecord(TypedDict, total=False):
    """One device flow. Its status only moves forward, each step a compare-and-set on the previous one."""

    status: str
    user_code: str
    client_id: str
    scope: str
    application: str  # the product name the device announced, shown to the person
    code_expires: float
    public_key: str  # FLOW=DEVICE: what upstream's answer is sealed to; only the device code opens it
    lent: bool  # FLOW=DEVICE: the device lent its client_secret (a LentSecretRecord)
    usage_points: list[str] | None  # client_credentials, approved: what the minted tokens will hold
    sealed: str | None  # FLOW=DEVICE, approved: upstream's token response, sealed
    sealed_code: str | None  # FLOW=DEVICE with a lent secret, approved: the authorization code, sealed
    upstream: dict | None  # FLOW=DEVICE, approved, flow without public_key: upstream's token response
    extra: dict  # with `upstream`: the redirect's extra parameters
    client_secret: str | None  # read by the code exchange when no CLIENT_SECRET is set; cleared once it is done


class UserCodeRecord(TypedDict, total=False):
    """A live user code, until its flow is approved or denied (then deleted) or expires: what the
    confirmation page shows, so that the page reads this record alone."""

    device: str  # the flow's key
    client_id: str
    application: str


class LentSecretRecord(TypedDict):
    sealed: str  # the device's client_secret, sealed to the flow's public key


class StateRecord(TypedDict, total=False):
    """One visit to the consent page, bound to the browser that started it."""

    device: str  # the flow's key
    browser: str  # the browser cookie's digest
    mode: str  # MODE_CLIENT_CREDENTIALS or MODE_DEVICE
    started: float
    client_id: str
    autorisation_id: str | None  # v2 consent: the first one a return named; no other is taken after
    verifier: str  # PKCE


class ChainRecord(TypedDict):
    """One consent: every refresh token rotated from it shares it, and revoking it ends them all."""

    revoked: bool
    usage_points: list[str]


class AccessTokenRecord(TypedDict):
    usage_points: list[str]
    client_id: str
    chain: str
    scope: str


class RefreshTokenRecord(AccessTokenRecord):
    parent: str | None  # the refresh token this one replaced, until this one is first used
    successor: str | None  # the refresh token handed out in exchange for this one
    retired: bool  # its successor was used: presenting it again revokes the chain
    expires: float  # the end of the consent


def chain_record(usage_points: list[str]) -> ChainRecord:
    return {"revoked": False, "usage_points": usage_points}


def refresh_token_record(common: AccessTokenRecord, parent: str | None, expires: float) -> RefreshTokenRecord:
    return {**common, "parent": parent, "successor": None, "retired": False, "expires": expires}


# What a sealed value of a flow is for; part of what it is bound to, so these never change.
LENT_SECRET_PURPOSE, AUTHORIZATION_CODE_PURPOSE = "lent", "code"


def sealed_for(purpose: str, device_key: str) -> bytes:
    """What a sealed value of a flow is bound to: its purpose and the flow, so that none stands in for another."""
    return f"{purpose}|{device_key}".encode()
