"""The pages a person sees: the home page, the user code entry and confirmation, the way back from Enedis.

Pages are rendered from views/ with the texts of the person's language (deviceflow.texts). Every page is
sent with a strict Content-Security-Policy and never cached. Bottle's `redirect()` is not used: it answers
303 and builds the URL from the Host header.
"""

from __future__ import annotations

import functools
from urllib.parse import parse_qsl, urlencode, urlsplit

import bottle

from deviceflow import randomness
from deviceflow.config import Config
from deviceflow.errors import InvalidRequest, PageError, StoreUnavailable
from deviceflow.flow import DeviceFlow
from deviceflow.flow.device_authorization import format_user_code
from deviceflow.forms import client_address, query_params, read_form
from deviceflow.metrics import Metrics
from deviceflow.resources import STATIC, VIEWS
from deviceflow.store import Store, digest
from deviceflow.texts import TEXTS, pick_language, spell_duration

BROWSER_COOKIE = "deviceflow_browser"
LANG_COOKIE = "deviceflow_lang"
# Where Enedis sends the person back: the query (state) is single use, so the
# page shown there is kept a while for its language switch to show it again.
RETURN_PREFIX = "/auth/redirect"
SHOWN_LIFETIME = 15 * 60
SHOWN_PAGE = "shown"  # store kind: the page shown on the way back, by the browser cookie's digest


class Pages:
    """The pages' Bottle app over one flow."""

    def __init__(self, config: Config, store: Store, flow: DeviceFlow, metrics: Metrics):
        self.config = config
        self.store = store
        self.flow = flow
        self.metrics = metrics
        self.secure_cookies = config.base_url.startswith("https://")
        authorize = urlsplit(config.authorization_endpoint)
        self.csp = (
            "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
            f"form-action 'self' {authorize.scheme}://{authorize.netloc}; "
            "frame-ancestors 'none'; base-uri 'none'"
        )
        self.templates: dict[str, bottle.SimpleTemplate] = {}
        self.app = app = bottle.Bottle()
        app.uninstall(True)  # Bottle's JSON and template plugins: answers are built here, and they cost every request
        app.get("/", callback=self.home)
        app.get("/device", callback=self.device_page)
        app.get("/auth/verify_code", callback=self.device_page)
        app.post("/auth/verify_code", callback=self.verify_code)
        app.post("/device", callback=self.verify_code)
        for rule in (RETURN_PREFIX, RETURN_PREFIX + "/<anything:path>", "/auth/redirect_parent"):
            app.get(rule, callback=self.auth_redirect)
        app.get("/static/<name:path>", callback=self.static)
        app.install(self.store_down_page)

    def store_down_page(self, callback):
        """Plugin: a store that fails midway through a page is the "try again later" page (503), the
        same for every route, rather than Bottle's crash handler and its traceback in the log."""

        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except StoreUnavailable:
                return self.error_page(PageError("server", 503))

        return wrapper

    # --- the routes, in the order of the protocol

    def home(self):
        return self.page("home")

    def device_page(self):
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

    def verify_code(self):
        """The code-entry form (no CSRF token yet: show the confirmation) or the confirmation (to Enedis)."""
        try:
            form = read_form(bottle.request.environ)
        except InvalidRequest:
            return self.error_page(PageError("bad_request"))
        typed, state = form.get("user_code", ""), form.get("state", "")
        if not form.get("csrf"):
            return self.confirm_page(typed, state)
        try:
            pending = self.flow.verification.find_pending(typed, client_address())
            self.flow.verification.check_csrf(self.browser_id(), pending.user_code, form.get("csrf", ""))
            return self.redirect(self.flow.consent.consent_url(pending, self.browser_id(), state))
        except PageError as error:
            return self.code_entry_page(error, typed, state)

    def auth_redirect(self, anything=None):
        """Enedis sends the person back here with the outcome of the consent."""
        try:
            params = query_params(bottle.request.environ)
        except InvalidRequest:
            return self.error_page(PageError("bad_request"))
        browser = self.browser_id()
        if set(params) <= {"lang"} and browser:  # the language switch of a page shown here
            shown = self.store.get(SHOWN_PAGE, digest(browser))
            if shown:
                return self.page(shown["name"], status=shown["status"], **shown["values"])
        try:
            approved = self.flow.consent.finish(params, browser, client_address())
        except PageError as error:
            self.metrics.flows.labels("denied" if error.reason == "denied" else "failed").inc()
            return self.error_page(error, show=self.shown_page)
        self.metrics.flows.labels("approved").inc()
        return self.shown_page(
            "done", usage_points=approved.get("usage_points") or [], application=approved.get("application") or ""
        )

    def static(self, name):
        return bottle.static_file(name, root=str(STATIC))

    # --- what the routes share

    def language(self) -> str:
        request = bottle.request
        query_lang = request.query.get("lang")
        lang = pick_language(query_lang, request.get_cookie(LANG_COOKIE), request.get_header("Accept-Language"))
        if query_lang == lang:
            self.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400)
        return lang

    def set_cookie(self, name, value, max_age):
        bottle.response.set_cookie(
            name, value, max_age=max_age, path="/", httponly=True, samesite="lax", secure=self.secure_cookies
        )

    def browser_id(self, create: bool = False) -> str:
        value = bottle.request.get_cookie(BROWSER_COOKIE) or ""
        if (not value or len(value) > 64) and create:
            value = randomness.token_urlsafe(24)
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
        return template.render(
            t=TEXTS[lang],
            lang=lang,
            demo=self.config.demo,
            config=self.config,
            path=path,
            other_lang=other_lang,
            switch_href=self.language_switch(other_lang),
            spell=lambda seconds: spell_duration(seconds, lang),
            operator_href=contact_href(self.config.operator_contact),
            **values,
        )

    def language_switch(self, lang: str) -> str:
        """The same page in the other language: a GET keeps its query (the code
        being confirmed); a POST, or the single-use way back from Enedis, does not."""
        request = bottle.request
        keep = request.method == "GET" and not request.path.startswith(RETURN_PREFIX)
        params = [
            (name, value)
            for name, value in parse_qsl(request.query_string, keep_blank_values=True)
            if keep and name != "lang"
        ]
        return f"{self.config.base_url}{request.path}?{urlencode(params + [('lang', lang)])}"

    def shown_page(self, name: str, status: int = 200, **values) -> str:
        """A page of the way back from Enedis, kept for this browser so that the
        language switch can show it again without replaying the state."""
        browser = self.browser_id()
        if browser:
            try:
                self.store.put(
                    SHOWN_PAGE, digest(browser), {"name": name, "status": status, "values": values}, SHOWN_LIFETIME
                )
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

    def confirm_page(self, typed: str, state: str):
        try:
            pending = self.flow.verification.find_pending(typed, client_address())
        except PageError as error:
            return self.code_entry_page(error, typed, state)
        except StoreUnavailable:
            return self.error_page(PageError("server", 503))
        csrf = self.flow.verification.csrf_token(self.browser_id(create=True), pending.user_code)
        return self.page(
            "device",
            pending=pending,
            code=format_user_code(pending.user_code),
            typed=typed,
            state=state,
            csrf=csrf,
            error=None,
        )

    def code_entry_page(self, error: PageError, typed: str, state: str):
        """The code-entry form again, with what went wrong; past the guessing limit, only the wait."""
        if error.status == 429:
            return self.error_page(error)
        for name, value in error.headers().items():
            bottle.response.set_header(name, value)
        return self.page("device", status=error.status, pending=None, typed=typed, state=state, error=error.reason)


def contact_href(contact: str) -> str:
    """A link for the operator's contact when it is an e-mail address or a web address."""
    if contact.startswith(("https://", "http://")):
        return contact
    if "@" in contact and ":" not in contact and " " not in contact.strip():
        return "mailto:" + contact.strip()
    return ""
