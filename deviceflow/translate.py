"""Translation between the Enedis v5 data APIs and the Data Connect 2026 APIs.

Devices (DomoticzLinky 2.6.0 and others) still call the v5 paths through
``/data/proxy``. Enedis replaced those APIs on 2026-09-28, so in ``new`` and
``auto`` modes the proxy asks the 2026 APIs and answers in the v5 shape.
Everything here is a pure function: no HTTP, no Bottle, no clock.

Public API
----------
``to_new(v5_path, params) -> tuple[NewCall, ...] | None``
    The 2026 calls that answer a v5 request, in order; ``None`` when the v5
    path has no 2026 equivalent (the proxy then forwards v5 as is). Raises
    ``RequestRejected`` for a request Enedis would refuse anyway.
``to_v5(v5_path, params, responses) -> (status, body)``
    Builds the v5 answer from ``[(status, body), ...]``, one pair per call of
    ``to_new``, in the same order (trailing optional calls may be missing).
    ``body`` is the decoded JSON, or the raw ``str``/``bytes``. Never raises
    on what Enedis sent: an unexpected body becomes an ``upstream_error``.
``should_fall_back(status, body) -> bool``
    ``ENEDIS_API_MODE=auto``: whether to retry the request on v5.
``RequestRejected(status, error, description)``
    Exception carrying an Enedis-like v5 error to answer without calling.

v5 fields that the 2026 APIs do not give, hence left out
--------------------------------------------------------
- contracts: ``customer_id``, ``usage_point_status``, ``contract_status``,
  ``last_distribution_tariff_change_date``. ``distribution_tariff`` is the
  2026 label ("Tarif BT<=36kVA ..."), not the v5 code ("BTINFCUST").
  ``meter_type`` and ``offpeak_hours`` need ``comptage_auto``,
  ``last_activation_date`` needs ``synth_contrat_auto``: each is left out
  when that call failed (e.g. ``900908``, API not subscribed).
- addresses: ``customer_id``, ``usage_point_status``, ``meter_type``,
  ``country``, ``geo_points``; ``postal_code`` only when ``postal_code_city``
  starts with a 5-digit code (else all of it goes to ``city``).
- identity: ``customer_id``; ``legal_entity.business`` and ``industry``.
- contact_data: ``customer_id``; v5 had one ``phone`` (landline): the
  landline is given, else the mobile.
- measures: nothing a v5 client reads is lost (the 2026 ``iv``/``ec`` point
  attributes have no v5 counterpart and are dropped).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from deviceflow.usage_points import is_usage_point

# v5 paths, as devices send them after /data/proxy/
DAILY_CONSUMPTION = "metering_data_dc/v5/daily_consumption"
CONSUMPTION_LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"
DAILY_CONSUMPTION_MAX_POWER = "metering_data_dcmp/v5/daily_consumption_max_power"
DAILY_PRODUCTION = "metering_data_dp/v5/daily_production"
PRODUCTION_LOAD_CURVE = "metering_data_plc/v5/production_load_curve"
USAGE_POINTS_CONTRACTS = "customers_upc/v5/usage_points/contracts"
USAGE_POINTS_ADDRESSES = "customers_upa/v5/usage_points/addresses"
IDENTITY = "customers_i/v5/identity"
CONTACT_DATA = "customers_cd/v5/contact_data"

# 2026 paths, relative to DATA_ENDPOINT
MEASURE_BASE = "mesure_synchrone_auto/v2"
SITUATION_CONTRAT = "situation_contrat_auto/v1"
SYNTH_CONTRAT = "synth_contrat_auto/v1"
COMPTAGE = "comptage_auto/v1"
DONNEES_GENERALES = "donnees_generales_auto/v1"

# The soutirage contract: the one v5 described for a self-consumption point
SOUTIRAGE_CONTRACT_TYPE = "Contrat GRD-F"

ADAM_ERR0123 = "ADAM-ERR0123"
UPSTREAM_ERROR = "upstream_error"
INVALID_REQUEST = "invalid_request"

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_DESCRIPTION = 300


@dataclass(frozen=True)
class NewCall:
    """One Data Connect 2026 request."""

    path: str  # relative to DATA_ENDPOINT, no leading slash
    query: Mapping[str, str] = field(default_factory=dict)
    method: str = "GET"


class RequestRejected(Exception):
    """A v5 request answered locally with an Enedis-like error.

    Raised where the 2026 API would refuse the request, or answer it with a
    500 that hides the cause (the gateway answers 500 to anything outside
    its Swagger, and DomoticzLinky retries on a 500).
    """

    def __init__(self, status: int, error: str, description: str):
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    @property
    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass(frozen=True)
class _Measure:
    path: str
    metier: str  # grandeurMetier
    physique: str  # grandeurPhysique
    unit: str
    measurement_kind: str
    aggregate: str
    # None for load curves: v5 gave their step per point (interval_length)
    measuring_period: str | None
    extra_query: tuple[tuple[str, str], ...] = ()

    @property
    def load_curve(self) -> bool:
        return self.measuring_period is None


_MEASURES = {
    DAILY_CONSUMPTION: _Measure(f"{MEASURE_BASE}/consommation_quotidienne", "CONS", "EA", "Wh", "energy", "sum", "P1D"),
    CONSUMPTION_LOAD_CURVE: _Measure(
        f"{MEASURE_BASE}/courbe_de_charge_consommation", "CONS", "PA", "W", "power", "average", None
    ),
    DAILY_CONSUMPTION_MAX_POWER: _Measure(
        f"{MEASURE_BASE}/puissance_conso_max_quotidienne",
        "CONS",
        "PMA",
        "VA",
        "power",
        "maximum",
        "P1D",
        (("mesuresPas", "P1D"), ("grandeurPhysique", "PMA")),
    ),
    DAILY_PRODUCTION: _Measure(f"{MEASURE_BASE}/production_quotidienne", "PROD", "EA", "Wh", "energy", "sum", "P1D"),
    PRODUCTION_LOAD_CURVE: _Measure(
        f"{MEASURE_BASE}/courbe_de_charge_production", "PROD", "PA", "W", "power", "average", None
    ),
}

# v5 customer path -> the 2026 APIs asked, in order; the first one is required
_CUSTOMERS = {
    USAGE_POINTS_CONTRACTS: (SITUATION_CONTRAT, SYNTH_CONTRAT, COMPTAGE),
    USAGE_POINTS_ADDRESSES: (DONNEES_GENERALES,),
    IDENTITY: (SITUATION_CONTRAT,),
    CONTACT_DATA: (SITUATION_CONTRAT,),
}


# ---------------------------------------------------------------- requests


def to_new(v5_path: str, params: Mapping[str, str]) -> tuple[NewCall, ...] | None:
    """The 2026 calls answering a v5 request, or None if there are none."""
    path = v5_path.strip("/")
    measure = _MEASURES.get(path)
    if measure is not None:
        prm = _checked_prm(params)
        start, end = _checked_period(params, measure)
        query = {"pointId": prm, "dateDebut": start, "dateFin": end, **dict(measure.extra_query)}
        return (NewCall(measure.path, query),)
    apis = _CUSTOMERS.get(path)
    if apis is not None:
        prm = _checked_prm(params)
        # The PRM goes in the path: given as a query parameter, Enedis answers 500
        return tuple(NewCall(f"{api}/{prm}") for api in apis)
    return None


def _checked_prm(params: Mapping[str, str]) -> str:
    prm = params.get("usage_point_id")
    if not prm:
        raise RequestRejected(400, INVALID_REQUEST, "usage_point_id parameter is required")
    if not is_usage_point(prm):
        raise RequestRejected(400, INVALID_REQUEST, "usage_point_id parameter must be 14 digits long")
    return prm


def _checked_period(params: Mapping[str, str], measure: _Measure) -> tuple[str, str]:
    start = _checked_day(params, "start", "Start")
    end = _checked_day(params, "end", "End")
    # Both APIs exclude the end day. The 2026 load curve refuses
    # dateFin == dateDebut, and v5 refused any start not before end.
    if end < start or (end == start and measure.load_curve):
        raise RequestRejected(400, INVALID_REQUEST, "Start date should be before end date")
    return start, end


def _checked_day(params: Mapping[str, str], name: str, label: str) -> str:
    value = params.get(name)
    if not value:
        raise RequestRejected(400, INVALID_REQUEST, f"{label} date parameter is required")
    if not _is_day(value):
        raise RequestRejected(400, INVALID_REQUEST, f"{label} date parameter must be in the format YYYY-MM-DD")
    return value  # ISO days compare as strings


def _is_day(value: str) -> bool:
    # fromisoformat alone also takes 20260929 and week dates
    if not _DAY.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------- responses


def to_v5(
    v5_path: str, params: Mapping[str, str], responses: Sequence[tuple[int | None, Any]]
) -> tuple[int, dict[str, Any]]:
    """The v5 answer (status, body) built from the 2026 responses."""
    path = v5_path.strip("/")
    if not responses:
        raise ValueError("to_v5 needs the response of at least the first call")
    status, body = responses[0]
    body = _decoded(body)
    if not _is_success(status):
        return _error_answer(status, body)

    prm = params.get("usage_point_id", "")
    measure = _MEASURES.get(path)
    if measure is not None:
        reading = _meter_reading(measure, params, body)
        return _ok_or_unexpected(status, reading and {"meter_reading": reading})

    contract = _main_contract(body)
    if path == USAGE_POINTS_CONTRACTS:
        optional = [_decoded(b) if _is_success(s) else None for s, b in responses[1:]]
        synth, comptage = (optional + [None, None])[:2]
        return _ok_or_unexpected(status, contract and _v5_contracts(prm, contract, synth, comptage))
    if path == IDENTITY:
        return _ok_or_unexpected(status, contract and {"identity": _v5_identity(contract)})
    if path == CONTACT_DATA:
        return _ok_or_unexpected(status, contract and {"contact": _v5_contact(contract)})
    if path == USAGE_POINTS_ADDRESSES:
        return _ok_or_unexpected(status, _v5_addresses(prm, body))
    raise ValueError(f"no 2026 translation for {v5_path!r}")


def _is_success(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _ok_or_unexpected(status: int, body: dict | None) -> tuple[int, dict[str, Any]]:
    if body:
        return status, body
    # A success we cannot read is the gateway's fault, not the client's:
    # 502 rather than a 200 without data (old clients would store nothing)
    return 502, _unexpected(status)


def _decoded(body: Any) -> Any:
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the stack
            return body
    return body


# measures


def _meter_reading(measure: _Measure, params: Mapping[str, str], body: Any) -> dict | None:
    if not isinstance(body, dict) or not isinstance(body.get("grandeur"), list):
        return None
    grandeur = _pick_grandeur(body["grandeur"], measure) or {}
    points = grandeur.get("points") if isinstance(grandeur.get("points"), list) else []
    step = body.get("pas") if isinstance(body.get("pas"), str) else None
    readings = [r for r in (_interval_reading(p, measure, step) for p in points) if r]

    reading_type = {
        "unit": _string(grandeur.get("unite")) or measure.unit,
        "measurement_kind": measure.measurement_kind,
        "aggregate": measure.aggregate,
    }
    if not measure.load_curve:
        reading_type["measuring_period"] = step or measure.measuring_period
    periode = body.get("periode") if isinstance(body.get("periode"), dict) else {}
    return {
        "usage_point_id": _string(body.get("idPrm")) or params.get("usage_point_id"),
        "start": _string(periode.get("dateDebut")) or params.get("start"),
        "end": _string(periode.get("dateFin")) or params.get("end"),
        # v5 always carried it; BRUT is what it said for these APIs
        "quality": _string(body.get("etapeMetier")) or "BRUT",
        "reading_type": reading_type,
        "interval_reading": readings,
    }


def _pick_grandeur(grandeurs: list, measure: _Measure) -> dict | None:
    same_kind = [g for g in grandeurs if isinstance(g, dict) and g.get("grandeurMetier") == measure.metier]
    for grandeur in same_kind:
        if grandeur.get("grandeurPhysique") == measure.physique:
            return grandeur
    # An unexpected grandeurPhysique must not silently empty the answer
    return same_kind[0] if same_kind else None


def _interval_reading(point: Any, measure: _Measure, step: str | None) -> dict | None:
    if not isinstance(point, dict):
        return None
    value, when = _text(point.get("v")), point.get("d")
    # v5 required both; a client cannot use a point without them
    if value is None or not isinstance(when, str) or not when:
        return None
    # Dates are kept as Enedis gave them: for load curves both v5 and 2026
    # stamp the END of the interval (same 96 points measured on 2026-10-04)
    reading = {"value": value, "date": when}
    if measure.load_curve:
        interval = _string(point.get("p")) or step
        if interval:
            reading["interval_length"] = interval
        if _string(point.get("n")):
            reading["measure_type"] = point["n"]
    return reading


def _string(value: Any) -> str | None:
    """A non-empty string of the answer, or None: a v5 client expects text where v5 had text."""
    return value if isinstance(value, str) and value else None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# contracts, identity, contact, address


def _main_contract(body: Any) -> dict | None:
    contracts = body.get("contracts") if isinstance(body, dict) and "contracts" in body else body
    if isinstance(contracts, dict):
        contracts = [contracts]
    if not isinstance(contracts, list):
        return None
    contracts = [c for c in contracts if isinstance(c, dict)]
    for contract in contracts:
        if contract.get("contract_type") == SOUTIRAGE_CONTRACT_TYPE:
            return contract
    return contracts[0] if contracts else None


def _v5_contracts(prm: str, contract: dict, synth: Any, comptage: Any) -> dict:
    contracts: dict[str, str] = {}
    for key in ("segment", "distribution_tariff", "contract_type"):
        if isinstance(contract.get(key), str):
            contracts[key] = contract[key]
    power = _subscribed_power(contract.get("subscribed_power"))
    if power:
        contracts["subscribed_power"] = power
    if isinstance(synth, dict):
        activation = synth.get("consumption_last_activation_date") or synth.get("generation_last_activation_date")
        if isinstance(activation, str):
            contracts["last_activation_date"] = _v5_date(activation)

    usage_point = {"usage_point_id": prm}
    if isinstance(comptage, dict):
        offpeak = _get(comptage, "relais", "plageHeuresCreuses")
        if isinstance(offpeak, str) and offpeak.strip():
            contracts["offpeak_hours"] = offpeak.strip()
        meter_type = _get(comptage, "dispositifComptage", "typeComptage", "code")
        if isinstance(meter_type, str):
            usage_point["meter_type"] = meter_type
    return {"customer": {"usage_points": [{"usage_point": usage_point, "contracts": contracts}]}}


def _subscribed_power(power: Any) -> str | None:
    if isinstance(power, str):
        return power
    if isinstance(power, dict) and _text(power.get("value")) is not None:
        return f"{_text(power['value'])} {_string(power.get('unit')) or 'kVA'}"
    return None


def _v5_date(value: str) -> str:
    # 2026: 2018-08-31T00:00:00+0200; v5: 2018-08-31+02:00
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:T[0-9:.]+)?(?:(Z)|([+-]\d{2}):?(\d{2}))?", value)
    if not match:
        return value
    day, zulu, hours, minutes = match.groups()
    if zulu:
        return f"{day}+00:00"
    return f"{day}{hours}:{minutes}" if hours else day


def _v5_identity(contract: dict) -> dict:
    person = contract.get("person") or _get(contract, "customer", "person")
    organization = contract.get("organization") or _get(contract, "customer", "organization")
    identity: dict[str, dict] = {}
    if isinstance(person, dict):
        identity["natural_person"] = _pick(person, title="title", firstname="firstname", lastname="lastname")
    if isinstance(organization, dict):
        identity["legal_entity"] = _pick(
            organization, name="name", trading_name="commercial_name", siret_number="siret_number"
        )
    return identity


def _v5_contact(contract: dict) -> dict:
    data = contract.get("contact_data") or _get(contract, "customer", "contact_data")
    if not isinstance(data, dict):
        return {}
    contact = _pick(data, email="email")
    phone = data.get("landline") or data.get("phone")
    if isinstance(phone, str):
        contact["phone"] = phone
    return contact


def _v5_addresses(prm: str, body: Any) -> dict | None:
    address = body.get("address") if isinstance(body, dict) else None
    if not isinstance(address, dict):
        return None
    v5 = _pick(address, street="number_street_name", locality="locality", insee_code="insee_code")
    place = address.get("postal_code_city")
    if isinstance(place, str) and place.strip():
        match = re.fullmatch(r"\s*([0-9]{5})\s+(.*?)\s*", place)
        if match:
            v5["postal_code"], v5["city"] = match.groups()
        else:
            v5["city"] = place.strip()
    usage_point = {"usage_point_id": prm, "usage_point_addresses": v5}
    return {"customer": {"usage_points": [{"usage_point": usage_point}]}}


def _pick(source: dict, **names: str) -> dict[str, str]:
    """v5 name -> value of the 2026 name, for the string values present."""
    return {v5: source[new] for v5, new in names.items() if isinstance(source.get(new), str)}


def _get(source: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(source, dict):
            return None
        source = source.get(key)
    return source


# errors


def _error_answer(status: int | None, body: Any) -> tuple[int, dict[str, str]]:
    if not status:
        return 502, {"error": UPSTREAM_ERROR, "error_description": "Enedis could not be reached"}
    if status < 400:
        # A redirect or an informational answer is not something to relay
        return 502, _unexpected(status)
    return status, _v5_error(body) or _unexpected(status)


def _v5_error(body: Any) -> dict[str, Any] | None:
    """The v5 {error, error_description} of a 2026 error body, or None."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        # Already v5 (ADAM-ERR0123 still comes that way): its RFC 6749 fields
        # kept, in ASCII; a description may be missing (or not be text)
        description = body.get("error_description")
        v5 = {
            "error": _ascii(body["error"]) or UPSTREAM_ERROR,
            "error_description": _ascii(description) if isinstance(description, str) else "",
        }
        if isinstance(body.get("error_uri"), str):
            v5["error_uri"] = body["error_uri"][:_MAX_DESCRIPTION]
        return v5
    if isinstance(body, list) and body and all(isinstance(e, dict) for e in body):
        # Swagger "Erreur": a list of {code, message}
        errors = [_v5_error(e) for e in body]
        if all(errors):
            descriptions = [e["error_description"] for e in errors if e["error_description"]]
            return {"error": errors[0]["error"], "error_description": "; ".join(descriptions)}
        return None
    if isinstance(body, dict) and isinstance(body.get("fault"), dict):
        # WSO2 gateway errors (throttling, subscription) may come wrapped
        return _v5_error(body["fault"])
    if not isinstance(body, dict):
        return None
    code = _text(body.get("code"))
    texts = [body.get(k) for k in ("message", "libelle", "description")]
    description = " - ".join(_ascii(t) for t in texts if isinstance(t, str) and t.strip())
    if code is None and not description:
        return None
    return {"error": _ascii(code or "") or UPSTREAM_ERROR, "error_description": description}


def _unexpected(status: int) -> dict[str, str]:
    return {
        "error": UPSTREAM_ERROR,
        "error_description": f"Enedis answered HTTP {status} with an unexpected body",
    }


def _ascii(text: str) -> str:
    # Error texts reach logs and terminals that may not be UTF-8 (RFC 6749)
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    printable = "".join(c if c.isprintable() else " " for c in folded)
    return " ".join(printable.split())[:_MAX_DESCRIPTION]


# ---------------------------------------------------------------- auto mode


def should_fall_back(status: int | None, body: Any = None) -> bool:
    """In auto mode, whether a 2026 answer calls for asking v5 instead.

    True on an HTTP failure, including Enedis unreachable (status None or 0),
    but not on 429 (v5 would be throttled just as well, and the device
    retries) nor on ADAM-ERR0123 (the period predates the meter: v5 would
    say the same). Meant for the result of to_v5, which also turns a success
    that cannot be read into a 502; a raw 2026 answer works too.
    """
    if not status:
        return True
    if status < 400 or status == 429:
        return False
    error = _v5_error(_decoded(body))
    return not (error and error["error"] == ADAM_ERR0123)
