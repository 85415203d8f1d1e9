"""The v5 data APIs: measures (``metering_data_*``) and customer data (``customers_*``).

They take an application (v3) token, or a customer's (v1) token for the PRMs
of its consent, and serve the same numbers as the 2026 APIs (data_connect_2026.py).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import bottle

from deviceflow.simulator.dates import parse_date, today, v5_contract_date
from deviceflow.simulator.meters import Meter, curve_points, daily_energy, days, max_power, meter_for, refused_period
from deviceflow.simulator.protocol import json_answer, not_found, request_arg, v5_error
from deviceflow.usage_points import is_usage_point

if TYPE_CHECKING:
    from deviceflow.simulator.control import Knobs
    from deviceflow.simulator.tokens import TokenEndpoints

MEASURES = {
    # path: (endpoint name, kind, direction)
    "/metering_data_dc/v5/daily_consumption": ("daily_consumption", "daily", "CONS"),
    "/metering_data_clc/v5/consumption_load_curve": ("consumption_load_curve", "curve", "CONS"),
    "/metering_data_dcmp/v5/daily_consumption_max_power": ("daily_consumption_max_power", "pmax", "CONS"),
    "/metering_data_dp/v5/daily_production": ("daily_production", "daily", "PROD"),
    "/metering_data_plc/v5/production_load_curve": ("production_load_curve", "curve", "PROD"),
}
CUSTOMERS = {
    # path: endpoint name
    "/customers_upc/v5/usage_points/contracts": "contracts",
    "/customers_upa/v5/usage_points/addresses": "addresses",
    "/customers_i/v5/identity": "identity",
    "/customers_cd/v5/contact_data": "contact_data",
}


class V5Apis:
    """The handlers of MEASURES and CUSTOMERS.

    tokens: checks the bearer.
    knobs: read for `v5_enabled` (off: every v5 API answers 404, as a switched-off API at Enedis's gateway).
    """

    def __init__(self, clock, tokens: TokenEndpoints, knobs: Knobs):
        self.clock = clock
        self.tokens = tokens
        self.knobs = knobs

    def measure(self, kind: str, direction: str) -> bottle.HTTPResponse:
        prm = self._usage_point()
        query = bottle.request.query
        start, end = (self._date(query, name, label) for name, label in (("start", "Start"), ("end", "End")))
        refused = refused_period(prm, start, end, kind, direction, today(self.clock), allow_empty=False)
        if refused:
            return v5_error(400, *refused)
        reading = {"usage_point_id": prm, "start": start.isoformat(), "end": end.isoformat(), "quality": "BRUT"}
        if kind == "curve":
            reading["reading_type"] = {"unit": "W", "measurement_kind": "power", "aggregate": "average"}
            reading["interval_reading"] = [
                {"value": str(v), "date": d, "interval_length": "PT30M", "measure_type": "B"}
                for d, v in curve_points(prm, start, end, direction)
            ]
        elif kind == "daily":
            reading["reading_type"] = {
                "measurement_kind": "energy",
                "measuring_period": "P1D",
                "unit": "Wh",
                "aggregate": "sum",
            }
            reading["interval_reading"] = [
                {"value": str(daily_energy(prm, day, direction)), "date": day.isoformat()} for day in days(start, end)
            ]
        else:
            reading["reading_type"] = {
                "measurement_kind": "power",
                "measuring_period": "P1D",
                "unit": "VA",
                "aggregate": "maximum",
            }
            reading["interval_reading"] = [
                {"value": str(va), "date": when} for va, when in (max_power(prm, day) for day in days(start, end))
            ]
        return json_answer(200, {"meter_reading": reading})

    def customer(self, name: str) -> bottle.HTTPResponse:
        """The CUSTOMERS API `name`, for the `usage_point_id` of the query."""
        return json_answer(200, CUSTOMER_DATA[name](meter_for(self._usage_point())))

    def _usage_point(self) -> str:
        """The `usage_point_id` the request may read; raises Enedis's answer otherwise.

        Checked in this order: the API switched on, a live token, a well-formed PRM, the consent of a v1 token.
        """
        if not self.knobs.v5_enabled:
            raise not_found()
        info = self.tokens.bearer(allow_v1=True)
        prm = request_arg(bottle.request.query, "usage_point_id")
        if not prm:
            raise v5_error(400, "Invalid_request", "usage_point_id parameter is required")
        if not is_usage_point(prm):
            raise v5_error(400, "Invalid_request", "usage_point_id parameter must be 14 digits long")
        if info["prms"] is not None and prm not in info["prms"]:  # a v1 (customer) token
            raise v5_error(403, "ADAM-DC-0008", "No consent can be found for this customer and this usage point.")
        return prm

    @staticmethod
    def _date(query: bottle.FormsDict, name: str, label: str) -> dt.date:
        """The "YYYY-MM-DD" date parameter `name`; raises the 400 that names it by `label` otherwise."""
        raw = request_arg(query, name)
        if not raw:
            raise v5_error(400, "Invalid_request", f"{label} date parameter is required")
        date = parse_date(raw)
        if date is None:
            raise v5_error(400, "Invalid_request", f"{label} date parameter must be in the format YYYY-MM-DD")
        return date


def _usage_point_summary(meter: Meter) -> dict:
    return {"usage_point_id": meter.prm, "usage_point_status": "com", "meter_type": "AMM"}


def contracts(meter: Meter) -> dict:
    contract = {
        "segment": "C5",
        "subscribed_power": f"{meter.kva} kVA",
        "last_activation_date": v5_contract_date(meter.consumption_activation),
        "distribution_tariff": "BTINFMU4" if meter.tariff == "HPHC" else "BTINFCUST",
        "contract_type": "Contrat GRD-F",
        "contract_status": "SERVC",
        "last_distribution_tariff_change_date": v5_contract_date(meter.contract_start),
    }
    if meter.offpeak_hours:
        contract["offpeak_hours"] = meter.offpeak_hours
    return {
        "customer": {
            "customer_id": meter.customer_id,
            "usage_points": [{"usage_point": _usage_point_summary(meter), "contracts": contract}],
        }
    }


def addresses(meter: Meter) -> dict:
    usage_point = _usage_point_summary(meter)
    usage_point["usage_point_addresses"] = {
        "street": meter.street,
        "locality": None,
        "postal_code": meter.postal_code,
        "insee_code": meter.insee_code,
        "city": meter.city,
        "country": "France",
        "geo_points": {"latitude": meter.latitude, "longitude": meter.longitude, "altitude": meter.altitude},
    }
    return {"customer": {"customer_id": meter.customer_id, "usage_points": [{"usage_point": usage_point}]}}


def identity(meter: Meter) -> dict:
    """The shape of openapi-v5/10-customer.json."""
    return {
        "customer_id": meter.customer_id,
        "identity": {
            "natural_person": {"title": meter.title, "firstname": meter.firstname, "lastname": meter.lastname}
        },
    }


def contact_data(meter: Meter) -> dict:
    """The shape of openapi-v5/11-contact.json."""
    return {"customer_id": meter.customer_id, "contact": {"phone": meter.phone, "email": meter.email}}


# The body each CUSTOMERS API answers for a meter, by endpoint name
CUSTOMER_DATA = {"contracts": contracts, "addresses": addresses, "identity": identity, "contact_data": contact_data}
