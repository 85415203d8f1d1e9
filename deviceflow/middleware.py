"""WSGI middleware in front of the Bottle apps: who the client is, headers Bottle can read, one log line.

Each one is a plain WSGI callable wrapping another, so that no code further in can be fooled by a forwarded
header, choke on a header value, or log a secret from a raw path.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from http.cookies import CookieError, SimpleCookie

access_log = logging.getLogger("deviceflow.access")
# A route sets this environ key to an answer's name (authorization_pending, slow_down) to have the request
# counted in the access log's summary line instead of logged on a line of its own.
SUMMARIZED = "deviceflow.summarized"
SUMMARY_EVERY = 60.0  # seconds
# The route template of a request answered outside Bottle (which sets `bottle.route`), for the access log.
PLAIN_ROUTE = "deviceflow.route"


def ascii_only(text: str) -> str:
    """Client text for a log line or an error description: printable ASCII, at most 64 characters."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:64]


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class ClientAddress:
    """WSGI middleware: the client address for limits and logs. X-Forwarded-For
    and -Proto are believed only from a peer in TRUSTED_PROXIES (then the
    right-most address not itself trusted is the client); otherwise they are
    deleted, so no code further in can be fooled by them."""

    def __init__(self, app, trusted: tuple):
        self.app = app
        self.trusted = trusted

    def _is_trusted(self, ip) -> bool:
        return ip is not None and any(ip in net for net in self.trusted)

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if self.trusted and forwarded and self._is_trusted(_ip(peer)):
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            client = peer
            for hop in reversed(hops):
                ip = _ip(hop)
                if ip is None:
                    break  # not written by a proxy: the last address believed stays the client
                client = hop
                if not self._is_trusted(ip):
                    break
            environ["REMOTE_ADDR"] = client
            proto = environ.get("HTTP_X_FORWARDED_PROTO", "").strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
        for name in ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_FORWARDED"):
            environ.pop(name, None)
        return self.app(environ, start_response)


class CleanHeaders:
    """WSGI middleware: header values Bottle would choke on are made harmless
    before it sees them. Bottle decodes headers as strict UTF-8 and its cookie
    parser raises on an illegal cookie name; neither may turn a request into a 500."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        for name, value in list(environ.items()):
            if name.startswith("HTTP_") and isinstance(value, str) and not value.isascii():  # ASCII is UTF-8
                environ[name] = _utf8_header(value)
        if environ.get("HTTP_COOKIE"):
            environ["HTTP_COOKIE"] = _legal_cookies(environ["HTTP_COOKIE"])
        return self.app(environ, start_response)


def _utf8_header(value: str) -> str:
    """A WSGI header string (bytes as latin-1) whose bytes are valid UTF-8; bad bytes become U+FFFD."""
    raw = value.encode("latin-1", "replace")
    return raw.decode("utf-8", "replace").encode("utf-8").decode("latin-1")


def _legal_cookies(header: str) -> str:
    """The Cookie header without the pieces the standard parser refuses."""
    try:
        SimpleCookie(header)
        return header
    except CookieError:
        pass
    kept = []
    for piece in header.split(";"):
        try:
            SimpleCookie(piece)
        except CookieError:
            continue
        kept.append(piece.strip())
    return "; ".join(kept)


class AccessLog:
    """WSGI middleware: one INFO line per request on `deviceflow.access` with
    the client address, method, route template (never the raw path or the
    query string, which carry codes and tokens), status and duration.

    Pending polls, the bulk of the traffic and all alike, are not logged one by one: a route marks them
    (SUMMARIZED) and they are counted, by answer, in one line at the first of them past SUMMARY_EVERY
    seconds since the previous line."""

    def __init__(self, app, clock=time.perf_counter, summary_clock=time.monotonic):
        self.app = app
        self.clock = clock
        self.summary_clock = summary_clock
        self._counts: dict[str, int] = {}
        self._since = summary_clock()
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        started = self.clock()
        status = []

        def recording_start_response(status_line, headers, exc_info=None):
            status.append(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            summarized = environ.get(SUMMARIZED)
            if summarized:
                self._summarize(summarized)
            else:
                route = environ.get("bottle.route")
                access_log.info(
                    "%s %s %s %s %.1fms",
                    environ.get("REMOTE_ADDR", "") or "-",
                    ascii_only(environ.get("REQUEST_METHOD", "")),
                    route.rule if route else environ.get(PLAIN_ROUTE, "-"),
                    status[-1] if status else "-",
                    (self.clock() - started) * 1000,
                )

    def _summarize(self, answer: str) -> None:
        with self._lock:
            self._counts[answer] = self._counts.get(answer, 0) + 1
            now = self.summary_clock()
            if now - self._since < SUMMARY_EVERY:
                return
            counts, since, self._counts, self._since = self._counts, self._since, {}, now
        access_log.info(
            "POST /device/token answered %s in the last %.0f s",
            ", ".join(f"{count} {name}" for name, count in sorted(counts.items())),
            now - since,
        )
