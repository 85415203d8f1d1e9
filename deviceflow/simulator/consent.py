"""The consent pages, v1 and v2, and the v2 consents (autorisations) they record.

* v1: the customer ticks one or more meters; the browser goes back with a
  ``code`` (for ``/v1/oauth2/token``), the ``state`` and ``usage_point_id``;
* v2 (Data Connect 2026): the customer picks one meter; the browser goes back
  with an ``autorisation_id`` only, which the application exchanges for the PRM
  through ``/subscribed_services/v1``.

The pages are French, self-contained (no script, no external resource) and
escape everything they show: their templates sit in ``templates/``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import pathlib
import threading
import urllib.parse
from typing import TYPE_CHECKING, TypedDict

import bottle

from deviceflow.simulator.dates import add_duration, duration_days, today
from deviceflow.simulator.meters import METERS
from deviceflow.simulator.protocol import html_answer, redirect, request_arg

if TYPE_CHECKING:
    from deviceflow.simulator.control import Knobs
    from deviceflow.simulator.tokens import TokenEndpoints

TEMPLATES = pathlib.Path(__file__).with_name("templates")
# The authorize request's parameters, carried through the form as hidden fields.
HIDDEN_FIELDS = (
    "client_id",
    "response_type",
    "state",
    "duration",
    "redirect_uri",
    "scope",
    "code_challenge",
    "code_challenge_method",
)
MAX_STATE_LENGTH = 100  # per the v1 authorize swagger
MAX_CONSENT_DAYS = 3 * 365 + 1
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


@functools.cache
def _template(name: str) -> bottle.SimpleTemplate:
    return bottle.SimpleTemplate(name=name, lookup=[str(TEMPLATES)])


def page(status: int, name: str, **values) -> bottle.HTTPResponse:
    """The template `name` of templates/ rendered in the simulator's page; `{{ }}` escapes every value."""
    return html_answer(status, _template(name).render(**values), PAGE_HEADERS)


def error_page(status: int, message: str) -> bottle.HTTPResponse:
    return page(status, "error", message=message)


def _with_query(uri: str, params: dict) -> str:
    """`uri` with `params` added to its query, without its fragment."""
    parts = urllib.parse.urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urllib.parse.urlencode(params)
    return urllib.parse.urlunsplit(parts._replace(query=query, fragment=""))


@dataclasses.dataclass(frozen=True)
class ConsentRequest:
    """An authorize request that passed every check.

    params: its HIDDEN_FIELDS, None when absent. redirect_uri: where the browser goes back.
    """

    params: dict[str, str | None]
    redirect_uri: str

    @property
    def state(self) -> dict[str, str]:
        """The `state` to send back, when the application sent one."""
        return {"state": self.params["state"]} if self.params["state"] else {}


class Autorisation(TypedDict):
    client_id: str
    prms: tuple[str, ...]
    start: dt.date
    end: dt.date
    lookups: int  # by /subscribed_services/v1, for the subscribed_delay_calls knob
    share: int  # which share made it: sharing again opens new services


class ConsentPages:
    """GET and POST of /dataconnect/{v1,v2}/oauth2/authorize, and the autorisations of v2.

    Invariant: an autorisation_id is stable for (application, PRM), across
    restarts too, like Enedis; the autorisations are guarded by `_lock`.

    public_base: URL at which the browser sees the simulator's mount point (the form's action).
    registered_redirect_uri: used when an authorize request carries none (real Enedis takes none).
    tokens: issues the v1 codes.
    knobs: read for `v2_reshare_fails` and `subscribed_delay_calls`.
    """

    def __init__(
        self,
        public_base: str,
        client_id: str,
        registered_redirect_uri: str | None,
        clock,
        tokens: TokenEndpoints,
        knobs: Knobs,
    ):
        self.public_base = public_base
        self.client_id = client_id
        self.registered_redirect_uri = registered_redirect_uri
        self.clock = clock
        self.tokens = tokens
        self.knobs = knobs
        self._lock = threading.Lock()
        self._autorisations: dict[int, Autorisation] = {}
        self._shares = 0

    def show(self, version: str) -> bottle.HTTPResponse:
        return self._form(version, self._checked(bottle.request.query))

    def submit(self, version: str) -> bottle.HTTPResponse:
        form = bottle.request.forms
        request = self._checked(form)  # a forged POST is checked as well
        if request_arg(form, "decision") != "accept":
            return redirect(
                _with_query(
                    request.redirect_uri,
                    {
                        "error": "access_denied",
                        "error_description": "The customer refused to share his data",
                        **request.state,
                    },
                )
            )
        prms = list(dict.fromkeys(prm for prm in form.getall("usage_point_id") if prm in METERS))
        if not prms or (version == "v2" and len(prms) != 1):
            message = "Choisissez au moins un compteur." if version == "v1" else "Choisissez un compteur, et un seul."
            return self._form(version, request, 400, message)
        if version == "v1":
            code = self.tokens.issue_code(
                tuple(prms),
                request.redirect_uri,
                bool(request.params["redirect_uri"]),
                request.params["code_challenge"],
            )
            query = {"code": code, **request.state, "usage_point_id": ";".join(prms)}
        else:
            query = {"autorisation_id": str(self._share(prms[0], request.params["duration"])), **request.state}
        return redirect(_with_query(request.redirect_uri, query))

    def _checked(self, source: bottle.FormsDict) -> ConsentRequest:
        """The authorize request in `source` (query or form); raises the error page Enedis would show."""
        params = {name: request_arg(source, name) for name in HIDDEN_FIELDS}
        if params["client_id"] != self.client_id:
            raise error_page(400, "Application inconnue : client_id invalide.")
        if params["response_type"] != "code":
            raise error_page(400, "Paramètre response_type invalide (attendu : code).")
        redirect_uri = params["redirect_uri"] or self.registered_redirect_uri
        if not redirect_uri:
            raise error_page(400, "Paramètre redirect_uri manquant.")
        if urllib.parse.urlsplit(redirect_uri).scheme not in ("http", "https"):
            raise error_page(400, "Paramètre redirect_uri invalide.")
        days = duration_days(params["duration"])
        if days is None:
            raise error_page(400, "Paramètre duration manquant ou invalide (ISO 8601, ex. P3Y).")
        if days > MAX_CONSENT_DAYS:
            raise error_page(400, "La durée du consentement ne peut excéder 3 ans.")
        if params["state"] and len(params["state"]) > MAX_STATE_LENGTH:
            raise error_page(400, "Paramètre state trop long (100 caractères au plus).")
        if params["code_challenge"] and (params["code_challenge_method"] or "S256") != "S256":
            raise error_page(400, "code_challenge_method non pris en charge (S256 seulement).")
        return ConsentRequest(params, redirect_uri)

    def _form(self, version: str, request: ConsentRequest, status: int = 200, error: str = "") -> bottle.HTTPResponse:
        single = version == "v2"
        return page(
            status,
            "consent",
            version=version,
            error=error,
            client_id=request.params["client_id"],
            duration=request.params["duration"],
            redirect_uri=request.redirect_uri,
            action=f"{self.public_base}/dataconnect/{version}/oauth2/authorize",
            hidden=[(name, value) for name, value in request.params.items() if value],
            meters=list(METERS.values()),
            input_type="radio" if single else "checkbox",
            choice="Choisissez le compteur (un seul par partage)" if single else "Choisissez un ou plusieurs compteurs",
        )

    def _share(self, prm: str, duration: str) -> int:
        """Record the v2 consent to share `prm` for `duration`; its autorisation_id.

        Raises the error page of a share refused by the `v2_reshare_fails` knob: real Enedis
        fails to share an already shared PRM, and the browser never comes back to the application.
        """
        autorisation_id = autorisation_id_of(self.client_id, prm)
        start = today(self.clock)
        with self._lock:
            refused = self.knobs.v2_reshare_fails and autorisation_id in self._autorisations
            if not refused:
                self._shares += 1
                self._autorisations[autorisation_id] = {
                    "client_id": self.client_id,
                    "prms": (prm,),
                    "start": start,
                    "end": add_duration(start, duration),
                    "lookups": 0,
                    "share": self._shares,
                }
        if refused:
            raise error_page(
                400,
                "Une erreur est survenue lors du partage de vos données. "
                "(Ce compteur est déjà partagé avec cette application.)",
            )
        return autorisation_id

    def lookup(self, client_id: str, autorisation_id: int | None, prms: list | None) -> list[tuple[int, Autorisation]]:
        """The client's autorisations with this id (any when None) that name one of `prms` (any when empty).

        Each match counts one lookup, and stays hidden for its first `subscribed_delay_calls` lookups,
        as a fresh consent takes a while to show at Enedis. Copies: the records stay behind the lock.
        """
        found = []
        with self._lock:
            for found_id, autorisation in self._autorisations.items():
                if autorisation["client_id"] != client_id:
                    continue
                if autorisation_id is not None and found_id != autorisation_id:
                    continue
                if prms and not set(prms) & set(autorisation["prms"]):
                    continue
                autorisation["lookups"] += 1
                if autorisation["lookups"] <= self.knobs.subscribed_delay_calls:
                    continue
                found.append((found_id, Autorisation(**autorisation)))
        return found


def autorisation_id_of(client_id: str, prm: str) -> int:
    """The 9-digit autorisation_id of (application, PRM): the same at every share, like Enedis's."""
    digest = hashlib.sha256(f"{client_id}|{prm}".encode()).hexdigest()
    return 100_000_000 + int(digest[:12], 16) % 900_000_000
