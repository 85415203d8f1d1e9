"""A simulated Enedis, for ``serve --demo`` and for end-to-end tests.

One plain Bottle application, no module-level state: every ``Simulator`` keeps
its own tokens, codes and consents.  Mount it on the main app with
``main_app.mount("/enedis/", Simulator(base + "/enedis").app)``; the routes
below are relative to that mount point.

What it imitates (tests/fixtures/enedis-2026 holds real answers it is checked against):

* the consent pages, v1 (``code`` + ``usage_point_id``) and v2 (Data Connect
  2026: ``autorisation_id`` only, exchanged via ``/subscribed_services/v1``);
* the token endpoints: ``/oauth2/v3/token`` (client_credentials, ``expires_in``
  as a *string*, like Enedis) and ``/v1/oauth2/token`` (authorization_code and
  refresh_token, with PKCE S256, for the generic pass-through mode);
* the v5 data APIs (``metering_data_*``, ``customers_*``) and the Data Connect
  2026 APIs (``mesure_synchrone_auto/v2``, ``situation_contrat_auto``, ...),
  serving the SAME deterministic numbers, so that a v5 <-> 2026 translation
  can be checked end to end;
* Enedis's error bodies: ``{"error", "error_description", "error_uri"}`` with
  the ADAM codes on the v5 and measure APIs, WSO2 gateway bodies
  (``{"code", "message", "description"}``) for authentication, throttling and
  unknown resources, ``{"code", "message"}`` for the 2026 technical errors.

Test knobs (attributes, also settable with ``POST /_control``): ``delay``,
``v5_enabled``, ``fail``, ``subscribed_delay_calls``, ``token_lifetime``,
``comptage_subscribed``, ``v2_reshare_fails``; ``calls`` counts requests per
endpoint name and is readable with ``GET /_stats``. ``POST /_control`` needs
``Authorization: Bearer <control_token>`` (made per simulator; ``serve --demo``
prints it at start-up), and every knob is bounded: whoever reaches a demo server
must not be able to freeze it with a delay or fill its memory with failures.

Simplifications, on purpose: every day has 48 half-hour points (no 46/50
point days at DST changes); meters are single-phase; any syntactically valid
PRM that is not one of the test meters behaves like a plain consumer (so that
tests may use made-up PRMs).
"""

from __future__ import annotations

import base64
import calendar
import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import html
import json
import logging
import math
import random
import re
import secrets
import threading
import time
import urllib.parse

import bottle

from deviceflow.usage_points import is_usage_point

try:  # Enedis's "today" is the French one
    from zoneinfo import ZoneInfo

    PARIS = ZoneInfo("Europe/Paris")
except Exception:  # pragma: no cover - no tz database
    PARIS = dt.timezone.utc

log = logging.getLogger(__name__)

ERROR_URI = "https://bluecoder.enedis.fr/api-doc/consulter-souscrire"
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DURATION_RE = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?$")
MAX_STATE_LENGTH = 100  # per the v1 authorize swagger
CODE_LIFETIME = 300  # authorization codes (v1 consent)
REFRESH_LIFETIME = 3 * 366 * 86400
# Bounds of the test knobs (POST /_control): a delay holds a thread per data
# call, and failures are kept in memory until used or reset.
CONTROL_MAX_BODY = 64 * 1024
MAX_DELAY = 60.0
MAX_FAILURES = 100
MAX_FAILURE_TIMES = 10_000
MAX_FAILURE_TEXT = 16 * 1024  # `match` and `body`, as JSON text
FAILURE_FIELDS = frozenset({"match", "status", "times", "body", "next_access_time"})
MAX_SUBSCRIBED_DELAY_CALLS = 100


# ---------------------------------------------------------------------------
# Test meters
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Meter:
    prm: str
    label: str  # shown on the consent page
    kva: int  # subscribed power
    tariff: str  # "HPHC" or "BASE"
    consumption_activation: dt.date
    production_activation: dt.date | None = None  # None: not a producer
    kwc: float = 0.0  # solar peak power
    base_w: int = 300  # always-on load
    activity_w: int = 250  # scale of the daily activity profile
    heating_w: int = 0  # electric heating at full winter
    water_heater_w: int = 0  # off-peak hot water tank
    secondary: bool = False  # often empty (secondary residence)
    customer_id: str = "1358019319"
    title: str = "M."
    firstname: str = "Camille"
    lastname: str = "Demo"
    email: str = "camille.demo@example.invalid"
    phone: str = "0600000000"
    street: str = "1 rue de la Démonstration"
    postal_code: str = "69001"
    city: str = "LYON"
    insee_code: str = "69381"
    latitude: str = "45.767"
    longitude: str = "4.834"
    altitude: str = "170"
    contract_start: dt.date = dt.date(2020, 1, 1)

    @property
    def producer(self) -> bool:
        return self.production_activation is not None

    @property
    def offpeak_hours(self) -> str | None:
        return "HC (22H00-6H00)" if self.tariff == "HPHC" else None

    @property
    def distribution_tariff(self) -> str:
        if self.tariff == "HPHC":
            # as in the 2026 fixtures
            return ("Tarif BT<=36kVA Moyenne Utilisation heures pleines heures "
                    "creuses associées à deux saisons")
        return "Tarif BT<=36kVA Courte Utilisation sans différenciation temporelle"


# The first two PRMs are those of the anonymised 2026 fixtures (a consumer and
# a self-consumption point), with their activation dates.
METERS: dict[str, Meter] = {
    m.prm: m
    for m in (
        Meter(
            prm="99999999999991",
            label="Maison — consommateur, heures creuses, 12 kVA",
            kva=12, tariff="HPHC",
            consumption_activation=dt.date(2018, 8, 31),
            base_w=320, activity_w=300, heating_w=2600, water_heater_w=2200,
            customer_id="1358019391", title="Mme", firstname="Sandra", lastname="Demo",
            email="sandra.demo@example.invalid", phone="0600000091",
            street="12 rue des Compteurs", postal_code="69003", city="LYON",
            insee_code="69383", latitude="45.760", longitude="4.850",
            contract_start=dt.date(2026, 2, 11),
        ),
        Meter(
            prm="99999999999992",
            label="Maison solaire — autoconsommation (production 3 kWc), 12 kVA",
            kva=12, tariff="HPHC",
            consumption_activation=dt.date(2014, 1, 22),
            production_activation=dt.date(2024, 7, 31),
            kwc=3.0, base_w=280, activity_w=280, heating_w=1500, water_heater_w=2000,
            customer_id="1358019392", title="M.", firstname="Paul", lastname="Soleil",
            email="paul.soleil@example.invalid", phone="0600000092",
            street="5 chemin du Photon", postal_code="31000", city="TOULOUSE",
            insee_code="31555", latitude="43.604", longitude="1.444", altitude="146",
            contract_start=dt.date(2024, 10, 12),
        ),
        Meter(
            prm="99999999999993",
            label="Résidence secondaire — consommateur, base, 6 kVA",
            kva=6, tariff="BASE",
            consumption_activation=dt.date(2025, 3, 17),
            base_w=120, activity_w=220, heating_w=1800, secondary=True,
            customer_id="1358019393", title="M.", firstname="Louis", lastname="Chalet",
            email="louis.chalet@example.invalid", phone="0600000093",
            street="3 route du Lac", postal_code="74000", city="ANNECY",
            insee_code="74010", latitude="45.899", longitude="6.129", altitude="448",
            contract_start=dt.date(2025, 3, 17),
        ),
    )
}
CONSUMER_PRM, PRODUCER_PRM, SECONDARY_PRM = list(METERS)


@functools.lru_cache(maxsize=1024)
def meter_for(prm: str) -> Meter:
    """The test meter, or a plain consumer for any other (made-up) PRM."""
    if prm in METERS:
        return METERS[prm]
    return Meter(prm=prm, label="Compteur", kva=9, tariff="BASE",
                 consumption_activation=dt.date(2015, 1, 1),
                 customer_id=str(1_000_000_000 + int(prm) % 999_999_999))


# ---------------------------------------------------------------------------
# Deterministic measurements.  Everything derives from the half-hour curves of
# one day, seeded by PRM + date, so that every API (v5 or 2026, daily or load
# curve) tells the same story: daily Wh = sum(curve W) / 2.
# Slot i of day D covers [D + 30 min * i, D + 30 min * (i + 1)[ and is
# timestamped at its END, as Enedis does.
# ---------------------------------------------------------------------------

def _winter(day: dt.date) -> float:
    """1.0 mid-January, 0.0 from spring to autumn: the heating need."""
    return max(0.0, math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25))


def _summer(day: dt.date) -> float:
    """1.0 mid-June, 0.0 mid-December: the sun."""
    return (1 - math.cos(2 * math.pi * (day.timetuple().tm_yday - 355) / 365.25)) / 2


def _activity(hour: float, weekend: bool) -> float:
    """Relative use of appliances along a day (lighting, cooking, ...)."""
    if hour < 6:
        return 0.2
    if hour < 9:
        return 2.5 if weekend else 4.0
    if hour < 12:
        return 3.0 if weekend else 1.0
    if hour < 14:
        return 3.5
    if hour < 18:
        return 2.5 if weekend else 1.2
    if hour < 22.5:
        return 6.0
    return 2.0


@functools.lru_cache(maxsize=8192)
def production_curve(prm: str, day: dt.date) -> tuple[int, ...]:
    """48 average powers (W) injected by the meter's solar panels."""
    meter = meter_for(prm)
    if not meter.producer:
        return (0,) * 48
    rng = random.Random(f"prod|{prm}|{day.isoformat()}")
    summer = _summer(day)
    daylight = 8.5 + 7.5 * summer  # hours
    noon = 13.0 + 0.5 * summer  # solar noon in legal time, roughly
    sunrise = noon - daylight / 2
    clearness = rng.uniform(0.1, 1.0) ** (1.0 - 0.6 * summer)
    peak = meter.kwc * 1000 * 0.75 * (0.55 + 0.45 * summer) * clearness
    values = []
    for i in range(48):
        x = ((i + 0.5) / 2 - sunrise) / daylight
        if 0 < x < 1:
            jitter = rng.uniform(0.6, 1.1) if clearness < 0.6 else rng.uniform(0.93, 1.02)
            values.append(int(round(peak * math.sin(math.pi * x) ** 1.3 * jitter)))
        else:
            values.append(0)
    return tuple(values)


@functools.lru_cache(maxsize=8192)
def consumption_curve(prm: str, day: dt.date) -> tuple[int, ...]:
    """48 average powers (W) drawn from the grid."""
    meter = meter_for(prm)
    rng = random.Random(f"cons|{prm}|{day.isoformat()}")
    weekend = day.weekday() >= 5
    winter = _winter(day)
    occupied = not meter.secondary or (weekend and rng.random() < 0.6) or (
        day.month in (7, 8) and rng.random() < 0.8)
    base = meter.base_w * rng.uniform(0.9, 1.1)
    appliances = set(rng.sample(range(14, 44), rng.randint(1, 3)))  # washing machine, oven
    hot_water_slots = rng.randint(3, 6) if meter.water_heater_w else 0  # from 00:00, off-peak
    production = production_curve(prm, day)
    values = []
    for i in range(48):
        hour = i / 2 + 0.25
        watts = base
        if occupied:
            watts += meter.activity_w * _activity(hour, weekend) * rng.uniform(0.7, 1.3)
            heating_share = 1.0 if (6 <= hour < 9 or 17 <= hour < 23) else 0.6
            watts += meter.heating_w * winter * heating_share * rng.uniform(0.8, 1.2)
            if i in appliances:
                watts += rng.choice((1800, 2200, 2500))
        else:
            watts += 0.25 * meter.heating_w * winter * rng.uniform(0.8, 1.2)  # frost protection
        if i < hot_water_slots:
            watts += meter.water_heater_w
        # self-consumption: the panels feed part of the house first
        watts = max(60.0, watts - 0.7 * production[i])
        values.append(int(round(min(watts, meter.kva * 1000 * 0.95))))
    return tuple(values)


def curve(prm: str, day: dt.date, direction: str) -> tuple[int, ...]:
    return production_curve(prm, day) if direction == "PROD" else consumption_curve(prm, day)


def daily_energy(prm: str, day: dt.date, direction: str) -> int:
    """Wh of one day: the integral of its load curve."""
    return int(round(sum(curve(prm, day, direction)) / 2))


@functools.lru_cache(maxsize=8192)
def max_power(prm: str, day: dt.date) -> tuple[int, str]:
    """(VA, "YYYY-MM-DD HH:MM:SS") of the day's maximum apparent power.

    It happens within the half hour of highest average power, and is above
    that average (a peak) but never above the subscribed power.
    """
    meter = meter_for(prm)
    values = consumption_curve(prm, day)
    rng = random.Random(f"pmax|{prm}|{day.isoformat()}")
    slot = max(range(48), key=values.__getitem__)
    va = min(int(values[slot] * rng.uniform(1.15, 1.6)), meter.kva * 1000)
    end = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=30 * (slot + 1))
    when = end - dt.timedelta(seconds=rng.randint(1, 1799))
    return va, when.strftime("%Y-%m-%d %H:%M:%S")


def days(start: dt.date, end: dt.date):
    """Each day of [start, end[."""
    for n in range((end - start).days):
        yield start + dt.timedelta(days=n)


def curve_points(prm: str, start: dt.date, end: dt.date, direction: str):
    """(end-of-interval timestamp, W) of each half hour of [start, end[."""
    for day in days(start, end):
        midnight = dt.datetime.combine(day, dt.time())
        for i, value in enumerate(curve(prm, day, direction)):
            stamp = midnight + dt.timedelta(minutes=30 * (i + 1))
            yield stamp.strftime("%Y-%m-%d %H:%M:%S"), value


def monthly_max_power(prm: str, start: dt.date, end: dt.date):
    """(VA, timestamp) of the highest daily maximum of each month in [start, end[."""
    best: dict[tuple[int, int], tuple[int, str]] = {}
    for day in days(start, end):
        va, when = max_power(prm, day)
        key = (day.year, day.month)
        if key not in best or va > best[key][0]:
            best[key] = (va, when)
    return [best[k] for k in sorted(best)]


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def _json(status: int, obj, headers: dict | None = None) -> bottle.HTTPResponse:
    # An HTTPResponse (never bottle.abort): once mounted, the routes run inside
    # the parent app, whose error handlers must not reshape Enedis's bodies.
    all_headers = {"Content-Type": "application/json;charset=UTF-8"}
    all_headers.update(headers or {})
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return bottle.HTTPResponse(body=body, status=status, headers=all_headers)


def _v5_error(status: int, error: str, description: str) -> bottle.HTTPResponse:
    return _json(status, {"error": error, "error_description": description,
                          "error_uri": ERROR_URI})


def _oauth_error(status: int, error: str, description: str) -> bottle.HTTPResponse:
    return _json(status, {"error": error, "error_description": description},
                 {"Cache-Control": "no-store", "Pragma": "no-cache"})


def _technical_error() -> bottle.HTTPResponse:
    # What the 2026 APIs answer to anything outside their Swagger.
    return _json(500, {"code": "500",
                       "message": "Problème technique dans l'interrogation du SI coeur"})


def _gateway_error(status: int, code: str, message: str, description: str,
                   headers: dict | None = None) -> bottle.HTTPResponse:
    # Enedis's API gateway (WSO2) answers in this shape, see
    # fixtures-2026/erreur_comptage_non_souscrit.json.
    return _json(status, {"code": code, "message": message, "description": description},
                 headers)


def _not_found() -> bottle.HTTPResponse:
    return _gateway_error(404, "900906", "No matching resource found for given API Request",
                          "The requested resource is not available.")


def _throttled(next_access_time: str | None) -> bottle.HTTPResponse:
    body = {"code": "900802", "message": "Message throttled out",
            "description": "You have exceeded your quota"}
    if next_access_time:
        body["description"] += f" .You can access API after {next_access_time}"
        body["nextAccessTime"] = next_access_time
    return _json(429, body)


def _parse_date(value: str | None) -> dt.date | None:
    if not value or not DATE_RE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _minus_months(day: dt.date, months: int) -> dt.date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _add_duration(day: dt.date, duration: str) -> dt.date:
    years, months, days_ = (int(x or 0) for x in DURATION_RE.match(duration).groups())
    return _minus_months(day, -(12 * years + months)) + dt.timedelta(days=days_)


def _duration_days(duration: str) -> int | None:
    match = DURATION_RE.match(duration or "")
    if not match or not any(match.groups()):
        return None
    years, months, days_ = (int(x or 0) for x in match.groups())
    return years * 365 + months * 30 + days_


def _append_query(uri: str, params: dict) -> str:
    parts = urllib.parse.urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urllib.parse.urlencode(params)
    return urllib.parse.urlunsplit(parts._replace(query=query, fragment=""))


def _same(a: str, b: str) -> bool:
    """Constant-time comparison of secrets (any characters)."""
    return secrets.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _local_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), PARIS)


def _itc_date(day: dt.date) -> str:
    """"2024-07-31T00:00:00+0200", the ITC APIs' format."""
    return _local_midnight(day).strftime("%Y-%m-%dT%H:%M:%S%z")


def _v5_date(day: dt.date) -> str:
    """"2013-08-14+01:00", the v5 contract APIs' format."""
    offset = _local_midnight(day).strftime("%z")
    return f"{day.isoformat()}{offset[:3]}:{offset[3:]}"


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _arg(source: bottle.FormsDict, name: str) -> str | None:
    # getunicode: bottle decodes raw values as latin-1 otherwise.
    value = source.getunicode(name)
    return value if value is None else value.strip()


# ---------------------------------------------------------------------------
# Consent page (French, self-contained, everything escaped)
# ---------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — Enedis simulé (démo)</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem;color:#222}}
.demo{{background:#fff3cd;border:2px solid #d39e00;padding:.6rem;border-radius:.4rem;font-weight:bold}}
.error{{background:#f8d7da;border:1px solid #c0392b;padding:.6rem;border-radius:.4rem}}
label.meter{{display:block;border:1px solid #ccc;border-radius:.4rem;padding:.5rem;margin:.4rem 0}}
button{{font-size:1rem;padding:.5rem 1.2rem;margin:.5rem .5rem 0 0}}
small{{color:#555}}
</style></head><body>
<p class="demo">Simulated Enedis — demo. Enedis simulé : page de démonstration,
aucune donnée réelle, aucun compte Enedis n'est utilisé.</p>
<h1>{title}</h1>
{content}
</body></html>
"""

HIDDEN_FIELDS = ("client_id", "response_type", "state", "duration", "redirect_uri",
                 "scope", "code_challenge", "code_challenge_method")


def _check_failure(entry) -> None:
    """One `fail` entry of POST /_control, within its bounds; else ValueError."""
    if not (isinstance(entry, dict) and set(entry) <= FAILURE_FIELDS
            and isinstance(entry.get("match", ""), str)
            and 100 <= int(entry.get("status", 500)) <= 599
            and 1 <= int(entry.get("times", 1)) <= MAX_FAILURE_TIMES
            and isinstance(entry.get("next_access_time") or "", str)):
        raise ValueError(f"bad fail entry (fields {', '.join(sorted(FAILURE_FIELDS))}; "
                         f"times 1-{MAX_FAILURE_TIMES})")
    if len(json.dumps(entry)) > MAX_FAILURE_TEXT:
        raise ValueError(f"a fail entry is at most {MAX_FAILURE_TEXT} bytes")


def _page(status: int, title: str, content: str) -> bottle.HTTPResponse:
    body = PAGE.format(title=html.escape(title), content=content).encode("utf-8")
    return bottle.HTTPResponse(body=body, status=status, headers={
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "frame-ancestors 'none'",
        "X-Frame-Options": "DENY",
    })


def _error_page(status: int, message: str) -> bottle.HTTPResponse:
    return _page(status, "Erreur", f'<p class="error">{html.escape(message)}</p>')


# ---------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------

V5_MEASURES = {
    # path: (endpoint name, kind, direction)
    "/metering_data_dc/v5/daily_consumption": ("daily_consumption", "daily", "CONS"),
    "/metering_data_clc/v5/consumption_load_curve": ("consumption_load_curve", "curve", "CONS"),
    "/metering_data_dcmp/v5/daily_consumption_max_power":
        ("daily_consumption_max_power", "pmax", "CONS"),
    "/metering_data_dp/v5/daily_production": ("daily_production", "daily", "PROD"),
    "/metering_data_plc/v5/production_load_curve": ("production_load_curve", "curve", "PROD"),
}
V5_CUSTOMERS = {
    "/customers_upc/v5/usage_points/contracts": "contracts",
    "/customers_upa/v5/usage_points/addresses": "addresses",
    "/customers_i/v5/identity": "identity",
    "/customers_cd/v5/contact_data": "contact_data",
}
MESURES_2026 = {
    # name: (kind, direction)
    "consommation_quotidienne": ("daily", "CONS"),
    "courbe_de_charge_consommation": ("curve", "CONS"),
    "puissance_conso_max_quotidienne": ("pmax", "CONS"),
    "production_quotidienne": ("daily", "PROD"),
    "courbe_de_charge_production": ("curve", "PROD"),
}
ITC_2026 = ("situation_contrat_auto", "synth_contrat_auto", "comptage_auto",
            "donnees_generales_auto")


class Simulator:
    """A simulated Enedis as one Bottle app (see the module docstring).

    public_base: URL at which the browser sees the mount point (for pages).
    client_id: the only client id accepted by consent and token endpoints.
    client_secret: when not None, the secret that token requests must carry;
        None accepts any (or no) secret, as the demo has none.
    redirect_uri: the redirect URI "registered on DataHub", used when an
        authorize request carries none (real Enedis takes none).
    clock: seconds since the epoch; drives token expiry and "today".
    """

    def __init__(self, public_base: str, client_id: str = "deviceflow-demo",
                 clock=time.time, *, client_secret: str | None = None,
                 redirect_uri: str | None = None, control_token: str | None = None):
        self.public_base = public_base.rstrip("/")
        # Needed by POST /_control: printed by `serve --demo`, read from here by in-process tests.
        self.control_token = control_token or secrets.token_urlsafe(32)
        self.client_id = client_id
        self.client_secret = client_secret
        self.registered_redirect_uri = redirect_uri
        self.clock = clock
        # knobs
        self.delay = 0.0
        self.v5_enabled = True
        self.fail: list[dict] = []
        self.subscribed_delay_calls = 0
        self.token_lifetime = 12600
        self.comptage_subscribed = True
        self.v2_reshare_fails = False
        self.calls: collections.Counter = collections.Counter()
        # state, guarded by _lock (waitress serves from many threads)
        self._lock = threading.Lock()
        self._tokens: dict[str, dict] = {}  # access token -> info
        self._refresh_tokens: dict[str, dict] = {}
        self._codes: dict[str, dict] = {}  # v1 authorization codes
        self._autorisations: dict[int, dict] = {}  # v2 consents
        self._shares = 0
        self.app = bottle.Bottle()
        self._add_routes()

    # -- plumbing -----------------------------------------------------------

    def _add_routes(self) -> None:
        add = self._add
        for version in ("v1", "v2"):
            add(f"/dataconnect/{version}/oauth2/authorize", f"authorize_{version}",
                functools.partial(self.authorize_page, version), method="GET")
            add(f"/dataconnect/{version}/oauth2/authorize", f"authorize_{version}_submit",
                functools.partial(self.authorize_submit, version), method="POST")
        for path in ("/subscribed_services/v1", "/subscribed_services/v1/"):
            add(path, "subscribed_services", self.subscribed_services, method="POST", data=True)
        add("/oauth2/v3/token", "token_v3", self.token_v3, method="POST")
        add("/v1/oauth2/token", "token_v1", self.token_v1, method="POST")
        for path, (name, kind, direction) in V5_MEASURES.items():
            add(path, name, functools.partial(self.v5_measure, kind, direction), data=True)
        for path, name in V5_CUSTOMERS.items():
            add(path, name, functools.partial(self.v5_customer, name), data=True)
        for name, (kind, direction) in MESURES_2026.items():
            add(f"/mesure_synchrone_auto/v2/{name}", name,
                functools.partial(self.mesure_2026, kind, direction), data=True)
        for name in ITC_2026:
            add(f"/{name}/v1/<prm>", name, functools.partial(self.itc_2026, name), data=True)
            # The PRM goes in the path; anything else is outside the Swagger.
            for path in (f"/{name}/v1", f"/{name}/v1/"):
                add(path, name, lambda: _technical_error(), data=True)
        self.app.route("/_control", "POST", self.control)
        self.app.route("/_stats", "GET", self.stats)
        add("/<path:path>", "not_found", lambda path: _not_found(),
            method=["GET", "POST", "PUT", "DELETE", "PATCH"])

    def _add(self, path, name, handler, method="GET", data=False) -> None:
        def endpoint(**kwargs):
            with self._lock:
                self.calls[name] += 1
            # Only a caller with a live token waits: unauthenticated calls are
            # refused at once, so they cannot pile up sleeping threads.
            if data and self.delay > 0 and self._holds_token():
                time.sleep(self.delay)
            failure = self._take_failure()
            if failure is not None:
                log.info("simulator: %s -> injected %s", name, failure.status_code)
                return failure
            return handler(**kwargs)

        self.app.route(path, method, endpoint, name=None)

    def _relative_path(self) -> str:
        # Mounted as a Bottle app, the routes see the parent's full path.
        path = bottle.request.path
        prefix = self.app.config.get("_mount.prefix")
        if prefix and path.startswith(prefix):
            path = "/" + path[len(prefix):]
        return path

    def _take_failure(self) -> bottle.HTTPResponse | None:
        path = self._relative_path()
        with self._lock:
            for entry in self.fail:
                if not path.startswith(entry.get("match", "")):
                    continue
                entry["times"] = int(entry.get("times", 1)) - 1
                if entry["times"] <= 0:
                    self.fail.remove(entry)
                break
            else:
                return None
        status = int(entry.get("status", 500))
        body = entry.get("body")
        if body is None:
            return self._default_failure(status, path, entry.get("next_access_time"))
        if isinstance(body, str):  # e.g. an HTML page from a load balancer
            return bottle.HTTPResponse(body=body.encode("utf-8"), status=status,
                                       headers={"Content-Type": "text/html; charset=utf-8"})
        return _json(status, body)

    @staticmethod
    def _default_failure(status: int, path: str, next_access_time: str | None):
        if status == 429:
            return _throttled(next_access_time)
        if status == 401:
            return Simulator._unauthorized(missing=False)
        if status == 403:  # as fixtures-2026/erreur_comptage_non_souscrit.json
            return _gateway_error(403, "900908", "Resource forbidden ",
                                  "User is NOT authorized to access the Resource. "
                                  "API Subscription validation failed.")
        if status == 404:
            return _not_found()
        if path.startswith(("/metering_data", "/customers_", "/oauth2", "/v1/oauth2")):
            return _json(status, {"error": "technical_error",
                                  "error_description": "Technical error. Please try later."})
        return _json(status, {"code": str(status),
                              "message": "Problème technique dans l'interrogation du SI coeur"})

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.clock(), PARIS).date()

    def _new_secret(self) -> str:
        return secrets.token_urlsafe(32)

    # -- authentication of data calls --------------------------------------

    @staticmethod
    def _unauthorized(missing: bool) -> bottle.HTTPResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="Enedis simulator", error="invalid_token"'}
        if missing:
            return _gateway_error(401, "900902", "Missing Credentials",
                                  "Invalid Credentials. Make sure your API invocation call has "
                                  "a header: 'Authorization : Bearer ACCESS_TOKEN'", headers)
        return _gateway_error(401, "900901", "Invalid Credentials",
                              "Invalid Credentials. Make sure you have provided the correct "
                              "security credentials", headers)

    def _holds_token(self) -> bool:
        scheme, _, token = (bottle.request.get_header("Authorization") or "").partition(" ")
        with self._lock:
            info = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return info is not None and info["expires"] > self.clock()

    def _bearer(self, allow_v1: bool):
        """(token info, None) or (None, 401 response)."""
        scheme, _, token = (bottle.request.get_header("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, self._unauthorized(missing=True)
        with self._lock:
            info = self._tokens.get(token)
        if (info is None or info["expires"] <= self.clock()
                or (info["kind"] == "v1" and not allow_v1)):
            return None, self._unauthorized(missing=False)
        return info, None

    # -- 1, 2. consent pages ------------------------------------------------

    def _consent_request(self, source: bottle.FormsDict):
        """(params, effective redirect_uri) or an error page."""
        params = {name: _arg(source, name) for name in HIDDEN_FIELDS}
        if params["client_id"] != self.client_id:
            return _error_page(400, "Application inconnue : client_id invalide.")
        if params["response_type"] != "code":
            return _error_page(400, "Paramètre response_type invalide (attendu : code).")
        redirect_uri = params["redirect_uri"] or self.registered_redirect_uri
        if not redirect_uri:
            return _error_page(400, "Paramètre redirect_uri manquant.")
        if urllib.parse.urlsplit(redirect_uri).scheme not in ("http", "https"):
            return _error_page(400, "Paramètre redirect_uri invalide.")
        days_ = _duration_days(params["duration"])
        if days_ is None:
            return _error_page(400, "Paramètre duration manquant ou invalide (ISO 8601, ex. P3Y).")
        if days_ > 3 * 365 + 1:
            return _error_page(400, "La durée du consentement ne peut excéder 3 ans.")
        if params["state"] and len(params["state"]) > MAX_STATE_LENGTH:
            return _error_page(400, "Paramètre state trop long (100 caractères au plus).")
        if params["code_challenge"] and (params["code_challenge_method"] or "S256") != "S256":
            return _error_page(400, "code_challenge_method non pris en charge (S256 seulement).")
        return params, redirect_uri

    def _consent_form(self, version: str, params: dict, redirect_uri: str,
                      status: int = 200, error: str = "") -> bottle.HTTPResponse:
        esc = html.escape
        kind = "checkbox" if version == "v1" else "radio"
        meters = "".join(
            f'<label class="meter"><input type="{kind}" name="usage_point_id" '
            f'value="{esc(m.prm)}"> <b>{esc(m.prm)}</b> — {esc(m.label)}<br>'
            f"<small>{esc(m.street)}, {esc(m.postal_code)} {esc(m.city)}</small></label>"
            for m in METERS.values())
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{esc(value)}">'
            for name, value in params.items() if value)
        action = f"{self.public_base}/dataconnect/{version}/oauth2/authorize"
        choice = ("Choisissez un ou plusieurs compteurs" if version == "v1"
                  else "Choisissez le compteur (un seul par partage)")
        content = (
            (f'<p class="error">{esc(error)}</p>' if error else "")
            + f"<p>L'application <b>{esc(params['client_id'])}</b> demande à consulter les "
            f"données de consommation et de production de votre compteur, pour une durée de "
            f"<b>{esc(params['duration'])}</b>.</p>"
            f'<form method="post" action="{esc(action)}">{hidden}'
            f"<fieldset><legend>{choice}</legend>{meters}</fieldset>"
            '<button type="submit" name="decision" value="accept">Accepter</button>'
            '<button type="submit" name="decision" value="refuse">Refuser</button>'
            "</form>"
            f"<p><small>Consentement {esc(version)} ; retour vers "
            f"{esc(redirect_uri)}</small></p>")
        return _page(status, "Autoriser l'accès à vos données", content)

    def authorize_page(self, version: str):
        checked = self._consent_request(bottle.request.query)
        if isinstance(checked, bottle.HTTPResponse):
            return checked
        return self._consent_form(version, *checked)

    def authorize_submit(self, version: str):
        form = bottle.request.forms
        checked = self._consent_request(form)
        if isinstance(checked, bottle.HTTPResponse):
            return checked
        params, redirect_uri = checked
        state = {"state": params["state"]} if params["state"] else {}
        if _arg(form, "decision") != "accept":
            return bottle.HTTPResponse(status=302, headers={"Location": _append_query(
                redirect_uri, {"error": "access_denied",
                               "error_description": "The customer refused to share his data",
                               **state})})
        prms = []
        for prm in form.getall("usage_point_id"):
            if prm in METERS and prm not in prms:
                prms.append(prm)
        if not prms or (version == "v2" and len(prms) != 1):
            message = ("Choisissez au moins un compteur." if version == "v1"
                       else "Choisissez un compteur, et un seul.")
            return self._consent_form(version, params, redirect_uri, 400, message)
        if version == "v1":
            code = self._new_secret()
            with self._lock:
                self._purge()
                self._codes[code] = {
                    "client_id": self.client_id, "prms": tuple(prms),
                    "redirect_uri": redirect_uri,
                    "explicit_redirect_uri": bool(params["redirect_uri"]),
                    "code_challenge": params["code_challenge"],
                    "expires": self.clock() + CODE_LIFETIME,
                }
            query = {"code": code, **state, "usage_point_id": ";".join(prms)}
        else:
            autorisation_id = self._autorisation_id(prms[0])
            today = self._today()
            with self._lock:
                # Real Enedis: sharing an already shared PRM fails, and the
                # browser never comes back to the application.
                refused = self.v2_reshare_fails and autorisation_id in self._autorisations
                if not refused:
                    self._shares += 1
                    self._autorisations[autorisation_id] = {
                        "client_id": self.client_id, "prms": (prms[0],),
                        "start": today, "end": _add_duration(today, params["duration"]),
                        "lookups": 0,  # for subscribed_delay_calls
                        "share": self._shares,  # a share made again opens new services
                    }
            if refused:
                return _error_page(400, "Une erreur est survenue lors du partage de vos "
                                        "données. (Ce compteur est déjà partagé avec cette "
                                        "application.)")
            query = {"autorisation_id": str(autorisation_id), **state}
        return bottle.HTTPResponse(status=302,
                                   headers={"Location": _append_query(redirect_uri, query)})

    def _autorisation_id(self, prm: str) -> int:
        # Stable for (application, meter), like Enedis: sharing again gives
        # the same id, even across restarts of the simulator.
        digest = hashlib.sha256(f"{self.client_id}|{prm}".encode()).hexdigest()
        return 100_000_000 + int(digest[:12], 16) % 900_000_000

    # -- 3. subscribed services (v2 consent -> PRM) -------------------------

    def subscribed_services(self):
        info, error = self._bearer(allow_v1=False)
        if error:
            return error
        try:
            query = json.loads(bottle.request.body.read() or b"null")
        except ValueError:
            query = None
        if not isinstance(query, dict):
            return _json(400, {"code": "400", "message": "La syntaxe de la requête est erronée."})
        if not isinstance(query.get("comptage"), bool):
            return _json(400, {"code": "400", "message": "Le champ comptage est obligatoire"})
        wanted_id = query.get("autorisationId")
        if isinstance(wanted_id, str) and wanted_id.isdigit():
            wanted_id = int(wanted_id)
        points = query.get("pointId")
        if wanted_id is None and not points:
            return _json(400, {"code": "400", "message":
                               "pointId, siren ou autorisationId doit être renseigné"})
        states = query.get("etatCode") or ["ACTIF", "DEMANDE"]
        services = []
        with self._lock:
            for autorisation_id, consent in self._autorisations.items():
                if consent["client_id"] != info["client_id"]:
                    continue
                if wanted_id is not None and autorisation_id != wanted_id:
                    continue
                if points and not set(points) & set(consent["prms"]):
                    continue
                consent["lookups"] += 1
                if consent["lookups"] <= self.subscribed_delay_calls:
                    continue  # the service is not visible yet
                services += self._services(autorisation_id, consent)
        services = [s for s in services if s["etatCode"] in states
                    and s["serviceCode"] == query.get("serviceType", "ACCES")]
        if query["comptage"]:
            return _json(200, {"nbTotalServices": len(services)})
        return _json(200, {"nbTotalServices": len(services), "serviceSouscrit": services})

    @staticmethod
    def _services(autorisation_id: int, consent: dict) -> list[dict]:
        """The services that a Data Connect consent opens on each PRM."""
        services = []
        for prm in consent["prms"]:
            kinds = [("ENERGIE", "P1D", False), ("CDC", "PT30M", False),
                     ("PMAX", "P1D", False), ("IDX", "P1D", False), ("ITC", "NA", False)]
            if meter_for(prm).producer:
                kinds += [("ENERGIE", "P1D", True), ("CDC", "PT30M", True),
                          ("IDX", "P1D", True)]
            for n, (measure, step, injection) in enumerate(kinds):
                services.append({
                    "id": f"{autorisation_id}{consent.get('share', 0):04d}{n:02d}",
                    "injection": injection,
                    "soutirage": not injection,
                    "serviceCode": "ACCES",
                    "dateDebut": consent["start"].isoformat(),
                    "dateFin": consent["end"].isoformat(),
                    "etatCode": "ACTIF",
                    "etatLibelle": "Actif",
                    "pointId": prm,
                    "mesuresTypeCode": measure,
                    "mesuresPas": step,
                    "mesuresCorrigees": False,
                    "espaceDynamique": False,
                    "publicationDonnees": False,
                    "autorisation": {"autorisationId": autorisation_id,
                                     "autorisationLibelle": "Autorisation Data Connect",
                                     "autorisationType": "EXPLICITE"},
                })
        return services

    # -- 4, 5. tokens -------------------------------------------------------

    def _client_credentials(self):
        """(form, None) or (None, error response): content type + client auth."""
        request = bottle.request
        if request.content_type.split(";")[0].strip() != "application/x-www-form-urlencoded":
            return None, _oauth_error(400, "invalid_request", "Le Content-Type doit être "
                                      "application/x-www-form-urlencoded")
        form = request.forms
        client_id, client_secret = _arg(form, "client_id"), _arg(form, "client_secret")
        if request.auth and request.auth[0]:  # HTTP Basic, also accepted by Enedis
            client_id, client_secret = request.auth
        if not _arg(form, "grant_type") or not client_id:
            return None, _oauth_error(400, "invalid_request", "The request is missing a "
                                      "required parameter")
        if client_id != self.client_id or (
                self.client_secret is not None
                and not _same(client_secret or "", self.client_secret)):
            return None, _oauth_error(401, "invalid_client", "Client authentication failed "
                                      "(e.g., unknown client, no client authentication "
                                      "included, or unsupported authentication method)")
        return form, None

    def _purge(self) -> None:
        """Forget expired tokens and codes; caller holds the lock."""
        now = self.clock()
        for store in (self._tokens, self._refresh_tokens, self._codes):
            for key in [k for k, v in store.items() if v["expires"] <= now]:
                del store[key]

    def token_v3(self):
        form, error = self._client_credentials()
        if error:
            return error
        if _arg(form, "grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "The authorization grant "
                                "type is not supported by the authorization server")
        token = self._new_secret()
        with self._lock:
            self._purge()
            self._tokens[token] = {"kind": "v3", "client_id": self.client_id, "prms": None,
                                   "expires": self.clock() + self.token_lifetime}
        return _json(200, {"access_token": token, "token_type": "Bearer",
                           # a string, as Enedis's swagger (and Enedis) does
                           "expires_in": str(self.token_lifetime),
                           "scope": "am_application_scope default"},
                     {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def token_v1(self):
        form, error = self._client_credentials()
        if error:
            return error
        grant_type = _arg(form, "grant_type")
        invalid_grant = _oauth_error(400, "invalid_grant", "The provided authorization grant "
                                     "or refresh token is invalid, expired, revoked, does not "
                                     "match the redirection URI used in the authorization "
                                     "request, or was issued to another client")
        if grant_type == "authorization_code":
            code = _arg(form, "code")
            if not code:
                return _oauth_error(400, "invalid_request", "code parameter is required")
            with self._lock:
                grant = self._codes.pop(code, None)  # single use, even if refused below
            if grant is None or grant["expires"] <= self.clock():
                return invalid_grant
            redirect_uri = _arg(form, "redirect_uri")
            if (grant["explicit_redirect_uri"] or redirect_uri) and (
                    redirect_uri != grant["redirect_uri"]):
                return invalid_grant
            if grant["code_challenge"]:
                verifier = _arg(form, "code_verifier") or ""
                if not _same(_s256(verifier), grant["code_challenge"]):
                    return invalid_grant
            prms = grant["prms"]
        elif grant_type == "refresh_token":
            refresh = _arg(form, "refresh_token")
            if not refresh:
                return _oauth_error(400, "invalid_request", "refresh_token parameter is "
                                    "required")
            with self._lock:
                grant = self._refresh_tokens.pop(refresh, None)  # rotated
            if grant is None or grant["expires"] <= self.clock():
                return invalid_grant
            prms = grant["prms"]
        else:
            return _oauth_error(400, "unsupported_grant_type", "The authorization grant type "
                                "is not supported by the authorization server")
        access, refresh = self._new_secret(), self._new_secret()
        now = self.clock()
        with self._lock:
            self._purge()
            self._tokens[access] = {"kind": "v1", "client_id": self.client_id, "prms": prms,
                                    "expires": now + self.token_lifetime}
            self._refresh_tokens[refresh] = {"prms": prms, "expires": now + REFRESH_LIFETIME}
        issued_at = str(int(now * 1000))
        return _json(200, {"access_token": access, "refresh_token": refresh,
                           "token_type": "Bearer", "expires_in": self.token_lifetime,
                           "scope": "", "refresh_token_issued_at": issued_at,
                           "issued_at": issued_at, "usage_points_id": ",".join(prms)},
                     {"Cache-Control": "no-store", "Pragma": "no-cache"})

    # -- 6. v5 data ---------------------------------------------------------

    def _period_error(self, prm: str, start: dt.date, end: dt.date, kind: str,
                      direction: str, allow_empty: bool):
        """(status, error, description) when Enedis would refuse the period."""
        meter = meter_for(prm)
        today = self._today()
        if direction == "PROD" and not meter.producer:
            return 400, "ADAM-ERR0069", "Le sens de la mesure ne correspond pas pour le PRM demandé"
        if end > today:
            return 400, "Invalid_request", "The end date parameter must be earlier than the current date."
        if start > end or (start == end and not allow_empty):
            return 400, "Invalid_request", "Start date should be before end date"
        if kind == "curve" and (end - start).days > 7:
            return (400, "ADAM-ERR0126", "The requested period must be less than 7 days for "
                    "an access to the load curve.")
        if kind != "curve" and (end - start).days > 365:
            return 400, "Invalid_request", "The requested period must be less than 365 days"
        history = 24 if kind == "curve" else 36  # months, plus 15 days
        if start < _minus_months(today, history) - dt.timedelta(days=15):
            return 400, "ADAM-ERR0125", "The start date must be greater than the history deadline."
        activation = (meter.production_activation if direction == "PROD"
                      else meter.consumption_activation)
        if start < activation:
            return (400, "ADAM-ERR0123", "The requested period cannot be anterior to the "
                    "meter's last activation date")
        return None

    def _v5_usage_point(self):
        """(prm, None) or (None, error response): switch, token, usage_point_id."""
        if not self.v5_enabled:
            # A switched-off API: the gateway no longer knows the resource.
            return None, _not_found()
        info, error = self._bearer(allow_v1=True)
        if error:
            return None, error
        prm = _arg(bottle.request.query, "usage_point_id")
        if not prm:
            return None, _v5_error(400, "Invalid_request", "usage_point_id parameter is required")
        if not is_usage_point(prm):
            return None, _v5_error(400, "Invalid_request",
                                   "usage_point_id parameter must be 14 digits long")
        if info["prms"] is not None and prm not in info["prms"]:  # a v1 (customer) token
            return None, _v5_error(403, "ADAM-DC-0008", "No consent can be found for this "
                                   "customer and this usage point.")
        return prm, None

    def v5_measure(self, kind: str, direction: str):
        prm, error = self._v5_usage_point()
        if error:
            return error
        query = bottle.request.query
        dates = {}
        for name, label in (("start", "Start"), ("end", "End")):
            raw = _arg(query, name)
            if not raw:
                return _v5_error(400, "Invalid_request", f"{label} date parameter is required")
            dates[name] = _parse_date(raw)
            if dates[name] is None:
                return _v5_error(400, "Invalid_request",
                                 f"{label} date parameter must be in the format YYYY-MM-DD")
        start, end = dates["start"], dates["end"]
        refused = self._period_error(prm, start, end, kind, direction, allow_empty=False)
        if refused:
            return _v5_error(*refused)
        reading = {"usage_point_id": prm, "start": start.isoformat(), "end": end.isoformat(),
                   "quality": "BRUT"}
        if kind == "curve":
            reading["reading_type"] = {"unit": "W", "measurement_kind": "power",
                                       "aggregate": "average"}
            reading["interval_reading"] = [
                {"value": str(v), "date": d, "interval_length": "PT30M", "measure_type": "B"}
                for d, v in curve_points(prm, start, end, direction)]
        elif kind == "daily":
            reading["reading_type"] = {"measurement_kind": "energy", "measuring_period": "P1D",
                                       "unit": "Wh", "aggregate": "sum"}
            reading["interval_reading"] = [
                {"value": str(daily_energy(prm, day, direction)), "date": day.isoformat()}
                for day in days(start, end)]
        else:
            reading["reading_type"] = {"measurement_kind": "power", "measuring_period": "P1D",
                                       "unit": "VA", "aggregate": "maximum"}
            reading["interval_reading"] = [
                {"value": str(va), "date": when}
                for va, when in (max_power(prm, day) for day in days(start, end))]
        return _json(200, {"meter_reading": reading})

    def v5_customer(self, name: str):
        prm, error = self._v5_usage_point()
        if error:
            return error
        meter = meter_for(prm)
        usage_point = {"usage_point_id": prm, "usage_point_status": "com", "meter_type": "AMM"}
        if name == "contracts":
            contract = {
                "segment": "C5",
                "subscribed_power": f"{meter.kva} kVA",
                "last_activation_date": _v5_date(meter.consumption_activation),
                "distribution_tariff": "BTINFMU4" if meter.tariff == "HPHC" else "BTINFCUST",
                "contract_type": "Contrat GRD-F",
                "contract_status": "SERVC",
                "last_distribution_tariff_change_date": _v5_date(meter.contract_start),
            }
            if meter.offpeak_hours:
                contract["offpeak_hours"] = meter.offpeak_hours
            return _json(200, {"customer": {"customer_id": meter.customer_id, "usage_points": [
                {"usage_point": usage_point, "contracts": contract}]}})
        if name == "addresses":
            usage_point["usage_point_addresses"] = {
                "street": meter.street, "locality": None, "postal_code": meter.postal_code,
                "insee_code": meter.insee_code, "city": meter.city, "country": "France",
                "geo_points": {"latitude": meter.latitude, "longitude": meter.longitude,
                               "altitude": meter.altitude}}
            return _json(200, {"customer": {"customer_id": meter.customer_id,
                                            "usage_points": [{"usage_point": usage_point}]}})
        if name == "identity":  # shape of openapi-v5/10-customer.json
            return _json(200, {"customer_id": meter.customer_id, "identity": {
                "natural_person": {"title": meter.title, "firstname": meter.firstname,
                                   "lastname": meter.lastname}}})
        # contact_data, shape of openapi-v5/11-contact.json
        return _json(200, {"customer_id": meter.customer_id,
                           "contact": {"phone": meter.phone, "email": meter.email}})

    # -- 7. Data Connect 2026 -----------------------------------------------

    def mesure_2026(self, kind: str, direction: str):
        info, error = self._bearer(allow_v1=False)
        if error:
            return error
        query = bottle.request.query
        prm = _arg(query, "pointId")
        start, end = _parse_date(_arg(query, "dateDebut")), _parse_date(_arg(query, "dateFin"))
        # Enedis answers 500, not 400, to anything outside its Swagger.
        if not prm or not is_usage_point(prm) or start is None or end is None:
            return _technical_error()
        step = _arg(query, "mesuresPas")
        if kind == "pmax" and (step not in ("P1D", "P1M")
                               or _arg(query, "grandeurPhysique") not in ("PMA", "TOUT")):
            return _technical_error()
        # The load curve refuses dateFin == dateDebut (its Swagger says so);
        # the daily APIs answer an empty list.
        refused = self._period_error(prm, start, end, kind, direction,
                                     allow_empty=kind != "curve")
        if refused:
            return _v5_error(*refused)
        answer = {"idPrm": prm, "etapeMetier": "BRUT",
                  "periode": {"dateDebut": start.isoformat(), "dateFin": end.isoformat()}}
        if kind == "curve":
            answer["modeCalcul"] = "MESURE"
            grandeur = {"grandeurMetier": direction, "grandeurPhysique": "PA", "unite": "W",
                        "points": [{"v": str(v), "d": d, "p": "PT30M", "n": "B", "iv": "0",
                                    "ec": "0"}
                                   for d, v in curve_points(prm, start, end, direction)]}
        elif kind == "daily":
            answer.update({"typeValeur": "GLOBALE", "modeCalcul": "DIFF.INDEX", "pas": "P1D"})
            grandeur = {"grandeurMetier": direction, "grandeurPhysique": "EA", "unite": "Wh",
                        "points": [{"v": str(daily_energy(prm, day, direction)),
                                    "d": day.isoformat()} for day in days(start, end)]}
        else:
            answer.update({"modeCalcul": "MESURE", "pas": step})
            maxima = (monthly_max_power(prm, start, end) if step == "P1M"
                      else [max_power(prm, day) for day in days(start, end)])
            # Single-phase meters: TOUT has nothing more than PMA.
            grandeur = {"grandeurMetier": "CONS", "grandeurPhysique": "PMA", "unite": "VA",
                        "points": [{"v": str(va), "d": when} for va, when in maxima]}
        grandeur["calendrier"] = []
        answer["grandeur"] = [grandeur]
        answer["contexte"] = []
        return _json(200, answer)

    def itc_2026(self, name: str, prm: str):
        info, error = self._bearer(allow_v1=False)
        if error:
            return error
        if name == "comptage_auto" and not self.comptage_subscribed:
            return self._default_failure(403, "", None)  # 900908, as on 2026-10-04
        if not is_usage_point(prm):
            return _json(404, {"code": "404", "message": "PRM non existant"})
        meter = meter_for(prm)
        stamp = _itc_date
        if name == "situation_contrat_auto":
            person = {"title": meter.title, "lastname": meter.lastname,
                      "firstname": meter.firstname}
            contact = {"email": meter.email, "phone": meter.phone}
            address = {"customer": {"adress": {  # sic, as Enedis spells it
                "line1": f"{meter.title} {meter.firstname} {meter.lastname}",
                "line4": meter.street, "line6": f"{meter.postal_code} {meter.city}",
                "line7": "FRANCE"}}}
            contracts = [{
                "usage_point_id": prm, "contract_start": stamp(meter.contract_start),
                "contract_type": "Contrat GRD-F", "contractor": "Fournisseur Démo",
                "distribution_tariff": meter.distribution_tariff,
                "subscribed_power": {"unit": "kVA", "value": str(meter.kva)},
                "segment": "C5", "customer": address, "contact_data": contact,
                "person": person}]
            if meter.producer:  # the injection contract, without power
                contracts.append({
                    "usage_point_id": prm,
                    "contract_start": stamp(meter.production_activation),
                    "contract_type": "Contrat GRD-A", "segment": "P4", "customer": address,
                    "contact_data": contact, "person": person})
            return _json(200, contracts)
        if name == "synth_contrat_auto":
            synth = {"segments": [{"segment": "C5"}] + ([{"segment": "P4"}]
                                                       if meter.producer else [])}
            if meter.producer:
                synth["generation_last_activation_date"] = stamp(meter.production_activation)
            synth["consumption_last_activation_date"] = stamp(meter.consumption_activation)
            synth["last_subscribed_power_change_date"] = stamp(meter.contract_start)
            synth["services_level"] = "Communicant (ouvert aux services)"
            return _json(200, synth)
        if name == "comptage_auto":
            relay = {"plageHeuresCreuses": meter.offpeak_hours} if meter.offpeak_hours else {}
            return _json(200, {
                "dispositifComptage": {"typeComptage": {"code": "AMM",
                                                        "libelle": "Compteur Linky"}},
                "compteurs": [{"numeroSerie": "0" + prm[-11:],
                               "regimePropriete": {"code": "LOUE", "libelle": "Loué"}}],
                "relais": relay})
        return _json(200, {"address": {  # donnees_generales_auto
            "number_street_name": meter.street,
            "postal_code_city": f"{meter.postal_code} {meter.city}",
            "insee_code": meter.insee_code}})

    # -- 8. failure injection and statistics --------------------------------

    def _knobs(self) -> dict:
        with self._lock:
            return {"calls": dict(self.calls), "delay": self.delay,
                    "v5_enabled": self.v5_enabled, "fail": [dict(f) for f in self.fail],
                    "subscribed_delay_calls": self.subscribed_delay_calls,
                    "token_lifetime": self.token_lifetime,
                    "comptage_subscribed": self.comptage_subscribed,
                    "v2_reshare_fails": self.v2_reshare_fails}

    def _control_allowed(self) -> bool:
        scheme, _, token = (bottle.request.get_header("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                                   self.control_token.encode())

    def control(self):
        """Set knobs: {"reset", "delay", "v5_enabled", "fail", ...}; answers the state."""
        # The token first: nothing of an unauthenticated request is read, nothing changes.
        if not self._control_allowed():
            return _json(401, {"error": "invalid_token",
                               "error_description": "POST /_control needs Authorization: Bearer <control token>"},
                         {"WWW-Authenticate": 'Bearer realm="Enedis simulator control"'})
        if (bottle.request.content_length or 0) > CONTROL_MAX_BODY:
            return _json(413, {"error": "invalid_request",
                               "error_description": f"at most {CONTROL_MAX_BODY} bytes"})
        try:
            changes = json.loads(bottle.request.body.read(CONTROL_MAX_BODY) or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("a JSON object is expected")
            failures = changes.get("fail", [])
            failures = [failures] if isinstance(failures, dict) else failures
            if not isinstance(failures, list):
                raise ValueError("fail must be an object or a list")
            for entry in failures:
                _check_failure(entry)
            for name, kind in (("v5_enabled", bool), ("comptage_subscribed", bool),
                               ("v2_reshare_fails", bool), ("reset", bool),
                               ("revoke_tokens", bool)):
                if name in changes and not isinstance(changes[name], kind):
                    raise ValueError(f"{name} must be a boolean")
            delay = float(changes.get("delay", self.delay))
            subscribed_delay_calls = int(changes.get("subscribed_delay_calls",
                                                     self.subscribed_delay_calls))
            token_lifetime = int(changes.get("token_lifetime", self.token_lifetime))
            if not (0 <= delay <= MAX_DELAY and 0 <= subscribed_delay_calls <= MAX_SUBSCRIBED_DELAY_CALLS
                    and 1 <= token_lifetime <= REFRESH_LIFETIME):
                raise ValueError(f"out of range (delay 0-{MAX_DELAY:g} s, subscribed_delay_calls "
                                 f"0-{MAX_SUBSCRIBED_DELAY_CALLS}, token_lifetime 1-{REFRESH_LIFETIME} s)")
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            return _json(400, {"error": "invalid_request", "error_description": str(exc)[:200]})
        if changes.get("reset"):
            self.reset()
        with self._lock:
            if len(self.fail) + len(failures) > MAX_FAILURES:
                return _json(400, {"error": "invalid_request",
                                   "error_description": f"at most {MAX_FAILURES} failures pending"})
            if changes.get("revoke_tokens"):  # Enedis forgetting its tokens
                self._tokens.clear()
            self.delay = delay if "delay" in changes else self.delay
            self.subscribed_delay_calls = subscribed_delay_calls if (
                "subscribed_delay_calls" in changes) else self.subscribed_delay_calls
            self.token_lifetime = token_lifetime if (
                "token_lifetime" in changes) else self.token_lifetime
            for name in ("v5_enabled", "comptage_subscribed", "v2_reshare_fails"):
                if name in changes:
                    setattr(self, name, changes[name])
            self.fail.extend(dict(entry) for entry in failures)
        return _json(200, self._knobs())

    def reset(self) -> None:
        """Knobs back to their defaults and counters to zero.

        Tokens, codes and consents stay: a running proxy keeps working.
        """
        with self._lock:
            self.delay = 0.0
            self.v5_enabled = True
            self.fail = []
            self.subscribed_delay_calls = 0
            self.token_lifetime = 12600
            self.comptage_subscribed = True
            self.v2_reshare_fails = False
            self.calls.clear()

    def stats(self):
        return _json(200, self._knobs())
