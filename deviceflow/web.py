"""The web layer: the device API and the pages, two Bottle apps on one flow (and the token endpoint as plain
WSGI in front of them), behind the WSGI middleware.

Thin on purpose: routes parse input, call the flow (deviceflow.flow) and render; errors are data
(deviceflow.errors) that say their own status and headers. Programs (DEVICE_PREFIXES) always get JSON,
people always get a page, whatever goes wrong, Bottle's own errors included.
"""

from __future__ import annotations

import time

import bottle

from deviceflow.config import DEMO_PREFIX, Config
from deviceflow.device_api import DeviceApi, error_response, log_unexpected
from deviceflow.errors import (
    ApiError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServerError,
    StoreUnavailable,
    TemporarilyUnavailable,
)
from deviceflow.flow import DeviceFlow
from deviceflow.metrics import Metrics
from deviceflow.middleware import PLAIN_ROUTE, AccessLog, CleanHeaders, ClientAddress
from deviceflow.pages import Pages
from deviceflow.passthrough import Passthrough
from deviceflow.store import Store, open_store

# Paths whose callers are programs: their errors are JSON, never pages.
DEVICE_PREFIXES = ("/device/", "/data/", "/.well-known/", "/healthz")
# Bottle's own errors (no route, wrong method, body too large, a crash) as a device hears them.
FRAMEWORK_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: InvalidRequest,
    503: TemporarilyUnavailable,
}
# The same, as the page a person sees.
FRAMEWORK_PAGES = {400: "bad_request", 404: "not_found", 405: "bad_request", 413: "bad_request"}


class PlainRoutes:
    """WSGI: a few exact paths answered by plain WSGI applications, where Bottle's own work per request
    would be most of the answer's cost; every other request goes to Bottle."""

    def __init__(self, routes: dict, bottle_app):
        self.routes = routes
        self.bottle_app = bottle_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        app = self.routes.get(path)
        if app is None:
            return self.bottle_app(environ, start_response)
        environ[PLAIN_ROUTE] = path
        return app(environ, start_response)


class ProxyApp:
    """The whole proxy as one WSGI application, and what tools and tests reach through it: its
    configuration, store, flow and metrics, and the two Bottle apps (`device_api`, `pages`).

    The two apps' routes are merged into one router (`bottle`), each route keeping its own app's
    plugins; their URLs are the protocol's, so neither app lives under a prefix."""

    def __init__(self, config: Config, store: Store, flow: DeviceFlow, metrics: Metrics, simulator=None):
        self.config = config
        self.store = store
        self.flow = flow
        self.metrics = metrics
        self.device_api = DeviceApi(config, store, flow, metrics)
        self.pages = Pages(config, store, flow, metrics)
        self.bottle = bottle.Bottle()
        self.bottle.merge(self.device_api.app)
        self.bottle.merge(self.pages.app)
        for status in (400, 404, 405, 413, 500):
            self.bottle.error(status)(self.framework_error)
        if simulator is not None:
            self.bottle.mount(DEMO_PREFIX + "/", simulator.app)
        routes = PlainRoutes(self.device_api.plain_routes, self.bottle)
        access = AccessLog(routes, summary_clock=flow.clock)
        self.wsgi = ClientAddress(CleanHeaders(access), config.trusted_proxies)

    def __call__(self, environ, start_response):
        return self.wsgi(environ, start_response)

    def framework_error(self, error: bottle.HTTPError):
        """Bottle's own errors (unknown route, wrong method, crash): JSON for programs, a page for people."""
        status = error.status_code
        if error.exception is not None and not isinstance(error.exception, StoreUnavailable):
            route = bottle.request.environ.get("bottle.route")
            log_unexpected(bottle.request.method, route.rule if route else "-", error.exception)
        if isinstance(error.exception, StoreUnavailable):
            status = 503
        if bottle.request.path.startswith(DEVICE_PREFIXES):
            # Onto Bottle's own response, which keeps the headers of its error (Allow, for a 405).
            answer = error_response(FRAMEWORK_ERRORS.get(status, ServerError)())
            bottle.response.status = answer.status_code
            for name, value in answer.headerlist:
                bottle.response.set_header(name, value)
            return answer.body
        return self.pages.page("error", status=status, reason=FRAMEWORK_PAGES.get(status, "server"))


def make_app(
    config: Config,
    store: Store | None = None,
    upstream=None,
    simulator=None,
    clock=time.time,
    passthrough=None,
    metrics: Metrics | None = None,
) -> ProxyApp:
    """The WSGI application, with the trusted-proxy middleware in front.

    `passthrough` (the generic token-endpoint client) is built from the
    configuration unless given. Pass `metrics` to share it with the Enedis
    client; otherwise the app has its own."""
    store = store or open_store(config, clock)
    passthrough = passthrough or Passthrough(config)
    metrics = metrics or Metrics(store, clock)
    store.on_error = metrics.store_errors.inc
    flow = DeviceFlow(config, store, upstream, clock, passthrough=passthrough)
    return ProxyApp(config, store, flow, metrics, simulator)
