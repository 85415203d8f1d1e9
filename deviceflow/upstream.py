"""HTTP towards upstream (Enedis or a generic OAuth server): one pooled session,
timeouts on every call, no redirects, failures as small exceptions that know
the status the device should see.
"""

from __future__ import annotations

import logging

import requests
from requests.adapters import HTTPAdapter

from deviceflow import __version__
from deviceflow.config import Config

log = logging.getLogger("deviceflow.upstream")


class UpstreamError(Exception):
    """Upstream could not be used; `status` and `error` are what the device gets."""
    status = 502
    error = "upstream_unreachable"

    def __init__(self, description: str = "upstream is not reachable"):
        super().__init__(description)
        self.description = description

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


class UpstreamUnreachable(UpstreamError):
    status, error = 502, "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status, error = 504, "upstream_timeout"


class UpstreamBadAnswer(UpstreamError):
    """Upstream answered, but with something unusable (not JSON, wrong shape)."""
    status, error = 502, "upstream_error"


def make_session(config: Config, pool_size: int | None = None) -> requests.Session:
    """One session for the process: connections are pooled and kept alive, so no
    request pays a TCP and TLS set-up; sized for every worker thread at once."""
    session = requests.Session()
    size = pool_size or max(10, config.threads)
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"User-Agent": f"deviceflow/{__version__}", "Accept": "application/json"})
    session.trust_env = False  # no proxy or .netrc picked up from the host by surprise
    return session


def send(session: requests.Session, config: Config, method: str, url: str, **kwargs) -> requests.Response:
    """One upstream call with the configured timeouts and no redirect followed.
    Raises UpstreamTimeout / UpstreamUnreachable; the URL is logged without its query."""
    kwargs.setdefault("timeout", config.timeouts)
    kwargs.setdefault("allow_redirects", False)
    try:
        return session.request(method, url, **kwargs)
    except requests.Timeout:
        log.warning("upstream timeout: %s %s", method, url.split("?", 1)[0])
        raise UpstreamTimeout("upstream did not answer in time") from None
    except requests.RequestException as exc:
        log.warning("upstream unreachable: %s %s (%s)", method, url.split("?", 1)[0], type(exc).__name__)
        raise UpstreamUnreachable("upstream is not reachable") from None


def json_body(response: requests.Response) -> dict | list:
    """The JSON of an answer, or UpstreamBadAnswer (HTML error pages, truncated bodies)."""
    try:
        return response.json()
    except ValueError:
        raise UpstreamBadAnswer(f"upstream answered {response.status_code} with a body that is not JSON") from None
