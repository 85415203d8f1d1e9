"""Limits counted in the store, so that every instance on it shares them.

- Calls per access token on /data/proxy (DATA_CALLS_PER_MINUTE within any
  60 s): a stolen token must not spend the outbound budget that every other
  device shares. The record is filed under the token's digest, never the token.
- Enedis's quota per API (ENEDIS_MAX_CALLS_PER_HOUR, 1,000 by Enedis's terms,
  besides the 5 a second): past it Enedis answers 429 for the rest of its
  window, to every device alike, so the proxy stops short of it without calling.
  An API is what DataHub subscribes an application to and what the quota is
  counted on: the first two segments of a path under DATA_ENDPOINT
  (`metering_data_clc/v5`, `mesure_synchrone_auto/v2`, `subscribed_services/v1`...).
  Calls are counted per minute and the last 61 minutes are added up, so no
  60 minutes ever hold more than the quota, whether Enedis counts from the
  top of the hour or over any 60 minutes.

Both answer the seconds to wait (take_quota with the minute it counted in):
0 when the call may go (and is counted), more when it may not (and is not
counted). No Bottle in here.
"""

from __future__ import annotations

import logging
import math

from deviceflow.store import Store

log = logging.getLogger("deviceflow.limits")

DATA_CALLS_KIND = "data_calls"  # + ":" + the token's digest
DATA_CALLS_FULL_KIND = "data_calls_full"
DATA_CALLS_WINDOW = 60
QUOTA_KIND = "quota"  # + ":" + the API
QUOTA_WARNED_KIND = "quota_warned"
MINUTE = 60
# A call counts for the rest of its minute and the 60 minutes after: then no
# 60 minutes hold more than the quota, whichever minute they start in.
QUOTA_MINUTES = 61
# A minute's counter lives until it has left the window, whenever its first call came.
QUOTA_RECORD_LIFETIME = (QUOTA_MINUTES + 1) * MINUTE
# The counter of calls counted in a minute but not made (refused, or no outbound slot).
NOT_MADE = "-not-made"


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


def data_call_wait(store: Store, token_digest: str, limit: int, now: float, who: str = "") -> int:
    """Count a /data/proxy call of the access token whose digest is given:
    0 when fewer than `limit` were counted within the last 60 s, else the
    seconds until one is (this call is then not counted).

    Each call takes one of `limit` slots, a record living 60 s that only an
    expired one can replace (`Store.add`): no 60 s ever hold more calls, and
    concurrent calls never wait on each other. Once all are taken, a record
    says so until the first one frees, so that a refused call costs one read."""
    full = store.get(DATA_CALLS_FULL_KIND, token_digest)
    if full is not None:
        return _seconds(full["until"] - now)
    kind = f"{DATA_CALLS_KIND}:{token_digest}"
    taken = dict(store.scan(kind))
    for slot in range(limit):
        if str(slot) not in taken and store.add(kind, str(slot), {"at": now}, DATA_CALLS_WINDOW):
            return 0
    taken = dict(store.scan(kind))  # the slots free at first were taken meanwhile
    until = min((value["at"] + DATA_CALLS_WINDOW for value in taken.values()), default=now)
    wait = _seconds(until - now)
    # One line per token and window, not one per refused call.
    if until > now and store.add(DATA_CALLS_FULL_KIND, token_digest, {"until": until}, until - now):
        log.warning(
            "an access token made %d data calls within %ds (DATA_CALLS_PER_MINUTE)%s: refused for %ds",
            limit,
            DATA_CALLS_WINDOW,
            f" from {who}" if who else "",
            wait,
        )
    return wait


def quota_api(path: str) -> str:
    """The Enedis API a path under DATA_ENDPOINT belongs to, as its quota counts it."""
    return "/".join(path.strip("/").split("/")[:2])


def take_quota(store: Store, api: str, per_hour: int, now: float) -> tuple[int, int]:
    """Count a call to `api` in the current minute: (minute, 0) when the
    counted minutes, this call included, hold at most `per_hour` calls made;
    (minute, seconds to the first minute with room) when not, and the call
    is counted as not made."""
    kind = f"{QUOTA_KIND}:{api}"
    minute = int(now // MINUTE)
    position = store.incr(kind, str(minute), QUOTA_RECORD_LIFETIME)
    asked, not_made = _counters(store, kind, minute)
    earlier = sum(count - not_made.get(m, 0) for m, count in asked.items() if m != minute)
    # This call's place in its minute, less the calls counted there but not made.
    if earlier + position - not_made.get(minute, 0) <= per_hour:
        return minute, 0
    give_back(store, api, minute)
    not_made[minute] = not_made.get(minute, 0) + 1
    made = {m: count - not_made.get(m, 0) for m, count in asked.items()}
    wait = _until_room(made, minute, per_hour, now)
    if store.add(QUOTA_WARNED_KIND, api, {}, QUOTA_MINUTES * MINUTE):
        log.warning(
            "Enedis quota reached for %s: %d calls within the last hour (ENEDIS_MAX_CALLS_PER_HOUR); "
            "calls to it are answered 429 without calling Enedis, for %ds",
            api,
            per_hour,
            wait,
        )
    return minute, wait


def give_back(store: Store, api: str, minute: int) -> None:
    """A call counted by `take_quota` in `minute` that was not made after all."""
    store.incr(f"{QUOTA_KIND}:{api}", f"{minute}{NOT_MADE}", QUOTA_RECORD_LIFETIME)


def _counters(store: Store, kind: str, minute: int) -> tuple[dict[int, int], dict[int, int]]:
    """Calls counted, and calls counted but not made, per minute of the window ending with `minute`."""
    asked: dict[int, int] = {}
    not_made: dict[int, int] = {}
    for key, count in store.scan(kind):
        number, _, suffix = key.partition("-")
        if number.isdigit() and minute - QUOTA_MINUTES < int(number) <= minute:
            (not_made if suffix else asked)[int(number)] = int(count)
    return asked, not_made


def _until_room(made: dict[int, int], minute: int, per_hour: int, now: float) -> int:
    """Seconds until the start of the first minute whose window holds fewer than `per_hour` calls made."""
    ahead = 1
    while sum(count for m, count in made.items() if m > minute + ahead - QUOTA_MINUTES) >= per_hour:
        ahead += 1  # ends: QUOTA_MINUTES ahead, no minute counted now is left
    return _seconds((minute + ahead) * MINUTE - now)
