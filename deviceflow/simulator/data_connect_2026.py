"""The Data Connect 2026 APIs: subscribed services, measures (``mesure_synchrone_auto/v2``) and contract data (ITC).

They take only the application's (v3) token, and serve the same numbers as the
v5 APIs (v5.py), so that a v5 <-> 2026 translation can be checked end to end.
Anything outside their Swagger gets Enedis's 500 technical error, not a 400.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import bottle

from deviceflow.simulator.consent import Autorisation, ConsentPages
from deviceflow.simulator.dates import itc_date, parse_date, today
from deviceflow.simulator.meters import (
    Meter,
    curve_points,
    daily_energy,
    days,
    max_power,
    meter_for,
    monthly_max_power,
    refused_period,
)
from deviceflow.simulator.protocol import forbidden, json_answer, request_arg, technical_error, v5_error
from deviceflow.usage_points import is_usage_point

if TYPE_CHECKING:
    from deviceflow.simulator.control import Knobs
    from deviceflow.simulator.tokens import TokenEndpoints

MEASURES = {
    # name under /mesure_synchrone_auto/v2/: (kind, direction)
    "consommation_quotidienne": ("daily", "CONS"),
    "courbe_de_charge_consommation": ("curve", "CONS"),
    "puissance_conso_max_quotidienne": ("pmax", "CONS"),
    "production_quotidienne": ("daily", "PROD"),
    "courbe_de_charge_production": ("curve", "PROD"),
}
DEFAULT_STATES = ["ACTIF", "DEMANDE"]


def _bad_request(message: str) -> bottle.HTTPResponse:
    return json_answer(400, {"code": "400", "message": message})


def services_of(autorisation_id: int, autorisation: Autorisation) -> list[dict]:
    """The services that a Data Connect consent opens on each of its PRMs."""
    services = []
    for prm in autorisation["prms"]:
        kinds = [
            ("ENERGIE", "P1D", False),
            ("CDC", "PT30M", False),
            ("PMAX", "P1D", False),
            ("IDX", "P1D", False),
            ("ITC", "NA", False),
        ]
        if meter_for(prm).producer:
            kinds += [("ENERGIE", "P1D", True), ("CDC", "PT30M", True), ("IDX", "P1D", True)]
        for n, (measure, step, injection) in enumerate(kinds):
            services.append(
                {
                    "id": f"{autorisation_id}{autorisation['share']:04d}{n:02d}",
                    "injection": injection,
                    "soutirage": not injection,
                    "serviceCode": "ACCES",
                    "dateDebut": autorisation["start"].isoformat(),
                    "dateFin": autorisation["end"].isoformat(),
                    "etatCode": "ACTIF",
                    "etatLibelle": "Actif",
                    "pointId": prm,
                    "mesuresTypeCode": measure,
                    "mesuresPas": step,
                    "mesuresCorrigees": False,
                    "espaceDynamique": False,
                    "publicationDonnees": False,
                    "autorisation": {
                        "autorisationId": autorisation_id,
                        "autorisationLibelle": "Autorisation Data Connect",
                        "autorisationType": "EXPLICITE",
                    },
                }
            )
    return services


class DataConnect2026:
    """The handlers of /subscribed_services/v1, MEASURES and CONTRACTS (defined below).

    tokens: checks the bearer.
    consents: the v2 consents that /subscribed_services/v1 looks up.
    knobs: read for `comptage_subscribed` (off: comptage_auto answers the gateway's 403).
    """

    def __init__(self, clock, tokens: TokenEndpoints, consents: ConsentPages, knobs: Knobs):
        self.clock = clock
        self.tokens = tokens
        self.consents = consents
        self.knobs = knobs

    def subscribed_services(self) -> bottle.HTTPResponse:
        """The services of the application's consents that a JSON query names (v2 consent -> PRM)."""
        info = self.tokens.bearer(allow_v1=False)
        try:
            query = json.loads(bottle.request.body.read() or b"null")
        except ValueError:
            query = None
        if not isinstance(query, dict):
            return _bad_request("La syntaxe de la requête est erronée.")
        if not isinstance(query.get("comptage"), bool):
            return _bad_request("Le champ comptage est obligatoire")
        wanted_id = query.get("autorisationId")
        if isinstance(wanted_id, str) and wanted_id.isdigit():
            wanted_id = int(wanted_id)
        points = query.get("pointId")
        if wanted_id is None and not points:
            return _bad_request("pointId, siren ou autorisationId doit être renseigné")
        states = query.get("etatCode") or DEFAULT_STATES
        services = [
            service
            for found_id, autorisation in self.consents.lookup(info["client_id"], wanted_id, points)
            for service in services_of(found_id, autorisation)
        ]
        services = [
            s for s in services if s["etatCode"] in states and s["serviceCode"] == query.get("serviceType", "ACCES")
        ]
        if query["comptage"]:
            return json_answer(200, {"nbTotalServices": len(services)})
        return json_answer(200, {"nbTotalServices": len(services), "serviceSouscrit": services})

    def measure(self, kind: str, direction: str) -> bottle.HTTPResponse:
        self.tokens.bearer(allow_v1=False)
        query = bottle.request.query
        prm = request_arg(query, "pointId")
        start, end = parse_date(request_arg(query, "dateDebut")), parse_date(request_arg(query, "dateFin"))
        if not prm or not is_usage_point(prm) or start is None or end is None:
            return technical_error()
        step = request_arg(query, "mesuresPas")
        if kind == "pmax" and (
            step not in ("P1D", "P1M") or request_arg(query, "grandeurPhysique") not in ("PMA", "TOUT")
        ):
            return technical_error()
        # The load curve refuses dateFin == dateDebut (its Swagger says so); the daily APIs answer an empty list.
        refused = refused_period(prm, start, end, kind, direction, today(self.clock), allow_empty=kind != "curve")
        if refused:
            return v5_error(400, *refused)
        answer = {
            "idPrm": prm,
            "etapeMetier": "BRUT",
            "periode": {"dateDebut": start.isoformat(), "dateFin": end.isoformat()},
        }
        if kind == "curve":
            answer["modeCalcul"] = "MESURE"
            quantity = {
                "grandeurMetier": direction,
                "grandeurPhysique": "PA",
                "unite": "W",
                "points": [
                    {"v": str(v), "d": d, "p": "PT30M", "n": "B", "iv": "0", "ec": "0"}
                    for d, v in curve_points(prm, start, end, direction)
                ],
            }
        elif kind == "daily":
            answer.update({"typeValeur": "GLOBALE", "modeCalcul": "DIFF.INDEX", "pas": "P1D"})
            quantity = {
                "grandeurMetier": direction,
                "grandeurPhysique": "EA",
                "unite": "Wh",
                "points": [
                    {"v": str(daily_energy(prm, day, direction)), "d": day.isoformat()} for day in days(start, end)
                ],
            }
        else:
            answer.update({"modeCalcul": "MESURE", "pas": step})
            maxima = (
                monthly_max_power(prm, start, end)
                if step == "P1M"
                else [max_power(prm, day) for day in days(start, end)]
            )
            # Single-phase meters: TOUT has nothing more than PMA.
            quantity = {
                "grandeurMetier": "CONS",
                "grandeurPhysique": "PMA",
                "unite": "VA",
                "points": [{"v": str(va), "d": when} for va, when in maxima],
            }
        quantity["calendrier"] = []
        answer["grandeur"] = [quantity]
        answer["contexte"] = []
        return json_answer(200, answer)

    def contract(self, name: str, prm: str) -> bottle.HTTPResponse:
        """The CONTRACTS API `name`, for the PRM in the path."""
        self.tokens.bearer(allow_v1=False)
        if name == "comptage_auto" and not self.knobs.comptage_subscribed:
            return forbidden()
        if not is_usage_point(prm):
            return json_answer(404, {"code": "404", "message": "PRM non existant"})
        return json_answer(200, CONTRACTS[name](meter_for(prm)))


def contract_situation(meter: Meter) -> list[dict]:
    """situation_contrat_auto: the consumption contract, and the injection one (without power) of a producer."""
    person = {"title": meter.title, "lastname": meter.lastname, "firstname": meter.firstname}
    contact = {"email": meter.email, "phone": meter.phone}
    address = {
        "customer": {
            "adress": {  # sic, as Enedis spells it
                "line1": f"{meter.title} {meter.firstname} {meter.lastname}",
                "line4": meter.street,
                "line6": f"{meter.postal_code} {meter.city}",
                "line7": "FRANCE",
            }
        }
    }
    contracts = [
        {
            "usage_point_id": meter.prm,
            "contract_start": itc_date(meter.contract_start),
            "contract_type": "Contrat GRD-F",
            "contractor": "Fournisseur Démo",
            "distribution_tariff": meter.distribution_tariff,
            "subscribed_power": {"unit": "kVA", "value": str(meter.kva)},
            "segment": "C5",
            "customer": address,
            "contact_data": contact,
            "person": person,
        }
    ]
    if meter.producer:
        contracts.append(
            {
                "usage_point_id": meter.prm,
                "contract_start": itc_date(meter.production_activation),
                "contract_type": "Contrat GRD-A",
                "segment": "P4",
                "customer": address,
                "contact_data": contact,
                "person": person,
            }
        )
    return contracts


def contract_synthesis(meter: Meter) -> dict:
    """synth_contrat_auto: segments and activation dates."""
    synthesis = {"segments": [{"segment": "C5"}] + ([{"segment": "P4"}] if meter.producer else [])}
    if meter.producer:
        synthesis["generation_last_activation_date"] = itc_date(meter.production_activation)
    synthesis["consumption_last_activation_date"] = itc_date(meter.consumption_activation)
    synthesis["last_subscribed_power_change_date"] = itc_date(meter.contract_start)
    synthesis["services_level"] = "Communicant (ouvert aux services)"
    return synthesis


def metering_device(meter: Meter) -> dict:
    """comptage_auto: the meter itself, and its off-peak relay."""
    relay = {"plageHeuresCreuses": meter.offpeak_hours} if meter.offpeak_hours else {}
    return {
        "dispositifComptage": {"typeComptage": {"code": "AMM", "libelle": "Compteur Linky"}},
        "compteurs": [{"numeroSerie": "0" + meter.prm[-11:], "regimePropriete": {"code": "LOUE", "libelle": "Loué"}}],
        "relais": relay,
    }


def general_data(meter: Meter) -> dict:
    """donnees_generales_auto: the address of the usage point."""
    return {
        "address": {
            "number_street_name": meter.street,
            "postal_code_city": f"{meter.postal_code} {meter.city}",
            "insee_code": meter.insee_code,
        }
    }


# The contract (ITC) APIs, each at /<name>/v1/<prm>: the body each answers for a meter
CONTRACTS = {
    "situation_contrat_auto": contract_situation,
    "synth_contrat_auto": contract_synthesis,
    "comptage_auto": metering_device,
    "donnees_generales_auto": general_data,
}
