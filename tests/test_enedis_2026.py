"""ENEDIS_API_MODE through the Enedis client: which calls leave for a v5
request, and what comes back. Enedis is `responses` (a URL not registered
fails as unreachable); its 2026 answers are the real captures of
tests/fixtures/enedis-2026."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from test_translate import domoticz_linky_hours, fixture

from deviceflow import translate
from deviceflow.enedis import EnedisClient
from deviceflow.errors import UpstreamBadAnswer, UpstreamTimeout, UpstreamUnreachable
from deviceflow.metrics import Metrics

TOKEN_URL = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
DATA = "https://gw.ext.prod.api.enedis.fr"
MEASURES = f"{DATA}/mesure_synchrone_auto/v2"
CONSUMER, PRODUCER = "99999999999991", "99999999999992"
PERIOD = {"start": "2026-09-29", "end": "2026-10-01"}
V5_LOAD_CURVE = fixture("v5_consumption_load_curve.json")

# v5 path -> (2026 URL, extra query, capture, PRM); DomoticzLinky asks the first three.
MEASURE_CALLS = {
    translate.CONSUMPTION_LOAD_CURVE: (
        f"{MEASURES}/courbe_de_charge_consommation",
        {},
        "mesure_courbe_de_charge_consommation.json",
        CONSUMER,
    ),
    translate.PRODUCTION_LOAD_CURVE: (
        f"{MEASURES}/courbe_de_charge_production",
        {},
        "mesure_courbe_de_charge_production.json",
        PRODUCER,
    ),
    translate.DAILY_CONSUMPTION_MAX_POWER: (
        f"{MEASURES}/puissance_conso_max_quotidienne",
        {"mesuresPas": "P1D", "grandeurPhysique": "PMA"},
        "mesure_puissance_conso_max_quotidienne.json",
        CONSUMER,
    ),
    translate.DAILY_CONSUMPTION: (
        f"{MEASURES}/consommation_quotidienne",
        {},
        "mesure_consommation_quotidienne.json",
        CONSUMER,
    ),
    translate.DAILY_PRODUCTION: (
        f"{MEASURES}/production_quotidienne",
        {},
        "mesure_production_quotidienne.json",
        PRODUCER,
    ),
}
LOAD_CURVE = translate.CONSUMPTION_LOAD_CURVE
LOAD_CURVE_2026 = MEASURE_CALLS[LOAD_CURVE][0]
LOAD_CURVE_V5 = f"{DATA}/{LOAD_CURVE}"
QUERY = {"usage_point_id": CONSUMER, **PERIOD}
CONTRACTS = translate.USAGE_POINTS_CONTRACTS
ITC = {
    name: f"{DATA}/{name}/v1/{CONSUMER}" for name in ("situation_contrat_auto", "synth_contrat_auto", "comptage_auto")
}
WSO2_NOT_FOUND = {"code": "900906", "message": "No matching resource found for given API Request"}


@pytest.fixture
def client_for(make_config, sqlite_store, clock):
    def make(mode, sleep=clock.advance, **env):
        config = make_config(ENEDIS_API_MODE=mode, **env)
        return EnedisClient(config, sqlite_store, clock=clock, sleep=sleep, metrics=Metrics())

    return make


@pytest.fixture
def enedis(enedis_mock):
    enedis_mock.add(responses.POST, TOKEN_URL, json={"access_token": "enedis-token", "expires_in": "12600"})
    return enedis_mock


def urls(mock):
    return [call.request.url.split("?")[0] for call in mock.calls if call.request.url != TOKEN_URL]


def body(answer):
    return json.loads(answer.body)


def load_curve_answers(mock, status=200, **kwargs):
    if "json" not in kwargs and "body" not in kwargs:
        kwargs["json"] = fixture("mesure_courbe_de_charge_consommation.json")
    mock.add(responses.GET, LOAD_CURVE_2026, status=status, **kwargs)


def v5_answers(mock, status=200, **kwargs):
    mock.add(responses.GET, LOAD_CURVE_V5, status=status, **kwargs)


# --- new: the 2026 APIs, translated


@pytest.mark.parametrize("path", MEASURE_CALLS)
def test_new_asks_the_2026_measure_api_and_answers_in_v5_shape(client_for, enedis, path):
    url, extra, capture, prm = MEASURE_CALLS[path]
    enedis.add(responses.GET, url, json=fixture(capture))
    answer = client_for("new").fetch_v5(path, {"usage_point_id": prm, **PERIOD})

    sent = enedis.calls[-1].request
    assert sent.method == "GET" and sent.url.split("?")[0] == url
    assert parse_qs(urlsplit(sent.url).query) == {
        "pointId": [prm],
        "dateDebut": [PERIOD["start"]],
        "dateFin": [PERIOD["end"]],
        **{name: [value] for name, value in extra.items()},
    }
    assert sent.headers["Authorization"] == "Bearer enedis-token"
    assert (answer.status, answer.source, answer.content_type) == (200, "new", "application/json")
    reading = body(answer)["meter_reading"]
    assert reading["usage_point_id"] == prm
    assert len(reading["interval_reading"]) == len(fixture(capture)["grandeur"][0]["points"])


def test_new_load_curve_is_what_domoticz_linky_read_from_v5(client_for, enedis):
    load_curve_answers(enedis)
    answer = client_for("new").fetch_v5(LOAD_CURVE, QUERY)
    reading = body(answer)["meter_reading"]
    assert reading["usage_point_id"] == CONSUMER
    assert all(set(point) >= {"value", "date"} for point in reading["interval_reading"])
    assert body(answer) == V5_LOAD_CURVE  # the capture of the same day from the v5 API
    assert domoticz_linky_hours(answer.body, CONSUMER) == domoticz_linky_hours(json.dumps(V5_LOAD_CURVE), CONSUMER)


@pytest.mark.parametrize(
    "query, description",
    [
        ({"usage_point_id": CONSUMER, "end": "2026-10-01"}, "Start date parameter is required"),
        ({**QUERY, "start": "29/09/2026"}, "Start date parameter must be in the format YYYY-MM-DD"),
        ({**QUERY, "start": "2026-10-01"}, "Start date should be before end date"),
    ],
)
def test_new_refuses_what_enedis_would_without_calling_it(client_for, enedis, query, description):
    answer = client_for("new").fetch_v5(LOAD_CURVE, query)
    assert (answer.status, answer.source) == (400, "new")
    assert body(answer) == {"error": "invalid_request", "error_description": description}
    assert len(enedis.calls) == 0  # not even the token


def test_new_never_asks_v5_even_when_the_2026_api_fails(client_for, enedis):
    load_curve_answers(enedis, status=404, json=WSO2_NOT_FOUND)
    v5_answers(enedis, json=V5_LOAD_CURVE)
    answer = client_for("new").fetch_v5(LOAD_CURVE, QUERY)
    assert urls(enedis) == [LOAD_CURVE_2026]
    assert (answer.status, answer.source) == (404, "new")
    assert body(answer) == {"error": "900906", "error_description": "No matching resource found for given API Request"}


@pytest.mark.parametrize(
    "failure, error",
    [(requests.ConnectionError("refused"), UpstreamUnreachable), (requests.ReadTimeout("slow"), UpstreamTimeout)],
)
def test_new_with_enedis_down_is_502_or_504(client_for, enedis, failure, error):
    load_curve_answers(enedis, body=failure)
    with pytest.raises(error):
        client_for("new").fetch_v5(LOAD_CURVE, QUERY)


def test_new_with_the_proxy_token_refused_twice_is_502_not_a_device_401(client_for, enedis):
    enedis.add(responses.POST, TOKEN_URL, json={"access_token": "enedis-token-2", "expires_in": "12600"})
    load_curve_answers(enedis, status=401, json={"code": "900901", "message": "Invalid Credentials"})
    with pytest.raises(UpstreamBadAnswer) as caught:
        client_for("new").fetch_v5(LOAD_CURVE, QUERY)
    assert caught.value.status == 502
    assert urls(enedis) == [LOAD_CURVE_2026] * 2  # renewed once, retried once


def test_new_enedis_throttling_is_429_with_retry_after(client_for, enedis):
    load_curve_answers(
        enedis, status=429, json={"code": "900802", "message": "Message throttled out"}, headers={"Retry-After": "30"}
    )
    answer = client_for("new").fetch_v5(LOAD_CURVE, QUERY)
    assert (answer.status, answer.retry_after, answer.source) == (429, 30, "new")
    assert body(answer)["error"] == "900802"


# --- auto: the 2026 APIs first, v5 when they fail


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "json": {"code": "500", "message": "Probleme technique"}},
        {"status": 404, "json": WSO2_NOT_FOUND},
        {"status": 403, "json": fixture("erreur_comptage_non_souscrit.json")},
        {"status": 200, "body": "<html>maintenance</html>"},
        {"body": requests.ConnectionError("refused")},
        {"body": requests.ConnectTimeout("connect")},
    ],
    ids=["500", "404", "403", "unreadable 200", "unreachable", "timeout"],
)
def test_auto_falls_back_on_v5_when_the_2026_api_fails(client_for, enedis, failure):
    load_curve_answers(enedis, **failure)
    v5_answers(enedis, json=V5_LOAD_CURVE)
    answer = client_for("auto").fetch_v5(LOAD_CURVE, QUERY)
    assert urls(enedis) == [LOAD_CURVE_2026, LOAD_CURVE_V5]
    assert (answer.status, answer.source) == (200, "legacy")
    assert body(answer) == V5_LOAD_CURVE
    assert parse_qs(urlsplit(enedis.calls[-1].request.url).query) == {
        "usage_point_id": [CONSUMER],
        "start": [PERIOD["start"]],
        "end": [PERIOD["end"]],
    }


@pytest.mark.parametrize(
    "status, answer_body",
    [
        (429, {"code": "900802", "message": "Message throttled out"}),
        (
            400,
            {
                "error": "ADAM-ERR0123",
                "error_description": "The requested period cannot be anterior to the meter's last activation date",
            },
        ),
    ],
    ids=["429", "ADAM-ERR0123"],
)
def test_auto_does_not_fall_back_when_v5_would_say_the_same(client_for, enedis, status, answer_body):
    load_curve_answers(enedis, status=status, json=answer_body)
    v5_answers(enedis, json=V5_LOAD_CURVE)
    answer = client_for("auto").fetch_v5(LOAD_CURVE, QUERY)
    assert urls(enedis) == [LOAD_CURVE_2026]
    assert (answer.status, answer.source) == (status, "new")
    assert body(answer)["error"] == str(answer_body.get("error") or answer_body["code"])


def test_auto_answers_from_the_2026_api_when_it_works(client_for, enedis):
    load_curve_answers(enedis)
    answer = client_for("auto").fetch_v5(LOAD_CURVE, QUERY)
    assert urls(enedis) == [LOAD_CURVE_2026]
    assert (answer.status, answer.source, body(answer)) == (200, "new", V5_LOAD_CURVE)


def test_auto_keeps_the_2026_error_when_v5_is_switched_off(client_for, enedis):
    """A switched-off v5 API answers 404, which DomoticzLinky would read as "no data"."""
    load_curve_answers(enedis, status=500, json={"code": "500", "message": "Probleme technique"})
    v5_answers(enedis, status=404, json=WSO2_NOT_FOUND)
    answer = client_for("auto").fetch_v5(LOAD_CURVE, QUERY)
    assert urls(enedis) == [LOAD_CURVE_2026, LOAD_CURVE_V5]
    assert (answer.status, answer.source) == (500, "new")
    assert body(answer) == {"error": "500", "error_description": "Probleme technique"}


def test_auto_with_both_apis_down_reports_the_2026_failure(client_for, enedis):
    load_curve_answers(enedis, body=requests.ConnectionError("refused"))
    v5_answers(enedis, status=404, json=WSO2_NOT_FOUND)
    with pytest.raises(UpstreamUnreachable):  # 502: DomoticzLinky retries, where a 404 would mean "no data"
        client_for("auto").fetch_v5(LOAD_CURVE, QUERY)
    assert urls(enedis) == [LOAD_CURVE_2026, LOAD_CURVE_V5]


def test_auto_keeps_the_2026_answer_when_v5_is_unreachable(client_for, enedis):
    load_curve_answers(enedis, status=500, json={"code": "500", "message": "Probleme technique"})
    v5_answers(enedis, body=requests.ConnectionError("refused"))
    answer = client_for("auto").fetch_v5(LOAD_CURVE, QUERY)
    assert (answer.status, answer.source) == (500, "new")


def test_auto_passes_a_v5_429_on(client_for, enedis):
    load_curve_answers(enedis, status=500, json={"code": "500", "message": "Probleme technique"})
    v5_answers(enedis, status=429, json={"error": "too_many_requests"}, headers={"Retry-After": "7"})
    answer = client_for("auto").fetch_v5(LOAD_CURVE, QUERY)
    assert (answer.status, answer.retry_after, answer.source) == (429, 7, "legacy")


def test_legacy_never_asks_the_2026_apis(client_for, enedis):
    load_curve_answers(enedis)
    v5_answers(enedis, json=V5_LOAD_CURVE)
    answer = client_for("legacy").fetch_v5(LOAD_CURVE, QUERY)
    assert urls(enedis) == [LOAD_CURVE_V5] and answer.source == "legacy"


# --- contracts: up to three calls, each one within the budget


def contract_answers(mock, comptage=None):
    mock.add(responses.GET, ITC["situation_contrat_auto"], json=fixture("situation_contrat_consommateur.json"))
    mock.add(responses.GET, ITC["synth_contrat_auto"], json=fixture("synth_contrat_consommateur.json"))
    mock.add(
        responses.GET,
        ITC["comptage_auto"],
        **(
            comptage
            or {
                "json": {
                    "dispositifComptage": {"typeComptage": {"code": "AMM"}},
                    "relais": {"plageHeuresCreuses": "HC (22H00-6H00)"},
                }
            }
        ),
    )


def test_contract_takes_three_calls_each_counted_in_the_budget(client_for, enedis):
    sleeps = []
    client = client_for("new", sleep=sleeps.append, ENEDIS_MAX_CALLS_PER_SECOND="1")
    contract_answers(enedis)
    answer = client.fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    assert urls(enedis) == list(ITC.values())
    assert sleeps == [1, 2, 3]  # the token, then three calls: one a second
    assert 'deviceflow_enedis_calls_total{api="data",status="200"} 3.0' in client.metrics.exposition()[0].decode()
    contracts = body(answer)["customer"]["usage_points"][0]["contracts"]
    assert (answer.status, contracts["offpeak_hours"], contracts["subscribed_power"]) == (
        200,
        "HC (22H00-6H00)",
        "12 kVA",
    )


def test_contract_without_comptage_subscription_leaves_its_fields_out(client_for, enedis):
    contract_answers(enedis, comptage={"status": 403, "json": fixture("erreur_comptage_non_souscrit.json")})
    answer = client_for("new").fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    usage_point = body(answer)["customer"]["usage_points"][0]
    assert answer.status == 200 and "offpeak_hours" not in usage_point["contracts"]
    assert usage_point["contracts"]["last_activation_date"] == "2018-08-31+02:00"


CONTRACTS_V5 = f"{DATA}/{CONTRACTS}"
V5_CONTRACT = {
    "customer": {
        "customer_id": "1358019319",
        "usage_points": [
            {
                "usage_point": {"usage_point_id": CONSUMER, "meter_type": "AMM", "usage_point_status": "com"},
                "contracts": {"segment": "C5", "subscribed_power": "12 kVA", "offpeak_hours": "HC (23H00-7H00)"},
            }
        ],
    }
}
COMPTAGE_NOT_SUBSCRIBED = {"status": 403, "json": fixture("erreur_comptage_non_souscrit.json")}


def test_auto_takes_the_off_peak_hours_from_v5_while_comptage_is_not_subscribed(client_for, enedis):
    contract_answers(enedis, comptage=COMPTAGE_NOT_SUBSCRIBED)
    enedis.add(responses.GET, CONTRACTS_V5, json=V5_CONTRACT)
    answer = client_for("auto").fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    point = body(answer)["customer"]["usage_points"][0]
    assert urls(enedis) == [*ITC.values(), CONTRACTS_V5]
    assert (answer.status, answer.source) == (200, "new")
    assert point["contracts"]["offpeak_hours"] == "HC (23H00-7H00)" and point["usage_point"]["meter_type"] == "AMM"
    assert point["contracts"]["subscribed_power"] == "12 kVA"  # the rest still from the 2026 contract


def test_auto_asks_v5_nothing_when_comptage_answers(client_for, enedis):
    contract_answers(enedis)
    answer = client_for("auto").fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    assert urls(enedis) == list(ITC.values())
    assert body(answer)["customer"]["usage_points"][0]["contracts"]["offpeak_hours"] == "HC (22H00-6H00)"


def test_new_never_asks_v5_for_the_off_peak_hours(client_for, enedis):
    contract_answers(enedis, comptage=COMPTAGE_NOT_SUBSCRIBED)
    client_for("new").fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    assert urls(enedis) == list(ITC.values())


@pytest.mark.parametrize(
    "v5",
    [
        {"status": 404, "json": WSO2_NOT_FOUND},
        {"body": requests.ConnectionError("off")},
        {"json": {"customer": []}},
        {"status": 429, "json": {"error": "throttled"}},
    ],
)
def test_auto_answers_the_2026_contract_when_v5_has_no_off_peak_hours_to_give(client_for, enedis, v5):
    contract_answers(enedis, comptage=COMPTAGE_NOT_SUBSCRIBED)
    enedis.add(responses.GET, CONTRACTS_V5, **v5)
    answer = client_for("auto").fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    contracts = body(answer)["customer"]["usage_points"][0]["contracts"]
    assert answer.status == 200 and "offpeak_hours" not in contracts and contracts["subscribed_power"] == "12 kVA"


def test_contract_stops_at_the_first_call_when_it_fails(client_for, enedis):
    enedis.add(responses.GET, ITC["situation_contrat_auto"], status=500, json={"code": "500", "message": "KO"})
    answer = client_for("new").fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    assert urls(enedis) == [ITC["situation_contrat_auto"]] and answer.status == 500


def test_contract_with_an_optional_call_throttled_is_429(client_for, enedis):
    contract_answers(enedis, comptage={"status": 429, "json": {"code": "900802", "message": "throttled"}})
    answer = client_for("auto").fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    assert (answer.status, answer.retry_after) == (429, 60)
    assert len(urls(enedis)) == 3  # and no v5 call


def test_contract_with_an_optional_call_unreachable_still_answers(client_for, enedis):
    contract_answers(enedis, comptage={"body": requests.ConnectionError("refused")})
    answer = client_for("new").fetch_v5(CONTRACTS, {"usage_point_id": CONSUMER})
    assert answer.status == 200 and "offpeak_hours" not in body(answer)["customer"]["usage_points"][0]["contracts"]


# --- as the device sees it


def test_data_proxy_says_which_api_answered_and_counts_it(make_config, sqlite_store, clock, enedis):
    from test_metrics import scrape
    from webtest import TestApp

    from deviceflow.web import make_app

    config, metrics = make_config(ENEDIS_API_MODE="auto", METRICS="1"), Metrics(sqlite_store, clock)
    client = EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance, metrics=metrics)
    app = TestApp(make_app(config, sqlite_store, upstream=client, clock=clock, metrics=metrics))
    token = app.app.flow.tokens.mint([CONSUMER], "test-client")["access_token"]
    load_curve_answers(enedis)
    load_curve_answers(enedis, status=503, json={"code": "503", "message": "Service indisponible"})
    v5_answers(enedis, json=V5_LOAD_CURVE)

    sources = []
    for _ in range(2):
        answer = app.get(f"/data/proxy/{LOAD_CURVE}", QUERY, headers={"Authorization": f"Bearer {token}"})
        assert answer.json == V5_LOAD_CURVE and answer.headers["Cache-Control"] == "no-store"
        sources.append(answer.headers["X-Enedis-Proxy-Source"])
    assert sources == ["new", "legacy"]
    samples = scrape(app)
    assert samples[("deviceflow_data_calls_total", ("new", "200"))] == 1
    assert samples[("deviceflow_data_calls_total", ("legacy", "200"))] == 1
    assert samples[("deviceflow_enedis_calls_total", ("data", "503"))] == 1
