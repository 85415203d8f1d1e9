"""The JSON API devices and programs call: the device flow's endpoints, the data proxy, metadata, health.

Every route answers JSON (RFC 6749 error bodies, `Cache-Control: no-store`) through one plugin
(`DeviceApiPlugin`): it applies the User-Agent gate where a route asks for it, turns any ApiError into
its answer, counts data calls, and serializes what a route returns. Routes only parse input and call
the flow. The token endpoint, which devices poll, is a plain WSGI application (`plain_routes`, served
before Bottle) that answers the same way at a fraction of the cost.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from http.client import responses as HTTP_REASONS

import bottle

from deviceflow import __version__, limits
from deviceflow.config import Config
from deviceflow.enedis import Answer, data_path
from deviceflow.errors import (
    ApiError,
    AuthorizationPending,
    InsufficientScope,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServerError,
    SlowDown,
    StoreUnavailable,
    TooManyRequests,
    UnsupportedGrantType,
    UpstreamUnreachable,
)
from deviceflow.flow import DeviceFlow
from deviceflow.flow.clients import check_client, check_user_agent
from deviceflow.flow.device_code_grant import DEVICE_CODE_GRANT
from deviceflow.flow.tokens import REFRESH_TOKEN_GRANT
from deviceflow.forms import bearer_token, client_address, query_params, raw_path, read_form
from deviceflow.metrics import Metrics
from deviceflow.middleware import SUMMARIZED, ascii_only
from deviceflow.resources import OPENAPI
from deviceflow.store import Store, digest

log = logging.getLogger("deviceflow.web")

DATA_PROXY_PREFIX = "/data/proxy/"
TOKEN_PATH = "/device/token"
VIA = f"1.1 deviceflow/{__version__}"
# Every JSON answer to a device; /data/proxy and /device/proxy too, whatever
# upstream's Content-Type (their bodies are checked to be UTF-8 JSON).
DEVICE_JSON = "application/json; charset=utf-8"


def log_unexpected(method: str, route: str, error: BaseException) -> None:
    """One ERROR line for an exception nothing foresaw: the route's template and the exception's name only
    (a raw path, or the exception's text, may carry a code or a token)."""
    log.error("unexpected error on %s %s: %s", ascii_only(method), route, type(error).__name__)


def json_response(body: dict, status: int = 200, headers: dict | None = None) -> bottle.HTTPResponse:
    return device_response(json.dumps(body), status, DEVICE_JSON, headers)


def device_headers(content_type: str, headers: dict | None = None) -> list[tuple[str, str]]:
    """The headers of any answer to a device: never cached (RFC 6749 §5.1)."""
    return [
        ("Content-Type", content_type),
        ("Cache-Control", "no-store"),
        ("Pragma", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
        *(headers or {}).items(),
    ]


def device_response(
    body: bytes | str, status: int, content_type: str, headers: dict | None = None
) -> bottle.HTTPResponse:
    """Any answer to a device, from a Bottle route."""
    return bottle.HTTPResponse(body, status=status, headers=device_headers(content_type, headers))


def error_response(error: ApiError) -> bottle.HTTPResponse:
    """The one place an error becomes an answer to a device: the error says its body, status and headers."""
    return json_response(error.body(), error.status, error.headers())


def data_response(answer: Answer) -> bottle.HTTPResponse:
    """An Enedis answer as the device gets it."""
    headers = {"Via": VIA, "X-Enedis-Proxy-Source": answer.source}
    if answer.retry_after:
        headers["Retry-After"] = str(answer.retry_after)
    return device_response(answer.body, answer.status, DEVICE_JSON, headers)


class DeviceApiPlugin:
    """What every device route shares. Route options: `user_agent_gate=True` checks VERSION_MIN before
    the route runs; `data_call=True` counts the answer on the data-call metric. A route returns a dict
    (sent as JSON), an Enedis Answer, or a ready response (an upstream answer handed over as it is);
    it raises an ApiError for anything else. Never a traceback."""

    name = "device_api"
    api = 2

    def __init__(self, config: Config, metrics: Metrics):
        self.config = config
        self.metrics = metrics

    def apply(self, callback, route):
        user_agent_gate = route.config.get("user_agent_gate", False)
        data_call = route.config.get("data_call", False)

        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            try:
                if user_agent_gate:
                    check_user_agent(self.config, bottle.request.get_header("User-Agent"))
                result = callback(*args, **kwargs)
            except ApiError as error:
                if data_call:
                    self.metrics.data_call(error.status)
                return error_response(error)
            if isinstance(result, Answer):
                self.metrics.data_call(result.status, result.source)
                return data_response(result)
            return result if isinstance(result, bottle.HTTPResponse) else json_response(result)

        return wrapper


class DeviceApi:
    """The device API's Bottle app over one flow."""

    def __init__(self, config: Config, store: Store, flow: DeviceFlow, metrics: Metrics):
        self.config = config
        self.store = store
        self.flow = flow
        self.metrics = metrics
        self.app = app = bottle.Bottle()
        app.uninstall(True)  # Bottle's JSON and template plugins: answers are built here, and they cost every request
        app.install(DeviceApiPlugin(config, metrics))
        app.post("/device/code", callback=self.device_code, user_agent_gate=True)
        # Answered before Bottle (deviceflow.web.PlainRoutes), each taking POST only.
        self.plain_routes = {TOKEN_PATH: self.token_endpoint}
        app.post("/device/proxy", callback=self.device_proxy)
        app.get(DATA_PROXY_PREFIX + "<path:path>", callback=self.data_proxy, data_call=True)
        app.get("/.well-known/oauth-authorization-server", callback=self.metadata)
        app.get("/healthz", callback=self.healthz)
        if config.metrics or config.metrics_token:
            app.get("/metrics", callback=self.metrics_exposition)
        app.get("/openapi.yaml", callback=self.openapi)

    def device_code(self):
        """The device authorization request (RFC 8628 §3.1)."""
        form = read_form(bottle.request.environ)
        codes = self.flow.authorization.issue_codes(
            form.get("client_id", ""),
            form.get("client_secret", ""),
            form.get("scope", ""),
            bottle.request.get_header("User-Agent", ""),
            address=client_address(),
        )
        self.metrics.flows.labels("started").inc()
        return codes

    def token_endpoint(self, environ, start_response):
        """The token endpoint, POST /device/token, as a plain WSGI application: the bulk of the traffic is
        devices polling, and Bottle's own work per request was half of a poll's. It answers as the routes
        of DeviceApiPlugin do: the User-Agent gate first, an ApiError as its JSON, never a traceback."""
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                raise MethodNotAllowed()  # described as Bottle's own 405 is (deviceflow.web.framework_error)
            check_user_agent(self.config, environ.get("HTTP_USER_AGENT"))
            status, body, headers = 200, self.token_request(environ), {}
        except MethodNotAllowed as error:
            status, body, headers = error.status, error.body(), {"Allow": "POST"}
        except ApiError as error:
            status, body, headers = error.status, error.body(), error.headers()
        except Exception as exc:  # what Bottle's crash handler would have caught: logged by name only
            log_unexpected("POST", TOKEN_PATH, exc)
            error = ServerError()
            status, body, headers = error.status, error.body(), {}
        data = json.dumps(body).encode()
        start_response(
            f"{status} {HTTP_REASONS.get(status, '')}".rstrip(),
            [*device_headers(DEVICE_JSON, headers), ("Content-Length", str(len(data)))],
        )
        # No body to HEAD (as Bottle did): waitress would send it, and a keep-alive client would read it
        # as the start of the next response.
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]

    def token_request(self, environ) -> dict:
        """The token request: the device_code grant (RFC 8628 §3.4) or the refresh_token grant."""
        form = read_form(environ)
        grant = form.get("grant_type", "")
        if grant == DEVICE_CODE_GRANT:
            try:
                with self.metrics.answer(self.metrics.polls):
                    tokens = self.flow.device_code_grant.poll(form.get("client_id", ""), form.get("device_code", ""))
            except (AuthorizationPending, SlowDown) as pending:
                environ[SUMMARIZED] = pending.error  # one access log line a minute for them all
                raise
            self.metrics.flows.labels("delivered").inc()
            return tokens
        if grant == REFRESH_TOKEN_GRANT:
            with self.metrics.answer(self.metrics.refreshes):
                return self.flow.tokens.refresh(
                    form.get("client_id", ""), form.get("refresh_token", ""), form.get("usage_points_id")
                )
        if not grant:
            raise InvalidRequest("grant_type is required")
        raise UnsupportedGrantType("grant_type must be the device_code or refresh_token grant")

    def device_proxy(self):
        """The pass-through refresh: upstream's own answer and status kept, always as JSON."""
        if not self.config.device_mode:  # no upstream token to refresh: never lend the secret
            raise NotFound("/device/proxy serves FLOW=DEVICE only")
        # After the mode: a server that has no such route says so to any client, however old.
        check_user_agent(self.config, bottle.request.get_header("User-Agent"))
        form = read_form(bottle.request.environ)
        client_id = check_client(self.config, form.get("client_id"))
        forwarded = self.flow.passthrough.forward_refresh(form, client_id)
        return device_response(forwarded.body, forwarded.status, DEVICE_JSON)

    def data_proxy(self, path):
        """Metering data of a usage point the token holds, fetched with the proxy's own Enedis token:
        a known v5 path, a token holding the usage point, then Enedis."""
        environ = bottle.request.environ
        if data_path(raw_path(environ), DATA_PROXY_PREFIX) != path:
            raise NotFound("no such Enedis data API")
        # After the path: an unknown API is a 404 to any client, however old.
        check_user_agent(self.config, bottle.request.get_header("User-Agent"))
        query = query_params(environ)
        bearer = bearer_token(bottle.request.get_header("Authorization"))
        token = self.flow.tokens.authenticate(bearer)
        limit = self.config.data_calls_per_minute
        wait = limits.data_call_wait(self.store, digest(bearer), limit, self.flow.clock(), client_address())
        if wait:
            raise TooManyRequests(
                f"more than {limit} data calls within 60 s with this access token, retry later", retry_after=wait
            )
        usage_point = query.get("usage_point_id")
        if not usage_point:
            raise InvalidRequest("usage_point_id is required")
        if usage_point not in token["usage_points"]:
            raise InsufficientScope("this usage point is not covered by the access token")
        fetch_v5 = getattr(self.flow.upstream, "fetch_v5", None)
        if fetch_v5 is None:
            raise UpstreamUnreachable("no Enedis client is configured")
        return fetch_v5(path, query)

    def metadata(self):
        """Authorization server metadata (RFC 8414)."""
        base = self.config.base_url
        return {
            "issuer": base,
            "device_authorization_endpoint": f"{base}/device/code",
            "token_endpoint": f"{base}/device/token",
            "grant_types_supported": [DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["none"],
            "service_documentation": f"{base}/",
        }

    def healthz(self):
        body = {
            "status": "ok",
            "version": __version__,
            "store": self.config.db_type,
            "flow": "device" if self.config.device_mode else "client_credentials",
            "authorize_version": self.config.enedis_authorize_version,
            "api_mode": self.config.enedis_api_mode,
            "demo": self.config.demo,
        }
        try:
            self.store.ping()
        except StoreUnavailable:
            return json_response({**body, "status": "unavailable"}, 503)
        return body

    def metrics_exposition(self):
        """Prometheus text format; with METRICS_TOKEN, only for `Authorization: Bearer <token>`."""
        token = self.config.metrics_token
        if token and not hmac.compare_digest(
            bottle.request.get_header("Authorization", "").encode(), f"Bearer {token}".encode()
        ):
            return json_response(
                {"error": "invalid_token", "error_description": "metrics need the token"},
                401,
                {"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        body, content_type = self.metrics.exposition()
        return bottle.HTTPResponse(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    def openapi(self):
        """The OpenAPI 3 description of the JSON endpoints."""
        return bottle.static_file(OPENAPI.name, root=str(OPENAPI.parent), mimetype="application/yaml")
