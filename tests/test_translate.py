"""Golden tests of deviceflow.translate against real Enedis captures.

The 2026 captures (and the v5 capture of the same load curve day) live in
shared/enedis/fixtures-2026 beside the repository; tests/fixtures/enedis-2026
holds unmodified copies of the ones used here so that a lone clone runs too.
"""

import json
from datetime import datetime
from pathlib import Path

import pytest

from deviceflow import translate
from deviceflow.translate import (
    CONSUMPTION_LOAD_CURVE,
    CONTACT_DATA,
    DAILY_CONSUMPTION,
    DAILY_CONSUMPTION_MAX_POWER,
    DAILY_PRODUCTION,
    IDENTITY,
    PRODUCTION_LOAD_CURVE,
    USAGE_POINTS_ADDRESSES,
    USAGE_POINTS_CONTRACTS,
    NewCall,
    RequestRejected,
    should_fall_back,
    to_new,
    to_v5,
)

FIXTURES_COPY = Path(__file__).resolve().parent / "fixtures" / "enedis-2026"
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "enedis" / "fixtures-2026"

CONSUMER = "99999999999991"
PRODUCER = "99999999999992"
START, END = "2026-09-29", "2026-10-01"

MEASURE_PATHS = [
    DAILY_CONSUMPTION,
    CONSUMPTION_LOAD_CURVE,
    DAILY_CONSUMPTION_MAX_POWER,
    DAILY_PRODUCTION,
    PRODUCTION_LOAD_CURVE,
]
CUSTOMER_PATHS = [USAGE_POINTS_CONTRACTS, USAGE_POINTS_ADDRESSES, IDENTITY, CONTACT_DATA]
LOAD_CURVES = [CONSUMPTION_LOAD_CURVE, PRODUCTION_LOAD_CURVE]
COMPTAGE_OK = {
    "dispositifComptage": {"typeComptage": {"code": "AMM", "libelle": "Compteur Linky"}},
    "relais": {"plageHeuresCreuses": "HC (22H00-6H00)"},
}


def fixture(name):
    for folder in (FIXTURES_COPY, SHARED_FIXTURES):
        path = folder / name
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
    pytest.fail(f"fixture {name} found neither in {FIXTURES_COPY} nor in {SHARED_FIXTURES}")


def params(prm=CONSUMER, start=START, end=END):
    return {"usage_point_id": prm, "start": start, "end": end}


def translated(path, body, status=200, prm=CONSUMER):
    return to_v5(path, params(prm), [(status, body)])


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES_COPY.glob("*.json")))
def test_fixture_copies_are_unmodified(name):
    shared = SHARED_FIXTURES / name
    if not shared.exists():
        pytest.skip("shared/enedis not beside this clone")
    assert (FIXTURES_COPY / name).read_bytes() == shared.read_bytes()


# ------------------------------------------------------------------ requests


@pytest.mark.parametrize(
    "v5_path, new_path, extra",
    [
        (DAILY_CONSUMPTION, "mesure_synchrone_auto/v2/consommation_quotidienne", {}),
        (CONSUMPTION_LOAD_CURVE, "mesure_synchrone_auto/v2/courbe_de_charge_consommation", {}),
        (
            DAILY_CONSUMPTION_MAX_POWER,
            "mesure_synchrone_auto/v2/puissance_conso_max_quotidienne",
            {"mesuresPas": "P1D", "grandeurPhysique": "PMA"},
        ),
        (DAILY_PRODUCTION, "mesure_synchrone_auto/v2/production_quotidienne", {}),
        (PRODUCTION_LOAD_CURVE, "mesure_synchrone_auto/v2/courbe_de_charge_production", {}),
    ],
)
def test_measure_request_mapping(v5_path, new_path, extra):
    calls = to_new(v5_path, params())
    expected_query = {"pointId": CONSUMER, "dateDebut": START, "dateFin": END, **extra}
    assert calls == (NewCall(new_path, expected_query),)
    assert calls[0].method == "GET"
    assert not calls[0].path.startswith("/")


def test_measure_request_ignores_other_v5_parameters():
    calls = to_new(DAILY_CONSUMPTION, {**params(), "person_id": "1234567890"})
    assert set(calls[0].query) == {"pointId", "dateDebut", "dateFin"}


def test_path_with_surrounding_slashes_is_the_same_api():
    assert to_new(f"/{DAILY_CONSUMPTION}/", params()) == to_new(DAILY_CONSUMPTION, params())


@pytest.mark.parametrize(
    "v5_path, new_paths",
    [
        (
            USAGE_POINTS_CONTRACTS,
            [
                f"situation_contrat_auto/v1/{CONSUMER}",
                f"synth_contrat_auto/v1/{CONSUMER}",
                f"comptage_auto/v1/{CONSUMER}",
            ],
        ),
        (USAGE_POINTS_ADDRESSES, [f"donnees_generales_auto/v1/{CONSUMER}"]),
        (IDENTITY, [f"situation_contrat_auto/v1/{CONSUMER}"]),
        (CONTACT_DATA, [f"situation_contrat_auto/v1/{CONSUMER}"]),
    ],
)
def test_customer_request_mapping_puts_the_prm_in_the_path(v5_path, new_paths):
    calls = to_new(v5_path, {"usage_point_id": CONSUMER})
    assert [c.path for c in calls] == new_paths
    # As a query parameter Enedis answers 500
    assert all(c.query == {} and c.method == "GET" for c in calls)


@pytest.mark.parametrize(
    "v5_path",
    [
        "metering_data/v4/daily_consumption",
        "metering_data_dc/v4/daily_consumption",
        "mesure_synchrone_auto/v2/consommation_quotidienne",
        "customers_upc/v5/usage_points",
        "metering_data_dc/v5/daily_consumption/extra",
        "",
    ],
)
def test_path_without_2026_equivalent_gives_none(v5_path):
    assert to_new(v5_path, params()) is None


@pytest.mark.parametrize("path", MEASURE_PATHS + CUSTOMER_PATHS)
@pytest.mark.parametrize(
    "prm, description",
    [
        (None, "usage_point_id parameter is required"),
        ("", "usage_point_id parameter is required"),
        ("9999999999999", "usage_point_id parameter must be 14 digits long"),
        ("999999999999911", "usage_point_id parameter must be 14 digits long"),
        ("9999999999999A", "usage_point_id parameter must be 14 digits long"),
        ("99999999999991\n", "usage_point_id parameter must be 14 digits long"),
        (" 99999999999991", "usage_point_id parameter must be 14 digits long"),
        ("\u0669" * 14, "usage_point_id parameter must be 14 digits long"),  # Arabic-Indic digits
        ("../../../oauth2", "usage_point_id parameter must be 14 digits long"),
        ("99999999999991/../x", "usage_point_id parameter must be 14 digits long"),
        ("99999999999991?a=1", "usage_point_id parameter must be 14 digits long"),
    ],
)
def test_prm_is_validated_before_any_call(path, prm, description):
    request = params()
    if prm is None:
        del request["usage_point_id"]
    else:
        request["usage_point_id"] = prm
    with pytest.raises(RequestRejected) as caught:
        to_new(path, request)
    assert (caught.value.status, caught.value.error, caught.value.description) == (
        400,
        "invalid_request",
        description,
    )
    assert caught.value.body == {"error": "invalid_request", "error_description": description}


@pytest.mark.parametrize("path", LOAD_CURVES)
def test_load_curve_with_end_equal_to_start_is_answered_locally(path):
    with pytest.raises(RequestRejected) as caught:
        to_new(path, params(start="2026-09-29", end="2026-09-29"))
    assert caught.value.status == 400
    assert caught.value.body == {
        "error": "invalid_request",
        "error_description": "Start date should be before end date",
    }


@pytest.mark.parametrize("path", LOAD_CURVES)
def test_load_curve_of_one_day_is_asked_as_is(path):
    (call,) = to_new(path, params(start="2026-09-29", end="2026-09-30"))
    assert (call.query["dateDebut"], call.query["dateFin"]) == ("2026-09-29", "2026-09-30")


@pytest.mark.parametrize("path", [DAILY_CONSUMPTION, DAILY_PRODUCTION, DAILY_CONSUMPTION_MAX_POWER])
def test_daily_with_end_equal_to_start_is_left_to_enedis(path):
    (call,) = to_new(path, params(start="2026-09-29", end="2026-09-29"))
    assert (call.query["dateDebut"], call.query["dateFin"]) == ("2026-09-29", "2026-09-29")


@pytest.mark.parametrize("path", MEASURE_PATHS)
def test_end_before_start_is_answered_locally(path):
    with pytest.raises(RequestRejected, match="Start date should be before end date"):
        to_new(path, params(start="2026-10-01", end="2026-09-29"))


@pytest.mark.parametrize("path", MEASURE_PATHS)
@pytest.mark.parametrize(
    "name, value, description",
    [
        ("start", None, "Start date parameter is required"),
        ("end", "", "End date parameter is required"),
        ("start", "2026/09/29", "Start date parameter must be in the format YYYY-MM-DD"),
        ("start", "20260929", "Start date parameter must be in the format YYYY-MM-DD"),
        ("end", "2026-W40-4", "End date parameter must be in the format YYYY-MM-DD"),
        ("end", "2026-02-30", "End date parameter must be in the format YYYY-MM-DD"),
        ("end", "2026-10-01T00:00", "End date parameter must be in the format YYYY-MM-DD"),
    ],
)
def test_dates_are_validated(path, name, value, description):
    request = params(start="2026-01-01", end="2026-12-31")
    if value is None:
        del request[name]
    else:
        request[name] = value
    with pytest.raises(RequestRejected) as caught:
        to_new(path, request)
    assert caught.value.body == {"error": "invalid_request", "error_description": description}


def test_customer_apis_need_no_dates():
    assert len(to_new(IDENTITY, {"usage_point_id": CONSUMER})) == 1


# ------------------------------------------------------- measures, golden


def test_consumption_load_curve_equals_the_v5_capture_of_the_same_day():
    status, body = translated(CONSUMPTION_LOAD_CURVE, fixture("mesure_courbe_de_charge_consommation.json"))
    v5 = fixture("v5_consumption_load_curve.json")["meter_reading"]
    assert status == 200
    reading = body["meter_reading"]

    for key in ("usage_point_id", "start", "end", "quality", "reading_type"):
        assert reading[key] == v5[key], key
    assert len(reading["interval_reading"]) == len(v5["interval_reading"]) == 96
    for index, (ours, theirs) in enumerate(zip(reading["interval_reading"], v5["interval_reading"])):
        assert ours == theirs, f"point {index}"
    # Nothing more, nothing less than v5 gave
    assert body == {"meter_reading": v5}


def test_load_curve_timestamps_stay_at_the_end_of_the_interval():
    _, body = translated(CONSUMPTION_LOAD_CURVE, fixture("mesure_courbe_de_charge_consommation.json"))
    dates = [r["date"] for r in body["meter_reading"]["interval_reading"]]
    assert dates[0] == "2026-09-29 00:30:00"
    assert dates[-1] == "2026-10-01 00:00:00"
    assert "2026-09-29 00:00:00" not in dates


def test_production_load_curve_point_by_point():
    new = fixture("mesure_courbe_de_charge_production.json")
    status, body = translated(PRODUCTION_LOAD_CURVE, new, prm=PRODUCER)
    assert status == 200
    reading = body["meter_reading"]
    assert {k: v for k, v in reading.items() if k != "interval_reading"} == {
        "usage_point_id": PRODUCER,
        "start": START,
        "end": END,
        "quality": "BRUT",
        "reading_type": {"unit": "W", "measurement_kind": "power", "aggregate": "average"},
    }
    expected = [
        {"value": p["v"], "date": p["d"], "interval_length": "PT30M", "measure_type": "B"}
        for p in new["grandeur"][0]["points"]
    ]
    assert len(expected) == 96
    assert reading["interval_reading"] == expected
    assert any(r["value"] != "0" for r in reading["interval_reading"])


@pytest.mark.parametrize(
    "path, name, prm, points",
    [
        (
            DAILY_CONSUMPTION,
            "mesure_consommation_quotidienne.json",
            CONSUMER,
            [("33495", "2026-09-29"), ("38022", "2026-09-30")],
        ),
        (
            DAILY_PRODUCTION,
            "mesure_production_quotidienne.json",
            PRODUCER,
            [("8263", "2026-09-29"), ("941", "2026-09-30")],
        ),
    ],
)
def test_daily_energy_golden(path, name, prm, points):
    assert translated(path, fixture(name), prm=prm) == (
        200,
        {
            "meter_reading": {
                "usage_point_id": prm,
                "start": START,
                "end": END,
                "quality": "BRUT",
                "reading_type": {
                    "unit": "Wh",
                    "measurement_kind": "energy",
                    "aggregate": "sum",
                    "measuring_period": "P1D",
                },
                "interval_reading": [{"value": value, "date": day} for value, day in points],
            }
        },
    )


def test_daily_max_power_golden_keeps_the_time_of_the_maximum():
    assert translated(DAILY_CONSUMPTION_MAX_POWER, fixture("mesure_puissance_conso_max_quotidienne.json")) == (
        200,
        {
            "meter_reading": {
                "usage_point_id": CONSUMER,
                "start": START,
                "end": END,
                "quality": "BRUT",
                "reading_type": {
                    "unit": "VA",
                    "measurement_kind": "power",
                    "aggregate": "maximum",
                    "measuring_period": "P1D",
                },
                "interval_reading": [
                    {"value": "4680", "date": "2026-09-29 13:03:35"},
                    {"value": "6510", "date": "2026-09-30 12:50:25"},
                ],
            }
        },
    )


@pytest.mark.parametrize("encode", [json.dumps, lambda b: json.dumps(b).encode("utf-8")])
def test_body_may_be_given_as_json_text(encode):
    new = fixture("mesure_consommation_quotidienne.json")
    assert translated(DAILY_CONSUMPTION, encode(new)) == translated(DAILY_CONSUMPTION, new)


def test_values_are_strings_even_when_enedis_sends_numbers():
    body = {
        "idPrm": CONSUMER,
        "grandeur": [
            {
                "grandeurMetier": "CONS",
                "grandeurPhysique": "EA",
                "unite": "Wh",
                "points": [{"v": 33495, "d": "2026-09-29"}, {"v": 12.5, "d": "2026-09-30"}],
            }
        ],
    }
    _, v5 = translated(DAILY_CONSUMPTION, body)
    assert [r["value"] for r in v5["meter_reading"]["interval_reading"]] == ["33495", "12.5"]


def test_points_of_the_requested_kind_are_chosen():
    new = fixture("mesure_consommation_quotidienne.json")
    production = {**new["grandeur"][0], "grandeurMetier": "PROD", "points": [{"v": "1", "d": "2026-09-29"}]}
    new = {**new, "grandeur": [production, *new["grandeur"]]}
    _, v5 = translated(DAILY_CONSUMPTION, new)
    assert [r["value"] for r in v5["meter_reading"]["interval_reading"]] == ["33495", "38022"]


def test_unusable_points_are_dropped():
    new = fixture("mesure_consommation_quotidienne.json")
    points = [{"v": None, "d": "2026-09-28"}, {"v": "1"}, "text", {"v": True, "d": "x"}]
    new = {**new, "grandeur": [{**new["grandeur"][0], "points": points + new["grandeur"][0]["points"]}]}
    _, v5 = translated(DAILY_CONSUMPTION, new)
    assert [r["value"] for r in v5["meter_reading"]["interval_reading"]] == ["33495", "38022"]


def test_no_measure_is_an_empty_v5_reading():
    new = {
        "idPrm": CONSUMER,
        "etapeMetier": "BRUT",
        "periode": {"dateDebut": START, "dateFin": END},
        "grandeur": [],
    }
    status, v5 = translated(CONSUMPTION_LOAD_CURVE, new)
    assert status == 200
    assert v5["meter_reading"]["interval_reading"] == []
    assert v5["meter_reading"]["usage_point_id"] == CONSUMER


def test_header_falls_back_on_the_request():
    status, v5 = translated(DAILY_CONSUMPTION, {"grandeur": []})
    assert status == 200
    reading = v5["meter_reading"]
    assert (reading["usage_point_id"], reading["start"], reading["end"], reading["quality"]) == (
        CONSUMER,
        START,
        END,
        "BRUT",
    )


@pytest.mark.parametrize("body", [None, "", "<html>gateway</html>", b"\xff\xfe", {}, [], {"grandeur": "x"}, 42])
@pytest.mark.parametrize("path", MEASURE_PATHS)
def test_unreadable_success_is_an_upstream_error(path, body):
    status, v5 = translated(path, body)
    assert status == 502
    assert v5 == {
        "error": "upstream_error",
        "error_description": "Enedis answered HTTP 200 with an unexpected body",
    }


# ------------------------------------------------- DomoticzLinky's reading


def domoticz_linky_hours(answer_text, prm):
    """What DomoticzLinky 2.6.0 does with a load curve answer (exploreDataHours)."""
    data = json.loads(answer_text)
    assert "meter_reading" in data
    assert str(data["meter_reading"]["usage_point_id"]) == prm, "Donnees recues pour un autre point"
    hours, accumulation, steps = {}, 0.0, 1.0
    for reading in data["meter_reading"]["interval_reading"]:
        value = float(reading["value"])
        assert value >= 0.0 and "date" in reading
        when = datetime.strptime(reading["date"], "%Y-%m-%d %H:%M:%S")
        accumulation += value
        if when.minute == 0:
            hours[when] = accumulation / steps
            accumulation, steps = 0.0, 0.0
        steps += 1.0
    return hours


@pytest.mark.parametrize(
    "path, name, prm",
    [
        (CONSUMPTION_LOAD_CURVE, "mesure_courbe_de_charge_consommation.json", CONSUMER),
        (PRODUCTION_LOAD_CURVE, "mesure_courbe_de_charge_production.json", PRODUCER),
    ],
)
def test_domoticz_linky_reads_the_translated_load_curve(path, name, prm):
    status, body = translated(path, fixture(name), prm=prm)
    assert status == 200
    hours = domoticz_linky_hours(json.dumps(body), prm)
    assert len(hours) == 48
    assert min(hours) == datetime(2026, 9, 29, 1, 0)
    assert max(hours) == datetime(2026, 10, 1, 0, 0)


def test_domoticz_linky_hourly_values_match_v5():
    _, body = translated(CONSUMPTION_LOAD_CURVE, fixture("mesure_courbe_de_charge_consommation.json"))
    assert domoticz_linky_hours(json.dumps(body), CONSUMER) == domoticz_linky_hours(
        json.dumps(fixture("v5_consumption_load_curve.json")), CONSUMER
    )
    assert domoticz_linky_hours(json.dumps(body), CONSUMER)[datetime(2026, 9, 29, 1, 0)] == (4078 + 2848) / 2


def test_domoticz_linky_reads_the_max_power():
    _, body = translated(DAILY_CONSUMPTION_MAX_POWER, fixture("mesure_puissance_conso_max_quotidienne.json"))
    data = json.loads(json.dumps(body))
    assert data["meter_reading"]["usage_point_id"] == CONSUMER
    peaks = {
        datetime.strptime(r["date"], "%Y-%m-%d %H:%M:%S"): float(r["value"])
        for r in data["meter_reading"]["interval_reading"]
    }
    assert peaks == {datetime(2026, 9, 29, 13, 3, 35): 4680.0, datetime(2026, 9, 30, 12, 50, 25): 6510.0}


# ------------------------------------------------- contracts and customers


def contracts_answer(situation, synth=(200, None), comptage=(200, COMPTAGE_OK), prm=CONSUMER):
    responses = [situation, synth, comptage]
    return to_v5(USAGE_POINTS_CONTRACTS, {"usage_point_id": prm}, responses)


def test_contracts_of_a_consumer_with_comptage_not_subscribed():
    status, body = contracts_answer(
        (200, fixture("situation_contrat_consommateur.json")),
        (200, fixture("synth_contrat_consommateur.json")),
        (403, fixture("erreur_comptage_non_souscrit.json")),
    )
    assert status == 200
    assert body == {
        "customer": {
            "usage_points": [
                {
                    "usage_point": {"usage_point_id": CONSUMER},
                    "contracts": {
                        "segment": "C5",
                        "subscribed_power": "12 kVA",
                        "last_activation_date": "2018-08-31+02:00",
                        "distribution_tariff": "Tarif BT<=36kVA Moyenne Utilisation heures pleines heures "
                        "creuses associées à deux saisons",
                        "contract_type": "Contrat GRD-F",
                    },
                }
            ]
        }
    }


def test_contracts_of_a_self_consumption_point_keep_the_soutirage_contract():
    status, body = contracts_answer(
        (200, fixture("situation_contrat_autoconsommation.json")),
        (200, fixture("synth_contrat_autoconsommation.json")),
        (200, COMPTAGE_OK),
        prm=PRODUCER,
    )
    assert status == 200
    (usage_point,) = body["customer"]["usage_points"]
    assert usage_point["usage_point"] == {"usage_point_id": PRODUCER, "meter_type": "AMM"}
    assert usage_point["contracts"] == {
        "segment": "C5",
        "subscribed_power": "12 kVA",
        "last_activation_date": "2014-01-22+01:00",
        "distribution_tariff": "Tarif BT<=36kVA Moyenne Utilisation heures pleines heures "
        "creuses associées à deux saisons",
        "contract_type": "Contrat GRD-F",
        "offpeak_hours": "HC (22H00-6H00)",
    }


def test_contracts_soutirage_is_chosen_whatever_the_order():
    situation = list(reversed(fixture("situation_contrat_autoconsommation.json")))
    _, body = contracts_answer((200, situation), prm=PRODUCER)
    assert body["customer"]["usage_points"][0]["contracts"]["segment"] == "C5"


def test_contracts_without_the_optional_answers():
    situation = (200, fixture("situation_contrat_consommateur.json"))
    status, body = to_v5(USAGE_POINTS_CONTRACTS, {"usage_point_id": CONSUMER}, [situation])
    assert status == 200
    contracts = body["customer"]["usage_points"][0]["contracts"]
    assert "offpeak_hours" not in contracts and "last_activation_date" not in contracts
    assert contracts["subscribed_power"] == "12 kVA"


def test_contracts_error_of_the_situation_is_the_answer():
    status, body = contracts_answer((404, {"code": "404", "message": "Situation contractuelle ou PRM non existant"}))
    assert (status, body) == (
        404,
        {"error": "404", "error_description": "Situation contractuelle ou PRM non existant"},
    )


@pytest.mark.parametrize("situation", [[], {}, "<html/>", [1, 2], {"contracts": []}])
def test_contracts_unreadable_situation_is_an_upstream_error(situation):
    status, body = contracts_answer((200, situation))
    assert status == 502 and body["error"] == "upstream_error"


def test_contracts_leave_out_personal_data():
    _, body = contracts_answer((200, fixture("situation_contrat_autoconsommation.json")), prm=PRODUCER)
    text = json.dumps(body)
    assert "lastname" not in text and "email" not in text and "line1" not in text


def test_address_golden():
    status, body = to_v5(
        USAGE_POINTS_ADDRESSES, {"usage_point_id": CONSUMER}, [(200, fixture("donnees_generales.json"))]
    )
    assert status == 200
    assert body == {
        "customer": {
            "usage_points": [
                {
                    "usage_point": {
                        "usage_point_id": CONSUMER,
                        "usage_point_addresses": {
                            "street": "<masque>",
                            "insee_code": "<masque>",
                            "city": "<masque>",
                        },
                    }
                }
            ]
        }
    }


def test_address_postal_code_and_city_are_split():
    new = {
        "address": {
            "number_street_name": "2 BIS RUE DU CAPITAINE FLAM",
            "locality": "LIEUDIT TOURTOUZE",
            "postal_code_city": "32400 MAULICHERES",
            "insee_code": "32244",
            "building": "B",
        }
    }
    _, body = to_v5(USAGE_POINTS_ADDRESSES, {"usage_point_id": CONSUMER}, [(200, new)])
    assert body["customer"]["usage_points"][0]["usage_point"]["usage_point_addresses"] == {
        "street": "2 BIS RUE DU CAPITAINE FLAM",
        "locality": "LIEUDIT TOURTOUZE",
        "postal_code": "32400",
        "city": "MAULICHERES",
        "insee_code": "32244",
    }


@pytest.mark.parametrize("body", [{}, {"address": "x"}, [], None])
def test_address_unreadable_is_an_upstream_error(body):
    status, v5 = to_v5(USAGE_POINTS_ADDRESSES, {"usage_point_id": CONSUMER}, [(200, body)])
    assert status == 502 and v5["error"] == "upstream_error"


def test_identity_golden():
    status, body = to_v5(
        IDENTITY, {"usage_point_id": CONSUMER}, [(200, fixture("situation_contrat_consommateur.json"))]
    )
    assert (status, body) == (
        200,
        {"identity": {"natural_person": {"title": "<masque>", "firstname": "<masque>", "lastname": "<masque>"}}},
    )


def test_identity_of_a_company():
    situation = [
        {
            "contract_type": "Contrat GRD-F",
            "customer": {
                "organization": {
                    "name": "ACME SAS",
                    "commercial_name": "Acme",
                    "siret_number": "12345678900011",
                    "siren_number": "123456789",
                }
            },
        }
    ]
    _, body = to_v5(IDENTITY, {"usage_point_id": CONSUMER}, [(200, situation)])
    assert body == {
        "identity": {"legal_entity": {"name": "ACME SAS", "trading_name": "Acme", "siret_number": "12345678900011"}}
    }


@pytest.mark.parametrize(
    "name, expected",
    [
        ("situation_contrat_consommateur.json", {"phone": "<masque>"}),
        ("situation_contrat_autoconsommation.json", {"email": "<masque>", "phone": "<masque>"}),
    ],
)
def test_contact_data_golden(name, expected):
    assert to_v5(CONTACT_DATA, {"usage_point_id": CONSUMER}, [(200, fixture(name))]) == (
        200,
        {"contact": expected},
    )


def test_contact_prefers_the_landline_as_v5_did():
    situation = [{"contact_data": {"landline": "0102030405", "phone": "0605040302", "email": "a@b.fr"}}]
    _, body = to_v5(CONTACT_DATA, {"usage_point_id": CONSUMER}, [(200, situation)])
    assert body == {"contact": {"email": "a@b.fr", "phone": "0102030405"}}
    situation = [{"contact_data": {"phone": "0605040302"}}]
    _, body = to_v5(CONTACT_DATA, {"usage_point_id": CONSUMER}, [(200, situation)])
    assert body == {"contact": {"phone": "0605040302"}}


# ------------------------------------------------------------------ errors


def test_subscription_error_900908():
    status, body = translated(DAILY_CONSUMPTION, fixture("erreur_comptage_non_souscrit.json"), status=403)
    assert (status, body) == (
        403,
        {
            "error": "900908",
            "error_description": "Resource forbidden - User is NOT authorized to access the Resource. "
            "API Subscription validation failed.",
        },
    )


@pytest.mark.parametrize("path", MEASURE_PATHS + CUSTOMER_PATHS)
def test_code_message_error_keeps_the_status_and_becomes_ascii(path):
    new = {"code": "SGT404", "message": "Pas de mesure trouvée pour ce point"}
    assert to_v5(path, params(), [(404, new)]) == (
        404,
        {"error": "SGT404", "error_description": "Pas de mesure trouvee pour ce point"},
    )


def test_error_list_of_code_message():
    new = [
        {"code": "E1", "message": "Date de début invalide"},
        {"code": "E2", "message": "Date de fin invalide"},
    ]
    assert translated(DAILY_CONSUMPTION, new, status=400) == (
        400,
        {"error": "E1", "error_description": "Date de debut invalide; Date de fin invalide"},
    )


def test_gateway_fault_error():
    new = {
        "fault": {
            "code": 900800,
            "message": "Message throttled out",
            "description": "You have exceeded your quota",
        }
    }
    assert translated(DAILY_CONSUMPTION, new, status=429) == (
        429,
        {"error": "900800", "error_description": "Message throttled out - You have exceeded your quota"},
    )


@pytest.mark.parametrize("path", MEASURE_PATHS)
def test_adam_err0123_passes_unchanged(path):
    v5_error = {
        "error": "ADAM-ERR0123",
        "error_description": "The requested period cannot be anterior to the meter's last activation date",
        "error_uri": "https://bluecoder.enedis.fr/api-doc/consulter-souscrire",
    }
    assert translated(path, json.loads(json.dumps(v5_error)), status=400) == (400, v5_error)
    assert translated(path, json.dumps(v5_error), status=400) == (400, v5_error)


@pytest.mark.parametrize(
    "status, body",
    [
        (500, "<html><body>Internal Server Error</body></html>"),
        (503, None),
        (503, b""),
        (400, {"foo": "bar"}),
        (404, []),
        (500, {"error": {"nested": True}}),
        (502, b"\xff\xfe\x00"),
        (400, 12),
    ],
)
def test_garbage_error_body_is_an_upstream_error_with_the_status(status, body):
    assert translated(DAILY_CONSUMPTION, body, status=status) == (
        status,
        {
            "error": "upstream_error",
            "error_description": f"Enedis answered HTTP {status} with an unexpected body",
        },
    )


@pytest.mark.parametrize("status", [None, 0])
def test_unreachable_enedis_is_502(status):
    assert translated(DAILY_CONSUMPTION, None, status=status) == (
        502,
        {"error": "upstream_error", "error_description": "Enedis could not be reached"},
    )


def test_redirect_is_not_relayed():
    status, body = translated(DAILY_CONSUMPTION, "", status=302)
    assert status == 502 and body["error"] == "upstream_error"


def test_error_texts_are_ascii_and_bounded():
    new = {"code": "ÉRR", "message": "Problème technique\u00a0dans l’interrogation du SI cœur\n" + "x" * 1000}
    status, body = translated(DAILY_CONSUMPTION, new, status=500)
    assert status == 500
    assert body["error"] == "ERR"
    assert body["error_description"].startswith("Probleme technique dans linterrogation du SI cur x")
    assert body["error_description"].isascii() and body["error_description"].isprintable()
    assert len(body["error_description"]) <= 300
    v5_french = {
        "error": "ADAM-DC-0007",
        "error_description": "Le client n'est pas titulaire du point demandé.",
    }
    assert translated(DAILY_CONSUMPTION, v5_french, status=400)[1] == {
        "error": "ADAM-DC-0007",
        "error_description": "Le client n'est pas titulaire du point demande.",
    }


def test_rejection_descriptions_are_ascii():
    for request in (params(prm="x"), params(start="x"), params(end="x"), params(start=END, end=START)):
        with pytest.raises(RequestRejected) as caught:
            to_new(CONSUMPTION_LOAD_CURVE, request)
        assert caught.value.description.isascii()


def test_to_v5_needs_a_response():
    with pytest.raises(ValueError):
        to_v5(DAILY_CONSUMPTION, params(), [])


# --------------------------------------------------------- auto mode table

ADAM = {
    "error": "ADAM-ERR0123",
    "error_description": "The requested period cannot be anterior to the meter's last activation date",
}


@pytest.mark.parametrize(
    "status, body, fall_back",
    [
        (None, None, True),  # unreachable
        (0, None, True),
        (200, {"meter_reading": {}}, False),
        (204, None, False),
        (304, None, False),
        (400, {"code": "400", "message": "Le parametre usage_point_id est obligatoire"}, True),
        (401, None, True),
        (403, fixture("erreur_comptage_non_souscrit.json"), True),
        (404, {"code": "404", "message": "Pas de mesure trouvee pour ce point"}, True),
        (429, {"code": "429", "message": "SLA depasse"}, False),
        (429, None, False),
        (500, "<html/>", True),
        (502, {"error": "upstream_error", "error_description": "x"}, True),
        (503, None, True),
        (504, b"", True),
        (400, ADAM, False),
        (400, json.dumps(ADAM), False),
        (400, json.dumps(ADAM).encode(), False),
        (500, ADAM, False),
        (400, {"code": "ADAM-ERR0123", "message": "periode anterieure"}, False),
        (400, {"error": "ADAM-ERR0125", "error_description": "history deadline"}, True),
        (400, {"error": "adam-err0123x"}, True),
    ],
)
def test_should_fall_back(status, body, fall_back):
    assert should_fall_back(status, body) is fall_back


def test_should_fall_back_on_an_unreadable_success_once_translated():
    assert should_fall_back(*translated(DAILY_CONSUMPTION, "<html/>")) is True
    assert should_fall_back(*translated(DAILY_CONSUMPTION, ADAM, status=400)) is False
    assert should_fall_back(*translated(DAILY_CONSUMPTION, fixture("mesure_consommation_quotidienne.json"))) is False


def test_module_is_pure():
    # No HTTP nor web framework in the translation layer
    source = Path(translate.__file__).read_text(encoding="utf-8")
    for name in ("requests", "bottle", "waitress", "urllib", "http"):
        assert f"import {name}" not in source and f"from {name}" not in source
