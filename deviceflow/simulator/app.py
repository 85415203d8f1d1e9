"""`Simulator`: the simulated Enedis as one Bottle app, its parts wired to their routes."""

from __future__ import annotations

import functools
import logging
import secrets
import time

import bottle

from deviceflow.simulator import data_connect_2026, v5
from deviceflow.simulator.consent import ConsentPages
from deviceflow.simulator.control import KNOBS, ControlEndpoints, Knobs, failure_answer
from deviceflow.simulator.data_connect_2026 import DataConnect2026
from deviceflow.simulator.protocol import not_found, technical_error
from deviceflow.simulator.tokens import TokenEndpoints
from deviceflow.simulator.v5 import V5Apis

log = logging.getLogger(__package__)

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


class Simulator:
    """A simulated Enedis as one Bottle app, `app`; no module-level state: each keeps its own tokens and consents.

    Every Enedis route counts its calls (`calls`, by endpoint name) and may
    answer an injected failure instead (the `fail` knob); a data route first
    waits `delay` seconds when the caller holds a live token. Each knob of
    control.KNOBS reads and writes as an attribute (`simulator.delay = 2`).

    public_base: URL at which the browser sees the mount point (for pages).
    client_id: the only client id accepted by consent and token endpoints.
    client_secret: when not None, the secret that token requests must carry;
        None accepts any (or no) secret, as the demo has none.
    redirect_uri: the redirect URI "registered on DataHub", used when an
        authorize request carries none (real Enedis takes none).
    clock: seconds since the epoch; drives token expiry and "today".
    control_token: the bearer POST /_control needs; a random one when None.
    """

    def __init__(
        self,
        public_base: str,
        client_id: str = "deviceflow-demo",
        clock=time.time,
        *,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        control_token: str | None = None,
    ):
        self.public_base = public_base.rstrip("/")
        self.client_id = client_id
        self.clock = clock
        # Needed by POST /_control: printed by `serve --demo`, read from here by in-process tests.
        self.control_token = control_token or secrets.token_urlsafe(32)
        self.knobs = Knobs()
        self.calls = self.knobs.calls
        self.tokens = TokenEndpoints(client_id, client_secret, clock, self.knobs)
        self.consents = ConsentPages(self.public_base, client_id, redirect_uri, clock, self.tokens, self.knobs)
        self.v5_apis = V5Apis(clock, self.tokens, self.knobs)
        self.apis_2026 = DataConnect2026(clock, self.tokens, self.consents, self.knobs)
        self.control_endpoints = ControlEndpoints(self.knobs, self.control_token, self.tokens)
        self.app = bottle.Bottle()
        self._add_routes()

    def reset(self) -> None:
        """Knobs back to their defaults and counts to zero.

        Tokens, codes and consents stay: a running proxy keeps working.
        """
        self.knobs.reset()

    def _add_routes(self) -> None:
        route = self._route
        for version in ("v1", "v2"):
            path = f"/dataconnect/{version}/oauth2/authorize"
            route(path, f"authorize_{version}", functools.partial(self.consents.show, version))
            route(path, f"authorize_{version}_submit", functools.partial(self.consents.submit, version), "POST")
        for path in ("/subscribed_services/v1", "/subscribed_services/v1/"):
            route(path, "subscribed_services", self.apis_2026.subscribed_services, "POST", data=True)
        route("/oauth2/v3/token", "token_v3", self.tokens.token_v3, "POST")
        route("/v1/oauth2/token", "token_v1", self.tokens.token_v1, "POST")
        for path, (name, kind, direction) in v5.MEASURES.items():
            route(path, name, functools.partial(self.v5_apis.measure, kind, direction), data=True)
        for path, name in v5.CUSTOMERS.items():
            route(path, name, functools.partial(self.v5_apis.customer, name), data=True)
        for name, (kind, direction) in data_connect_2026.MEASURES.items():
            route(
                f"/mesure_synchrone_auto/v2/{name}",
                name,
                functools.partial(self.apis_2026.measure, kind, direction),
                data=True,
            )
        for name in data_connect_2026.CONTRACTS:
            route(f"/{name}/v1/<prm>", name, functools.partial(self.apis_2026.contract, name), data=True)
            # The PRM goes in the path; anything else is outside the Swagger.
            for path in (f"/{name}/v1", f"/{name}/v1/"):
                route(path, name, technical_error, data=True)
        # The knobs' own routes: neither counted nor failed.
        self.app.route("/_control", "POST", self.control_endpoints.control)
        self.app.route("/_stats", "GET", self.control_endpoints.stats)
        route("/<path:path>", "not_found", lambda path: not_found(), ALL_METHODS)

    def _route(self, path: str, name: str, handler, method="GET", data: bool = False) -> None:
        """Route an Enedis endpoint, counted as `name`; `data`: a data API, which the `delay` knob slows down."""

        def endpoint(**kwargs):
            self.knobs.count(name)
            # Only a caller with a live token waits: unauthenticated calls are
            # refused at once, so they cannot pile up sleeping threads.
            delay = self.knobs.delay
            if data and delay > 0 and self.tokens.holds_live_token():
                time.sleep(delay)
            path = self._relative_path()
            failure = self.knobs.take_failure(path)
            if failure is not None:
                answer = failure_answer(failure, path)
                log.info("simulator: %s -> injected %s", name, answer.status_code)
                return answer
            return handler(**kwargs)

        self.app.route(path, method, endpoint)

    def _relative_path(self) -> str:
        """The request's path below the mount point: mounted as a Bottle app, the routes see the parent's full path."""
        path = bottle.request.path
        prefix = self.app.config.get("_mount.prefix")
        if prefix and path.startswith(prefix):
            path = "/" + path[len(prefix) :]
        return path


def _knob_attribute(name: str) -> property:
    return property(
        lambda simulator: getattr(simulator.knobs, name),
        lambda simulator, value: setattr(simulator.knobs, name, value),
        doc=f"The `{name}` knob (control.KNOBS).",
    )


for _knob in KNOBS:
    setattr(Simulator, _knob.name, _knob_attribute(_knob.name))
del _knob
