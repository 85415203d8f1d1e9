"""Operator tools: bring the PHP server's tokens over, look at the store,
revoke, purge. Plain functions over a `DeviceFlow` or a `Store`; the command
line (cli.py) prints what they return.

The PHP server (Device-Flow-Proxy-Server for Enedis) keeps everything in one
`cache`: a MongoDB collection of `{key, value, expireAt}` documents, or a
PostgreSQL table `cache(key, value, expire_at)` whose values are PHP
`serialize()` strings. Its only long-lived state is `refresh_token:<token>`,
valued with the comma-separated usage points (`;` in older records) and
living four years, longer than the consent behind it (DURATION). Everything
else there (device codes, states, access tokens, rate-limit buckets) lives
minutes or hours and is not worth carrying: a device whose access token is
unknown here gets `invalid_token` and refreshes.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from deviceflow.flow import DeviceFlow
from deviceflow.flow.records import ACCESS_TOKEN, CHAIN, FLOW, PENDING, REFRESH_TOKEN
from deviceflow.flow.tokens import IMPORTED_CHAIN_PREFIX
from deviceflow.metrics import BUDGET_WAITS, DAY, ENEDIS_CALLS, recent
from deviceflow.store import Store, digest
from deviceflow.usage_points import parse_usage_points

REFRESH_PREFIX = "refresh_token:"
CSV_HEADER = ["key", "value", "expire_at"]
# PHP's tokens are bin2hex(random_bytes(32)): 64 characters. Anything printable
# from 32 characters (128 bits as hex) is taken; a shorter one was never issued
# by PHP, and would let whoever guesses it refresh for someone's meters.
MIN_TOKEN_LENGTH = 32
TOKEN = re.compile(r"[\x21-\x7e]{%d,512}" % MIN_TOKEN_LENGTH)
PHP_STRING = re.compile(r's:(\d+):"(.*)";', re.DOTALL)

# Why a row was not imported, as the summary says it.
EXPIRED = "expired"
ALREADY = "already imported"
DUPLICATE = "repeated in the source"
BAD_TOKEN = "unusable token"
BAD_VALUE = "value is not a PHP string"
BAD_POINTS = "no valid usage point (14 digits)"
BAD_EXPIRY = "unreadable expiry date"
MALFORMED = "malformed row"


@dataclass
class Row:
    """One record of the PHP cache: `expires` is a datetime, None (no expiry) or
    the text that failed to parse; `serialized` when the value is PHP `serialize()`
    text (PostgreSQL) rather than the value itself (MongoDB)."""

    key: str | None
    value: object
    expires: object = None
    serialized: bool = False


@dataclass
class ImportSummary:
    read: int = 0  # refresh-token records seen
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)
    other_keys: int = 0  # device codes, states, access tokens, rate limits: not carried over
    capped: int = 0  # imported with an expiry brought back to now + DURATION


# --- reading the PHP server's cache


def php_string(value: str) -> str:
    """The string inside a PHP `serialize()` value (`s:14:"11111111111111";`); ValueError otherwise."""
    match = PHP_STRING.fullmatch(value.strip())
    if not match or len(match.group(2).encode("utf-8")) != int(match.group(1)):
        raise ValueError("not a serialized PHP string")
    return match.group(2)


def rows_from_mongodb(collection) -> Iterator[Row]:
    """The refresh tokens of the PHP server's MongoDB `cache` collection."""
    for doc in collection.find({"key": {"$regex": "^" + re.escape(REFRESH_PREFIX)}}):
        yield Row(doc.get("key"), doc.get("value"), doc.get("expireAt"))


def rows_from_csv(lines: Iterable[str], zone: tzinfo = UTC) -> Iterator[Row]:
    """Rows of a CSV export of the PHP server's PostgreSQL `cache` table
    (`\\copy cache TO 'cache.csv' CSV HEADER`); the header is optional.
    Dates without an offset are taken in `zone` (PHP wrote them in its own)."""
    for number, record in enumerate(csv.reader(lines)):
        if number == 0 and [c.strip().lower() for c in record] == CSV_HEADER:
            continue
        if not record:
            continue
        if len(record) != 3:
            yield Row(None, None)
            continue
        key, value, expire_at = record
        yield Row(key, value, _parse_date(expire_at, zone), serialized=True)


def _parse_date(text: str, zone: tzinfo):
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return text
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _epoch(expires) -> float | None:
    """Seconds since the epoch; naive datetimes are UTC (as pymongo reads BSON dates)."""
    if not isinstance(expires, datetime):
        raise ValueError("not a date")
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return expires.timestamp()


# --- filing them


def import_php(flow: DeviceFlow, rows: Iterable[Row], dry_run: bool = False) -> ImportSummary:
    """File every live refresh token of `rows` with `flow.tokens.import_refresh_token`. Safe to run
    again: a token already filed (even rotated or revoked since) is left as it is."""
    summary, seen = ImportSummary(), set()
    now = flow.clock()
    for row in rows:
        if row.key is None:
            summary.skipped[MALFORMED] += 1
            continue
        if not str(row.key).startswith(REFRESH_PREFIX):
            summary.other_keys += 1
            continue
        summary.read += 1
        reason, token, points, expires = _check(row, now, flow.config.duration_seconds)
        capped = reason is None and expires > now + flow.config.duration_seconds
        if capped:
            # A consent lasts DURATION at the most: given today, it would end then, so
            # no PHP token is good for longer (year 9999 is a broken or forged row).
            expires = now + flow.config.duration_seconds
        if reason is None and token in seen:
            reason = DUPLICATE
        if reason is None:
            seen.add(token)
            if dry_run:
                reason = ALREADY if flow.store.get(REFRESH_TOKEN, digest(token)) is not None else None
            elif not flow.tokens.import_refresh_token(token, points, expires):
                reason = ALREADY
        if reason is None:
            summary.imported += 1
            summary.capped += capped
        else:
            summary.skipped[reason] += 1
    return summary


def _check(row: Row, now: float, default_lifetime: int):
    """(reason to skip or None, token, usage points, expiry epoch)."""
    token = row.key[len(REFRESH_PREFIX) :]
    if not TOKEN.fullmatch(token):
        return BAD_TOKEN, None, None, None
    if row.expires is None:
        expires = now + default_lifetime  # PHP never expires it: give it one consent's lifetime
    else:
        try:
            expires = _epoch(row.expires)
        except ValueError:
            return BAD_EXPIRY, None, None, None
    if expires <= now:
        return EXPIRED, None, None, None
    value = row.value
    if not isinstance(value, str):
        return BAD_VALUE, None, None, None
    if row.serialized:
        try:
            value = php_string(value)
        except ValueError:
            return BAD_VALUE, None, None, None
    try:
        points = parse_usage_points(value)
    except ValueError:
        return BAD_POINTS, None, None, None
    return None, token, points, expires


# --- looking at the store


def stats(store: Store, now: float) -> dict[str, int]:
    chains = list(store.scan(CHAIN))
    live = [chain for _, chain in chains if not chain.get("revoked")]
    imported = sum(1 for key, chain in chains if key.startswith(IMPORTED_CHAIN_PREFIX) and not chain.get("revoked"))
    return {
        "pending_flows": sum(
            1 for _, flow in store.scan(FLOW) if flow.get("status") == PENDING and flow.get("code_expires", 0) > now
        ),
        "authorizations": len(live),
        "imported": imported,
        "revoked": len(chains) - len(live),
        "refresh_tokens": store.count(REFRESH_TOKEN),
        "access_tokens": store.count(ACCESS_TOKEN),
        "usage_points": len({point for chain in live for point in chain.get("usage_points", [])}),
        "enedis_calls_hour": recent(store, ENEDIS_CALLS, 3600, now),
        "enedis_calls_day": recent(store, ENEDIS_CALLS, DAY, now),
        "budget_waits_hour": recent(store, BUDGET_WAITS, 3600, now),
        "budget_waits_day": recent(store, BUDGET_WAITS, DAY, now),
    }


# --- revoking


def revoke_refresh_token(flow: DeviceFlow, refresh_token: str) -> list[str] | None:
    """Revoke the authorization a refresh token belongs to (every token rotated
    from the same consent, access tokens included); its usage points, or None
    when no live authorization has this token."""
    token = flow.store.get(REFRESH_TOKEN, digest(refresh_token)) if refresh_token else None
    chain = flow.store.get(CHAIN, token["chain"]) if token else None
    if chain is None or chain.get("revoked"):
        return None
    flow.tokens.revoke_chain(token["chain"])
    return chain["usage_points"]


def revoke_usage_point(flow: DeviceFlow, usage_point: str) -> list[list[str]]:
    """Revoke every live authorization covering a usage point; the usage points
    of each (an authorization may cover other meters too, which lose it as well)."""
    revoked = []
    for key, chain in flow.store.scan(CHAIN):
        if usage_point in chain.get("usage_points", []) and not chain.get("revoked"):
            flow.tokens.revoke_chain(key)
            revoked.append(chain["usage_points"])
    return revoked
