"""HTTP towards upstream (Enedis or a generic OAuth server): one pooled session,
timeouts on every call, no redirects, failures as small exceptions that know
the status the device should see.

Every answer is untrusted input. It is read here, whole, before anyone looks
at it: at most MAX_ANSWER_BYTES, within an overall deadline (`answer_deadline`),
and its JSON is parsed in one place (`parse_json`), strictly and with a bounded
depth. Whatever else cannot make sense of an answer turns into
UpstreamBadAnswer through `understood`, never into a 500.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from contextlib import contextmanager

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from deviceflow import __version__
from deviceflow.config import Config
from deviceflow.errors import UpstreamBadAnswer, UpstreamTimeout, UpstreamUnreachable

log = logging.getLogger("deviceflow.upstream")

# The largest answer read (decoded, if compressed): past it the call is a 502.
# A year of 30-min load curve, the most a v5 or 2026 data API could ever send,
# is 1.7 MB (2.9 MB pretty-printed), measured from the simulator; Enedis serves
# at most 7 days of load curve (16 kB) per call.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024
# Enedis answers nest 5 levels at the most, token responses 2. Deeper JSON is
# refused, so that nothing that walks an answer afterwards can exhaust the stack.
MAX_JSON_DEPTH = 64
# An answer must be whole within the connect timeout plus this many read
# timeouts: the read timeout is per read, so an upstream dripping a byte at a
# time would otherwise hold a server thread for ever.
READ_TIMEOUTS_PER_ANSWER = 2
# What reading an answer of an unexpected shape raises; RecursionError is no ValueError.
UNREADABLE = (ValueError, LookupError, TypeError, AttributeError, RecursionError)


def loggable(value) -> str:
    """Upstream text (an answer, a redirect's parameter) for a log line: short, printable ASCII."""
    return re.sub(r"[^\x20-\x7e]", "?", str(value or ""))[:80]


def answer_deadline(config: Config) -> float:
    """Seconds an upstream call may take in all, its answer read to the end."""
    return config.upstream_connect_timeout + READ_TIMEOUTS_PER_ANSWER * config.upstream_read_timeout


# --- the deadline: a watchdog shuts the socket of a call that outlives it

_current = threading.local()


class _Watchdog:
    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._sock = None
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                _shut(self._sock)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None


def _shut(sock) -> None:
    """Wakes up a thread blocked reading `sock`; the plain socket's shutdown, so
    that a TLS socket's state is left to the thread reading it."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Watched:
    """A connection that hands its socket to the calling thread's watchdog
    before the answer is read: headers and body are both under the deadline."""

    def getresponse(self, *args, **kwargs):
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None and self.sock is not None:
            watchdog.watch(self.sock)
        return super().getresponse(*args, **kwargs)


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def make_session(config: Config, pool_size: int | None = None) -> requests.Session:
    """One session for the process: connections are pooled and kept alive, so no
    request pays a TCP and TLS set-up; sized for every worker thread at once."""
    session = requests.Session()
    size = pool_size or max(10, config.threads)
    adapter = _Adapter(pool_connections=4, pool_maxsize=size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"User-Agent": f"deviceflow/{__version__}", "Accept": "application/json"})
    session.trust_env = False  # no proxy or .netrc picked up from the host by surprise
    return session


def send(session: requests.Session, config: Config, method: str, url: str, **kwargs) -> requests.Response:
    """One upstream call with the configured timeouts and no redirect followed,
    its answer read whole (`response.content`) within MAX_ANSWER_BYTES and the
    deadline. Raises UpstreamTimeout / UpstreamUnreachable / UpstreamBadAnswer;
    the URL is logged without its query."""
    kwargs.setdefault("timeout", config.timeouts)
    kwargs.setdefault("allow_redirects", False)
    where = f"{method} {url.split('?', 1)[0]}"
    deadline = answer_deadline(config)
    watchdog = _current.watchdog = _Watchdog(deadline)
    try:
        response = session.request(method, url, stream=True, **kwargs)
        _read_whole(response, where)
        if watchdog.fired:  # a body cut short by the watchdog may look complete
            raise requests.Timeout()
        return response
    except requests.exceptions.ContentDecodingError:
        log.warning("upstream answer not decodable: %s", where)
        raise UpstreamBadAnswer("upstream answered a body that cannot be decoded") from None
    except requests.RequestException as exc:
        if watchdog.fired or isinstance(exc, requests.Timeout):
            log.warning(
                "upstream timeout: %s (%s)",
                where,
                f"not done within {deadline:g}s" if watchdog.fired else "silent past the read timeout",
            )
            raise UpstreamTimeout("upstream did not answer in time") from None
        log.warning("upstream unreachable: %s (%s)", where, type(exc).__name__)
        raise UpstreamUnreachable("upstream is not reachable") from None
    finally:
        watchdog.stop()
        _current.watchdog = None


def _read_whole(response: requests.Response, where: str) -> None:
    """Reads the body into `response.content`, or UpstreamBadAnswer past MAX_ANSWER_BYTES."""
    declared = response.headers.get("Content-Length", "")
    chunks, size = [], int(declared) if declared.isascii() and declared.isdigit() else 0
    if size <= MAX_ANSWER_BYTES:
        size = 0
        for chunk in response.iter_content(READ_CHUNK):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                break
            chunks.append(chunk)
    if size > MAX_ANSWER_BYTES:
        response.close()  # the rest is never read; the connection is not reused
        log.warning("upstream answer over %d bytes refused: %s", MAX_ANSWER_BYTES, where)
        raise UpstreamBadAnswer(f"upstream answered more than {MAX_ANSWER_BYTES // 2**20} MiB")
    response._content = b"".join(chunks)


# --- making sense of an answer


def parse_json(body: bytes | str) -> object:
    """An answer's JSON, strictly (UTF-8; no NaN, no Infinity; at most
    MAX_JSON_DEPTH deep), or UpstreamBadAnswer."""
    try:
        text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except UNREADABLE:  # RecursionError included: the parser itself gives up near 1,000 levels
        raise UpstreamBadAnswer("upstream answered a body that is not JSON") from None
    if not _shallow(value):
        raise UpstreamBadAnswer(f"upstream answered JSON nested over {MAX_JSON_DEPTH} levels")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("a number too large")  # 1e999
    return value


def _shallow(value) -> bool:
    """Whether `value` nests at most MAX_JSON_DEPTH deep: a walk that holds one
    iterator per level, never a list of the nodes (0.5 s for the worst answer
    under MAX_ANSWER_BYTES, a million empty objects; 10 ms for a year of load curve)."""
    if not isinstance(value, (dict, list)):
        return True
    stack = [iter(value.values() if isinstance(value, dict) else value)]
    while stack:
        for child in stack[-1]:
            if isinstance(child, (dict, list)):
                if len(stack) >= MAX_JSON_DEPTH:
                    return False
                stack.append(iter(child.values() if isinstance(child, dict) else child))
                break
        else:
            stack.pop()
    return True


def json_body(response: requests.Response) -> dict | list:
    """The JSON of an answer, or UpstreamBadAnswer (HTML error pages, truncated bodies)."""
    try:
        return parse_json(response.content)
    except UpstreamBadAnswer:
        raise UpstreamBadAnswer(f"upstream answered {response.status_code} with a body that is not JSON") from None


@contextmanager
def understood(what: str):
    """Whatever fails inside while reading an upstream answer (a missing key, a
    wrong type, a recursion) becomes UpstreamBadAnswer: a 502 for the device,
    and in `auto` a reason to ask v5."""
    try:
        yield
    except UNREADABLE as error:
        log.warning("%s: an upstream answer could not be understood (%s)", what, type(error).__name__)
        raise UpstreamBadAnswer(f"{what}: the answer could not be understood") from None
