"""Tokens the proxy mints (client_credentials mode): the refresh chain and the Bearer check.

Invariants: tokens are stored by digest only; every token belongs to a chain (one consent), and revoking the
chain ends them all. A refresh token rotates: the previous one keeps working until the new one is first used
(a lost answer must not lock a device out); presented after that, it revokes the whole chain.
"""

from __future__ import annotations

import logging
import time

from deviceflow import randomness
from deviceflow.config import ACCESS_TOKEN_LIFETIME, Config
from deviceflow.errors import InvalidGrant, InvalidRequest, InvalidToken
from deviceflow.flow.clients import check_client
from deviceflow.flow.records import (
    ACCESS_TOKEN,
    CHAIN,
    REFRESH_TOKEN,
    AccessTokenRecord,
    RefreshTokenRecord,
    chain_record,
    refresh_token_record,
)
from deviceflow.store import Store, digest
from deviceflow.usage_points import parse_usage_points

log = logging.getLogger("deviceflow.flow")

REFRESH_TOKEN_GRANT = "refresh_token"
# Chains of refresh tokens imported from another server (the PHP one) are named so.
IMPORTED_CHAIN_PREFIX = "imported-"


class Tokens:
    """Minting, importing, rotating, revoking and checking the proxy's own tokens."""

    def __init__(self, config: Config, store: Store, clock=time.time):
        self.config = config
        self.store = store
        self.clock = clock

    def mint(
        self,
        usage_points: list[str],
        client_id: str,
        scope: str = "",
        chain: str | None = None,
        parent: str | None = None,
        consent_expires: float | None = None,
    ) -> dict:
        """A new access and refresh token for `usage_points`, as the token response. Without `chain`, the
        start of a new chain (a new consent, lasting the configured duration)."""
        now = self.clock()
        chain = chain or randomness.token_hex(16)
        consent_expires = consent_expires or now + self.config.duration_seconds
        refresh_ttl = max(1.0, consent_expires - now)
        access_token, refresh_token = randomness.token_urlsafe(32), randomness.token_urlsafe(32)
        common: AccessTokenRecord = {
            "usage_points": usage_points,
            "client_id": client_id,
            "chain": chain,
            "scope": scope,
        }
        if parent is None:
            self.store.put(CHAIN, chain, chain_record(usage_points), refresh_ttl)
        self.store.put(ACCESS_TOKEN, digest(access_token), common, ACCESS_TOKEN_LIFETIME)
        self.store.put(
            REFRESH_TOKEN, digest(refresh_token), refresh_token_record(common, parent, consent_expires), refresh_ttl
        )
        return {
            "access_token": access_token,
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "usage_points_id": ",".join(usage_points),
            "scope": scope,
        }

    def import_refresh_token(
        self, refresh_token: str, usage_points: list[str], expires: float, scope: str = ""
    ) -> bool:
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
        common: AccessTokenRecord = {
            "usage_points": usage_points,
            "client_id": self.config.client_id,
            "chain": chain,
            "scope": scope,
        }
        self.store.add(CHAIN, chain, chain_record(usage_points), ttl)
        return self.store.add(REFRESH_TOKEN, key, refresh_token_record(common, None, expires), ttl)

    def refresh(self, client_id: str, refresh_token: str, usage_points_id: str | None = None) -> dict:
        """Rotate a refresh token. The previous one keeps working until the new
        one is first used (a lost answer must not lock a device out); presented
        after that, it revokes the whole chain."""
        check_client(self.config, client_id)
        if not refresh_token:
            raise InvalidRequest("refresh_token is required")
        key = digest(refresh_token)
        token: RefreshTokenRecord | None = self.store.get(REFRESH_TOKEN, key)
        chain = self.store.get(CHAIN, token["chain"]) if token else None
        if token is None or chain is None or chain.get("revoked"):
            raise InvalidGrant("unknown or revoked refresh_token")
        if client_id != token.get("client_id") and not _imported_and_unused(token):
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

        new = self.mint(
            token["usage_points"],
            client_id,
            token.get("scope", ""),
            chain=token["chain"],
            parent=key,
            consent_expires=token.get("expires"),
        )
        new_key = digest(new["refresh_token"])
        if (
            self.store.update_if(
                REFRESH_TOKEN, key, {"retired": False, "successor": token["successor"]}, {"successor": new_key}
            )
            is None
        ):
            # A concurrent refresh with the same token won; this one's tokens go.
            self._delete_tokens(new)
            raise InvalidGrant("refresh_token already being used")
        if token["successor"]:
            self.store.delete(REFRESH_TOKEN, token["successor"])  # handed out, never used: lost answer
        if token.get("parent"):
            # First use of this token: the one it replaced stops working now.
            self.store.update_if(REFRESH_TOKEN, token["parent"], {"successor": key}, {"retired": True})
        return new

    def _delete_tokens(self, tokens: dict) -> None:
        self.store.delete(ACCESS_TOKEN, digest(tokens["access_token"]))
        self.store.delete(REFRESH_TOKEN, digest(tokens["refresh_token"]))

    def revoke_chain(self, chain: str) -> None:
        self.store.update_if(CHAIN, chain, {}, {"revoked": True})

    def authenticate(self, access_token: str | None) -> AccessTokenRecord:
        """The usage points behind a Bearer token minted by the proxy."""
        token = self.store.get(ACCESS_TOKEN, digest(access_token)) if access_token else None
        chain = self.store.get(CHAIN, token["chain"]) if token else None
        if token is None or chain is None or chain.get("revoked"):
            raise InvalidToken("the access token is unknown, expired or revoked")
        return token


def _imported_and_unused(token: RefreshTokenRecord) -> bool:
    """A refresh token as the PHP server issued it, not yet rotated here. That
    server kept no client id with it, so any allowed one (CLIENT_ID or
    EXTERNAL_CLIENT_ID, whichever the plugin was built with) may present it;
    its successors carry the one that did."""
    return token["chain"].startswith(IMPORTED_CHAIN_PREFIX) and token.get("parent") is None
