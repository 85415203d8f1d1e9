"""The web routes: parse input, call the flow, render. Thin on purpose.

Device routes answer JSON (RFC 6749 error bodies, `Cache-Control: no-store`);
browser routes answer pages. Bottle's conveniences that do not fit are
avoided: its form parser (it takes any body and keeps the last of repeated
parameters), `redirect()` (303, built from the Host header) and
`remote_addr` (believes any X-Forwarded-For).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import secrets
import time
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import bottle

from deviceflow import __version__, limits
from deviceflow.config import Config
from deviceflow.enedis import data_path
from deviceflow.errors import (ApiError, InsufficientScope, InvalidRequest, MethodNotAllowed, NotFound, PageError,
                               ServerError, StoreUnavailable, TemporarilyUnavailable, TooManyRequests,
                               UnsupportedGrantType, UpstreamUnreachable)
from deviceflow.flow import DeviceFlow
from deviceflow.flow.clients import check_client, check_user_agent
from deviceflow.flow.device_authorization import format_user_code
from deviceflow.flow.device_code_grant import DEVICE_CODE_GRANT
from deviceflow.flow.tokens import REFRESH_TOKEN_GRANT
from deviceflow.metrics import Metrics
from deviceflow.passthrough import Passthrough
from deviceflow.store import Store, digest, open_store
from deviceflow.texts import TEXTS, pick_language, spell_duration

log = logging.getLogger("deviceflow.web")
access_log = logging.getLogger("deviceflow.access")

MAX_BODY = 64 * 1024
MAX_VALUE = 4096
BROWSER_COOKIE = "deviceflow_browser"
LANG_COOKIE = "deviceflow_lang"
# Paths whose callers are programs: their errors are JSON, never pages.
DEVICE_PREFIXES = ("/device/", "/data/", "/.well-known/", "/healthz")
DATA_PROXY_PREFIX = "/data/proxy/"
VIA = f"1.1 deviceflow/{__version__}"
# Every JSON answer to a device; /data/proxy and /device/proxy too, whatever
# upstream's Content-Type (their bodies are checked to be UTF-8 JSON).
DEVICE_JSON = "application/json; charset=utf-8"
# Where Enedis sends the person back: the query (state) is single use, so the
# page shown there is kept a while for its language switch to show it again.
RETURN_PREFIX = "/auth/redirect"
SHOWN_LIFETIME = 15 * 60


def _resource_dir(name: str) -> Path:
    """views/, static/ and openapi.yaml sit beside the package in a wheel, at the repository root in a clone."""
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.exists():
            return candidate
    raise RuntimeError(f"{name} not found next to the deviceflow package")


VIEWS = _resource_dir("views")
STATIC = _resource_dir("static")
OPENAPI = _resource_dir("openapi.yaml")


# --- input

def read_form(environ) -> dict[str, str]:
    """The urlencoded body of a device request, strictly: one value per name,
    UTF-8, no control characters, at most 64 KiB."""
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidRequest("bad Content-Length") from None
    if length > MAX_BODY:
        raise InvalidRequest("request body over 64 KiB")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    if body and content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    return parse_pairs(body, "body")


def parse_pairs(raw: bytes | str, where: str) -> dict[str, str]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest(f"the {where} is not valid UTF-8 form data") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidRequest(f"parameter {ascii_only(name)} is repeated")
        if len(value) > MAX_VALUE or len(name) > 256:
            raise InvalidRequest(f"parameter {ascii_only(name)} is too long")
        if any(c in value or c in name for c in "\x00\r\n"):
            raise InvalidRequest(f"parameter {ascii_only(name)} holds control characters")
        form[name] = value
    return form


def query_params(environ) -> dict[str, str]:
    return parse_pairs(environ.get("QUERY_STRING", ""), "query string")


def raw_path(environ) -> str:
    """The request path as the client sent it. PATH_INFO is already decoded
    (waitress turns %2F into / and %2e into .), so the raw target is read
    from REQUEST_URI (waitress) or RAW_URI (gunicorn) when the server gives it."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw is None:
        return environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return raw.split("?", 1)[0]


def bearer_token(header: str | None) -> str | None:
    scheme, _, token = (header or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def ascii_only(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:64]


# --- output

def json_response(body: dict, status: int = 200, headers: dict | None = None) -> bottle.HTTPResponse:
    return device_response(json.dumps(body), status, DEVICE_JSON, headers)


def device_response(body: bytes | str, status: int, content_type: str,
                    headers: dict | None = None) -> bottle.HTTPResponse:
    """Any answer to a device: never cached (RFC 6749 §5.1)."""
    response = bottle.HTTPResponse(body, status=status, headers=headers or {})
    response.set_header("Content-Type", content_type)
    response.set_header("Cache-Control", "no-store")
    response.set_header("Pragma", "no-cache")
    response.set_header("X-Content-Type-Options", "nosniff")
    return response


def data_response(answer) -> bottle.HTTPResponse:
    """An Enedis answer (deviceflow.enedis.Answer) as the device gets it."""
    headers = {"Via": VIA, "X-Enedis-Proxy-Source": answer.source}
    if answer.retry_after:
        headers["Retry-After"] = str(answer.retry_after)
    return device_response(answer.body, answer.status, DEVICE_JSON, headers)


def error_response(error: ApiError) -> bottle.HTTPResponse:
    """The one place an error becomes an answer to a device: the error says its body, status and headers."""
    return json_response(error.body(), error.status, error.headers())


# Bottle's own errors (no route, wrong method, body too large, a crash) as a device hears them.
FRAMEWORK_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequest, 404: NotFound, 405: MethodNotAllowed, 413: InvalidRequest, 503: TemporarilyUnavailable,
}
# The same, as the page a person sees.
FRAMEWORK_PAGES = {400: "bad_request", 404: "not_found", 405: "bad_request", 413: "bad_request"}


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
            if name.startswith("HTTP_") and isinstance(value, str):
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
    query string, which carry codes and tokens), status and duration."""

    def __init__(self, app, clock=time.perf_counter):
        self.app = app
        self.clock = clock

    def __call__(self, environ, start_response):
        started = self.clock()
        status = []

        def recording_start_response(status_line, headers, exc_info=None):
            status.append(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            route = environ.get("bottle.route")
            access_log.info("%s %s %s %s %.1fms", environ.get("REMOTE_ADDR", "") or "-",
                            ascii_only(environ.get("REQUEST_METHOD", "")), route.rule if route else "-",
                            status[-1] if status else "-", (self.clock() - started) * 1000)


class Web:
    """The Bottle application and the few things its routes share."""

    def __init__(self, config: Config, store: Store, flow: DeviceFlow, metrics: Metrics | None = None):
        self.config = config
        self.store = store
        self.flow = flow
        self.metrics = metrics or Metrics()
        self.secure_cookies = config.base_url.startswith("https://")
        authorize = urlsplit(config.authorization_endpoint)
        self.csp = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
                    f"form-action 'self' {authorize.scheme}://{authorize.netloc}; "
                    "frame-ancestors 'none'; base-uri 'none'")
        self.templates: dict[str, bottle.SimpleTemplate] = {}
        self.app = bottle.Bottle()
        self.app.config["json.enable"] = False
        self._routes()

    # --- helpers shared by the routes

    def device_route(self, handler):
        """JSON in and out, errors as RFC 6749 bodies, never a traceback."""
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            try:
                result = handler(*args, **kwargs)
                # A ready response (an upstream answer handed over as it is) goes out untouched.
                return result if isinstance(result, bottle.HTTPResponse) else json_response(result)
            except ApiError as error:
                return error_response(error)
        return wrapper

    def language(self) -> str:
        request = bottle.request
        query_lang = request.query.get("lang")
        lang = pick_language(query_lang, request.get_cookie(LANG_COOKIE), request.get_header("Accept-Language"))
        if query_lang == lang:
            self.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400)
        return lang

    def set_cookie(self, name, value, max_age):
        bottle.response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                                   secure=self.secure_cookies)

    def browser_id(self, create: bool = False) -> str:
        value = bottle.request.get_cookie(BROWSER_COOKIE) or ""
        if (not value or len(value) > 64) and create:
            value = secrets.token_urlsafe(24)
            self.set_cookie(BROWSER_COOKIE, value, max_age=86400)
        return value

    def page(self, name: str, status: int = 200, **values) -> str:
        lang = self.language()
        bottle.response.status = status
        self.page_headers(bottle.response)
        path = bottle.request.path
        template = self.templates.get(name)
        if template is None:  # compiled once, then reused by every request
            template = self.templates[name] = bottle.SimpleTemplate(name=name, lookup=[str(VIEWS)])
        other_lang = "en" if lang == "fr" else "fr"
        return template.render(t=TEXTS[lang], lang=lang, demo=self.config.demo, config=self.config, path=path,
                               other_lang=other_lang, switch_href=self.language_switch(other_lang),
                               spell=lambda seconds: spell_duration(seconds, lang),
                               operator_href=contact_href(self.config.operator_contact), **values)

    def language_switch(self, lang: str) -> str:
        """The same page in the other language: a GET keeps its query (the code
        being confirmed); a POST, or the single-use way back from Enedis, does not."""
        request = bottle.request
        keep = request.method == "GET" and not request.path.startswith(RETURN_PREFIX)
        params = [(name, value) for name, value in parse_qsl(request.query_string, keep_blank_values=True)
                  if keep and name != "lang"]
        return f"{self.config.base_url}{request.path}?{urlencode(params + [('lang', lang)])}"

    def shown_page(self, name: str, status: int = 200, **values) -> str:
        """A page of the way back from Enedis, kept for this browser so that the
        language switch can show it again without replaying the state."""
        browser = self.browser_id()
        if browser:
            try:
                self.store.put("shown", digest(browser), {"name": name, "status": status, "values": values},
                               SHOWN_LIFETIME)
            except StoreUnavailable:
                pass  # the page itself matters more than its second showing
        return self.page(name, status=status, **values)

    def page_headers(self, response):
        response.set_header("Content-Type", "text/html; charset=utf-8")
        response.set_header("Content-Security-Policy", self.csp)
        response.set_header("X-Frame-Options", "DENY")
        response.set_header("Referrer-Policy", "no-referrer")
        response.set_header("X-Content-Type-Options", "nosniff")
        response.set_header("Cache-Control", "no-store")

    def error_page(self, error: PageError, show=None) -> str:
        for name, value in error.headers().items():
            bottle.response.set_header(name, value)
        return (show or self.page)("error", status=error.status, reason=error.reason, wait=error.retry_after)

    def redirect(self, url: str) -> bottle.HTTPResponse:
        response = bottle.HTTPResponse(status=302)
        response.set_header("Location", url)
        self.page_headers(response)
        return response

    @staticmethod
    def client_address() -> str:
        return bottle.request.environ.get("REMOTE_ADDR", "") or "unknown"

    # --- the routes, in the order of the protocol

    def _routes(self):
        app, flow = self.app, self.flow
        device = self.device_route

        @app.get("/")
        def home():
            return self.page("home")

        @app.post("/device/code")
        @device
        def device_code():
            check_user_agent(self.config, bottle.request.get_header("User-Agent"))
            form = read_form(bottle.request.environ)
            codes = flow.authorization.issue_codes(form.get("client_id", ""), form.get("client_secret", ""),
                                                 form.get("scope", ""), bottle.request.get_header("User-Agent", ""),
                                                 address=self.client_address())
            self.metrics.flows.labels("started").inc()
            return codes

        @app.get("/device")
        @app.get("/auth/verify_code")
        def device_page():
            """Show the code to confirm; following a link never starts the consent (RFC 8628 §5.4)."""
            try:
                params = query_params(bottle.request.environ)
            except InvalidRequest:
                return self.error_page(PageError("bad_request"))
            typed = params.get("code") or params.get("user_code") or ""
            state = params.get("state", "")
            if not typed:
                return self.page("device", pending=None, typed="", state=state, error=None)
            return self.confirm_page(typed, state)

        @app.post("/auth/verify_code")
        @app.post("/device")
        def verify_code():
            try:
                form = read_form(bottle.request.environ)
            except InvalidRequest:
                return self.error_page(PageError("bad_request"))
            typed, state = form.get("user_code", ""), form.get("state", "")
            if not form.get("csrf"):
                return self.confirm_page(typed, state)  # the code-entry form: show the confirmation
            try:
                pending = flow.verification.find_pending(typed, self.client_address())
                flow.verification.check_csrf(self.browser_id(), pending.user_code, form.get("csrf", ""))
                return self.redirect(flow.consent.consent_url(pending, self.browser_id(), state))
            except PageError as error:
                return self.code_entry_page(error, typed, state)

        @app.get("/auth/redirect")
        @app.get("/auth/redirect/<anything:path>")
        @app.get("/auth/redirect_parent")
        def auth_redirect(anything=None):
            try:
                params = query_params(bottle.request.environ)
            except InvalidRequest:
                return self.error_page(PageError("bad_request"))
            browser = self.browser_id()
            if set(params) <= {"lang"} and browser:  # the language switch of a page shown here
                shown = self.store.get("shown", digest(browser))
                if shown:
                    return self.page(shown["name"], status=shown["status"], **shown["values"])
            try:
                approved = flow.consent.finish(params, browser, self.client_address())
            except PageError as error:
                self.metrics.flows.labels("denied" if error.reason == "denied" else "failed").inc()
                return self.error_page(error, show=self.shown_page)
            self.metrics.flows.labels("approved").inc()
            return self.shown_page("done", usage_points=approved.get("usage_points") or [],
                                   application=approved.get("application") or "")

        @app.post("/device/token")
        @device
        def device_token():
            check_user_agent(self.config, bottle.request.get_header("User-Agent"))
            form = read_form(bottle.request.environ)
            grant = form.get("grant_type", "")
            if grant == DEVICE_CODE_GRANT:
                with self.metrics.answer(self.metrics.polls):
                    tokens = flow.device_code_grant.poll(form.get("client_id", ""), form.get("device_code", ""))
                self.metrics.flows.labels("delivered").inc()
                return tokens
            if grant == REFRESH_TOKEN_GRANT:
                with self.metrics.answer(self.metrics.refreshes):
                    return flow.tokens.refresh(form.get("client_id", ""), form.get("refresh_token", ""),
                                               form.get("usage_points_id"))
            if not grant:
                raise InvalidRequest("grant_type is required")
            raise UnsupportedGrantType("grant_type must be the device_code or refresh_token grant")

        @app.post("/device/proxy")
        @device
        def device_proxy():
            """The pass-through refresh: upstream's own answer and status kept, always as JSON."""
            if not self.config.device_mode:  # no upstream token to refresh: never lend the secret
                raise NotFound("/device/proxy serves FLOW=DEVICE only")
            check_user_agent(self.config, bottle.request.get_header("User-Agent"))
            form = read_form(bottle.request.environ)
            client_id = check_client(self.config, form.get("client_id"))
            forwarded = flow.passthrough.forward_refresh(form, client_id)
            return device_response(forwarded.body, forwarded.status, DEVICE_JSON)

        @app.get(DATA_PROXY_PREFIX + "<path:path>")
        @device
        def data_proxy(path):
            """Metering data of a usage point the token holds, fetched with the proxy's own Enedis token."""
            try:
                answer = self.fetch_data(path)
            except ApiError as error:
                self.metrics.data_call(error.status)
                raise
            self.metrics.data_call(answer.status, answer.source)
            return data_response(answer)

        @app.get("/.well-known/oauth-authorization-server")
        def metadata():
            base = self.config.base_url
            return json_response({
                "issuer": base,
                "device_authorization_endpoint": f"{base}/device/code",
                "token_endpoint": f"{base}/device/token",
                "grant_types_supported": [DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT],
                "response_types_supported": ["code"],
                "token_endpoint_auth_methods_supported": ["none"],
                "service_documentation": f"{base}/",
            })

        @app.get("/healthz")
        def healthz():
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
            return json_response(body)

        if self.config.metrics or self.config.metrics_token:
            @app.get("/metrics")
            def metrics():
                """Prometheus text format; with METRICS_TOKEN, only for `Authorization: Bearer <token>`."""
                token = self.config.metrics_token
                if token and not hmac.compare_digest(bottle.request.get_header("Authorization", "").encode(),
                                                     f"Bearer {token}".encode()):
                    return json_response({"error": "invalid_token", "error_description": "metrics need the token"},
                                         401, {"WWW-Authenticate": 'Bearer realm="metrics"'})
                body, content_type = self.metrics.exposition()
                return bottle.HTTPResponse(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

        @app.get("/openapi.yaml")
        def openapi():
            """The OpenAPI 3 description of the JSON endpoints."""
            return bottle.static_file(OPENAPI.name, root=str(OPENAPI.parent), mimetype="application/yaml")

        @app.get("/static/<name:path>")
        def static(name):
            return bottle.static_file(name, root=str(STATIC))

        for status in (400, 404, 405, 413, 500):
            app.error(status)(self.framework_error)

    def fetch_data(self, path: str):
        """/data/proxy: a known v5 path, a token holding the usage point, then Enedis."""
        environ = bottle.request.environ
        if data_path(raw_path(environ), DATA_PROXY_PREFIX) != path:
            raise NotFound("no such Enedis data API")
        check_user_agent(self.config, bottle.request.get_header("User-Agent"))
        query = query_params(environ)
        bearer = bearer_token(bottle.request.get_header("Authorization"))
        token = self.flow.tokens.authenticate(bearer)
        limit = self.config.data_calls_per_minute
        wait = limits.data_call_wait(self.store, digest(bearer), limit, self.flow.clock(), self.client_address())
        if wait:
            raise TooManyRequests(f"more than {limit} data calls within 60 s with this access token, retry later",
                                  retry_after=wait)
        usage_point = query.get("usage_point_id")
        if not usage_point:
            raise InvalidRequest("usage_point_id is required")
        if usage_point not in token["usage_points"]:
            raise InsufficientScope("this usage point is not covered by the access token")
        fetch_v5 = getattr(self.flow.upstream, "fetch_v5", None)
        if fetch_v5 is None:
            raise UpstreamUnreachable("no Enedis client is configured")
        return fetch_v5(path, query)

    def confirm_page(self, typed: str, state: str):
        try:
            pending = self.flow.verification.find_pending(typed, self.client_address())
        except PageError as error:
            return self.code_entry_page(error, typed, state)
        except StoreUnavailable:
            return self.error_page(PageError("server", 503))
        csrf = self.flow.verification.csrf_token(self.browser_id(create=True), pending.user_code)
        return self.page("device", pending=pending, code=format_user_code(pending.user_code), typed=typed,
                         state=state, csrf=csrf, error=None)

    def code_entry_page(self, error: PageError, typed: str, state: str):
        """The code-entry form again, with what went wrong; past the guessing limit, only the wait."""
        if error.status == 429:
            return self.error_page(error)
        for name, value in error.headers().items():
            bottle.response.set_header(name, value)
        return self.page("device", status=error.status, pending=None, typed=typed, state=state, error=error.reason)

    def framework_error(self, error: bottle.HTTPError):
        """Bottle's own errors (unknown route, wrong method, crash): JSON for
        programs, a page for people."""
        status = error.status_code
        if error.exception is not None and not isinstance(error.exception, StoreUnavailable):
            route = bottle.request.environ.get("bottle.route")  # the template: a raw path may carry a code
            log.error("unexpected error on %s %s: %s", ascii_only(bottle.request.method), route.rule if route else "-",
                      type(error.exception).__name__)
        if isinstance(error.exception, StoreUnavailable):
            status = 503
        if bottle.request.path.startswith(DEVICE_PREFIXES):
            # Onto Bottle's own response, which keeps the headers of its error (Allow, for a 405).
            answer = error_response(FRAMEWORK_ERRORS.get(status, ServerError)())
            bottle.response.status = answer.status_code
            for name, value in answer.headerlist:
                bottle.response.set_header(name, value)
            return answer.body
        return self.page("error", status=status, reason=FRAMEWORK_PAGES.get(status, "server"))


def contact_href(contact: str) -> str:
    """A link for the operator's contact when it is an e-mail address or a web address."""
    if contact.startswith(("https://", "http://")):
        return contact
    if "@" in contact and ":" not in contact and " " not in contact.strip():
        return "mailto:" + contact.strip()
    return ""


def make_app(config: Config, store: Store | None = None, upstream=None, simulator=None, clock=time.time,
             passthrough=None, metrics: Metrics | None = None):
    """The WSGI application, with the trusted-proxy middleware in front.

    `passthrough` (the generic token-endpoint client) is built from the
    configuration unless given. Pass `metrics` to share it with the Enedis
    client; otherwise the app has its own."""
    store = store or open_store(config, clock)
    passthrough = passthrough or Passthrough(config)
    metrics = metrics or Metrics(store, clock)
    store.on_error = metrics.store_errors.inc
    flow = DeviceFlow(config, store, upstream, clock, passthrough=passthrough)
    web = Web(config, store, flow, metrics)
    if simulator is not None:
        from deviceflow.config import DEMO_PREFIX
        web.app.mount(DEMO_PREFIX + "/", simulator.app)
    wsgi = ClientAddress(CleanHeaders(AccessLog(web.app)), config.trusted_proxies)
    wsgi.web = web  # tests and tools reach the flow and the store through it
    return wsgi
