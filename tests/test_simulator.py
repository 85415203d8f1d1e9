"""Tests of the simulated Enedis (deviceflow.simulator), over its Bottle app."""

import base64
import datetime as dt
import hashlib
import json
import pathlib
import threading
import time
import urllib.parse

import bottle
import pytest
import webtest

from deviceflow.simulator import (
    CONSUMER_PRM,
    KNOBS,
    METERS,
    PRODUCER_PRM,
    SECONDARY_PRM,
    Simulator,
)

CLIENT = "deviceflow-demo"
REDIRECT = "http://localhost:8080/auth/redirect"
# Real answers captured from Enedis (tests/fixtures/enedis-2026/README.md says where from).
FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "enedis-2026"
# The reference copies, beside the repository on the project's machines only.
REFERENCE = pathlib.Path(__file__).parents[2] / "shared" / "enedis" / "fixtures-2026"
# 2026-10-04 12:00 in Paris, the day the fixtures were captured
NOW = dt.datetime(2026, 10, 4, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))).timestamp()


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sim(clock):
    return Simulator("http://localhost", CLIENT, clock=clock)


@pytest.fixture
def app(sim):
    return webtest.TestApp(sim.app)


@pytest.fixture
def token(app):
    return app.post(
        "/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": "anything"}
    ).json["access_token"]


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


def knob_key(sim):
    """The control token the simulator made at start (`serve --demo` prints it)."""
    return bearer(sim.control_token)


def control(app, sim, knobs, status=200):
    return app.post_json("/_control", knobs, headers=knob_key(sim), status=status)


def query_of(location):
    parts = urllib.parse.urlsplit(location)
    return parts._replace(query="").geturl(), dict(urllib.parse.parse_qsl(parts.query))


def authorize(app, version="v1", **extra):
    params = {
        "client_id": CLIENT,
        "response_type": "code",
        "state": "st4te-cg",
        "duration": "P3Y",
        "redirect_uri": REDIRECT,
    }
    params.update(extra)
    params = {k: v for k, v in params.items() if v is not None}
    return app.get(f"/dataconnect/{version}/oauth2/authorize", params, expect_errors=True)


def consent(app, prms, version="v1", decision="accept", **extra):
    """Open the consent page, tick `prms`, press a button; the redirect's query."""
    page = authorize(app, version, **extra)
    assert page.status_int == 200
    form = page.forms[0]
    if version == "v1":
        for field in form.fields["usage_point_id"]:
            field.checked = field._value in prms
    elif prms:
        form["usage_point_id"] = prms[0]  # webtest groups radio buttons in one field
    answer = form.submit("decision", index=0 if decision == "accept" else 1)
    assert answer.status_int == 302
    base, query = query_of(answer.headers["Location"])
    assert base == REDIRECT
    return query


def data(app, path, tok, status=200, **params):
    return app.get(path, params, headers=bearer(tok), status=status)


# -- consent pages ----------------------------------------------------------


def test_consent_page_says_demo_lists_meters_and_escapes(app):
    page = authorize(app, state='"><script>alert(1)</script>')
    assert page.status_int == 200
    assert "Simulated Enedis — demo" in page.text
    assert page.headers["Content-Type"].startswith("text/html")
    for prm in (CONSUMER_PRM, PRODUCER_PRM, SECONDARY_PRM):
        assert prm in page.text
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    for external in ("<script", "<link", "src=", "@import", "url("):
        assert external not in page.text


def test_consent_v1_accept_redirects_with_code_state_and_prms(app, sim):
    query = consent(app, [CONSUMER_PRM, PRODUCER_PRM])
    assert set(query) == {"code", "state", "usage_point_id"}
    assert query["state"] == "st4te-cg"
    assert query["usage_point_id"] == f"{CONSUMER_PRM};{PRODUCER_PRM}"
    assert len(query["code"]) >= 32
    assert sim.calls["authorize_v1"] == 1 and sim.calls["authorize_v1_submit"] == 1


def test_consent_v1_refuse_redirects_with_access_denied(app):
    query = consent(app, [CONSUMER_PRM], decision="refuse")
    assert query["error"] == "access_denied"
    assert query["error_description"]
    assert query["state"] == "st4te-cg"
    assert "code" not in query


def test_consent_rejects_unknown_client_and_missing_redirect(app):
    assert authorize(app, client_id="someone-else").status_int == 400
    assert authorize(app, redirect_uri=None).status_int == 400
    assert authorize(app, response_type="token").status_int == 400
    assert authorize(app, duration="P5Y").status_int == 400
    assert authorize(app, duration="three years").status_int == 400
    # a forged POST is checked as well
    answer = app.post(
        "/dataconnect/v1/oauth2/authorize",
        {
            "client_id": "evil",
            "response_type": "code",
            "duration": "P1Y",
            "redirect_uri": REDIRECT,
            "usage_point_id": CONSUMER_PRM,
            "decision": "accept",
        },
        expect_errors=True,
    )
    assert answer.status_int == 400


def test_registered_redirect_uri_is_used_when_none_is_sent(clock):
    app = webtest.TestApp(Simulator("http://localhost", CLIENT, clock=clock, redirect_uri=REDIRECT).app)
    query = consent(app, [CONSUMER_PRM], redirect_uri=None)
    assert query["usage_point_id"] == CONSUMER_PRM


def test_consent_without_meter_shows_page_again(app):
    form = authorize(app).forms[0]
    answer = form.submit("decision", index=0, expect_errors=True)
    assert answer.status_int == 400
    assert "au moins un compteur" in answer.text


def test_consent_v2_gives_a_stable_autorisation_id_and_no_code(app, clock):
    first = consent(app, [PRODUCER_PRM], version="v2")
    assert set(first) == {"autorisation_id", "state"}
    assert first["autorisation_id"].isdigit()
    again = consent(app, [PRODUCER_PRM], version="v2")
    assert again["autorisation_id"] == first["autorisation_id"]
    other = consent(app, [CONSUMER_PRM], version="v2")
    assert other["autorisation_id"] != first["autorisation_id"]
    # stable across restarts too, like Enedis
    restarted = webtest.TestApp(Simulator("http://localhost", CLIENT, clock=clock).app)
    assert consent(restarted, [PRODUCER_PRM], version="v2") == first


def test_consent_v2_takes_a_single_meter(app):
    page = authorize(app, "v2")
    assert 'type="radio"' in page.text and 'type="checkbox"' not in page.text
    answer = app.post(
        "/dataconnect/v2/oauth2/authorize",
        {
            "client_id": CLIENT,
            "response_type": "code",
            "duration": "P1Y",
            "redirect_uri": REDIRECT,
            "decision": "accept",
            "usage_point_id": [CONSUMER_PRM, PRODUCER_PRM],
        },
        expect_errors=True,
    )
    assert answer.status_int == 400


def test_consent_v2_reshare_can_fail_like_enedis(app, sim):
    consent(app, [CONSUMER_PRM], version="v2")
    sim.v2_reshare_fails = True
    form = authorize(app, "v2").forms[0]
    form["usage_point_id"] = CONSUMER_PRM
    answer = form.submit("decision", index=0, expect_errors=True)
    assert answer.status_int == 400 and "Location" not in answer.headers
    assert "Une erreur est survenue" in answer.text


# -- subscribed services ----------------------------------------------------


def subscribed(app, tok, autorisation_id, status=200, **extra):
    body = {"autorisationId": autorisation_id, "comptage": False, **extra}
    return app.post_json("/subscribed_services/v1", body, headers=bearer(tok), status=status)


def test_subscribed_services_gives_the_prm_of_a_v2_consent(app, token):
    autorisation_id = int(consent(app, [PRODUCER_PRM], version="v2")["autorisation_id"])
    answer = subscribed(app, token, autorisation_id).json
    services = answer["serviceSouscrit"]
    assert answer["nbTotalServices"] == len(services) > 0
    assert {s["pointId"] for s in services} == {PRODUCER_PRM}
    assert {s["etatCode"] for s in services} == {"ACTIF"}
    assert any(s["injection"] for s in services)  # a producer
    first = services[0]
    assert first["autorisation"]["autorisationId"] == autorisation_id
    assert first["serviceCode"] == "ACCES"
    assert first["dateDebut"] == "2026-10-04"
    assert first["dateFin"] == "2029-10-04"  # P3Y
    # an unknown autorisation: nothing
    assert subscribed(app, token, 1).json == {"nbTotalServices": 0, "serviceSouscrit": []}
    # counting only
    assert subscribed(app, token, autorisation_id, comptage=True).json == {"nbTotalServices": len(services)}


def test_subscribed_services_needs_a_v3_token_and_comptage(app, token):
    autorisation_id = int(consent(app, [CONSUMER_PRM], version="v2")["autorisation_id"])
    app.post_json("/subscribed_services/v1", {"autorisationId": autorisation_id, "comptage": False}, status=401)
    subscribed(app, "not-a-token", autorisation_id, status=401)
    app.post_json("/subscribed_services/v1", {"autorisationId": autorisation_id}, headers=bearer(token), status=400)


def test_subscribed_services_appear_after_a_few_calls(app, sim, token):
    sim.subscribed_delay_calls = 2
    autorisation_id = int(consent(app, [CONSUMER_PRM], version="v2")["autorisation_id"])
    assert subscribed(app, token, autorisation_id).json["serviceSouscrit"] == []
    assert subscribed(app, token, autorisation_id).json["serviceSouscrit"] == []
    services = subscribed(app, token, autorisation_id).json["serviceSouscrit"]
    assert {s["pointId"] for s in services} == {CONSUMER_PRM}
    assert sim.calls["subscribed_services"] == 3


# -- token v3 -----------------------------------------------------------------


def test_token_v3_answers_expires_in_as_a_string(app, sim):
    answer = app.post(
        "/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": "s"}
    )
    body = answer.json
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == "12600" and isinstance(body["expires_in"], str)
    assert len(body["access_token"]) >= 32 and "scope" in body
    assert answer.headers["Cache-Control"] == "no-store"
    assert sim.calls["token_v3"] == 1
    second = app.post("/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT}).json
    assert second["access_token"] != body["access_token"]
    assert sim.calls["token_v3"] == 2


def test_token_v3_errors(app, clock):
    bad_grant = app.post("/oauth2/v3/token", {"grant_type": "password", "client_id": CLIENT}, status=400)
    assert bad_grant.json["error"] == "unsupported_grant_type"
    bad_client = app.post("/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": "nope"}, status=401)
    assert bad_client.json["error"] == "invalid_client"
    missing = app.post("/oauth2/v3/token", {"client_id": CLIENT}, status=400)
    assert missing.json["error"] == "invalid_request"
    as_json = app.post_json("/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT}, status=400)
    assert as_json.json["error"] == "invalid_request"
    # with a configured secret, it is checked (form or HTTP Basic)
    strict = webtest.TestApp(Simulator("http://localhost", CLIENT, clock=clock, client_secret="s3cret").app)
    strict.post(
        "/oauth2/v3/token",
        {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": "wrong"},
        status=401,
    )
    strict.post("/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT}, status=401)
    strict.post(
        "/oauth2/v3/token",
        {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": "s3cret"},
        status=200,
    )
    basic = base64.b64encode(f"{CLIENT}:s3cret".encode()).decode()
    strict.post(
        "/oauth2/v3/token",
        {"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
        status=200,
    )


def test_expired_or_unknown_token_gives_401(app, token, clock):
    params = {"usage_point_id": CONSUMER_PRM, "start": "2026-09-29", "end": "2026-10-01"}
    path = "/metering_data_dc/v5/daily_consumption"
    assert app.get(path, params, status=401).json["code"] == "900902"
    assert app.get(path, params, headers=bearer("nope"), status=401).json["code"] == "900901"
    app.get(path, params, headers={"Authorization": f"Basic {token}"}, status=401)
    app.get(path, params, headers=bearer(token), status=200)
    clock.now += 12600
    answer = app.get(path, params, headers=bearer(token), status=401)
    assert "invalid_token" in answer.headers["WWW-Authenticate"]
    app.get(
        "/mesure_synchrone_auto/v2/consommation_quotidienne",
        {"pointId": CONSUMER_PRM, "dateDebut": "2026-09-29", "dateFin": "2026-10-01"},
        status=401,
    )
    app.get(f"/synth_contrat_auto/v1/{CONSUMER_PRM}", status=401)


# -- token v1 (authorization_code pass-through) --------------------------------


def exchange(app, code, status=200, **extra):
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": CLIENT,
        "client_secret": "s",
        "redirect_uri": REDIRECT,
        **extra,
    }
    return app.post("/v1/oauth2/token", {k: v for k, v in form.items() if v is not None}, status=status)


def test_token_v1_exchanges_a_code_once(app, sim):
    code = consent(app, [CONSUMER_PRM, SECONDARY_PRM])["code"]
    body = exchange(app, code).json
    assert body["usage_points_id"] == f"{CONSUMER_PRM},{SECONDARY_PRM}"
    assert body["token_type"] == "Bearer" and body["expires_in"] == 12600
    assert body["access_token"] and body["refresh_token"] and body["scope"] == ""
    assert exchange(app, code, status=400).json["error"] == "invalid_grant"
    assert exchange(app, "made-up", status=400).json["error"] == "invalid_grant"
    assert sim.calls["token_v1"] == 3


def test_token_v1_code_is_bound_to_redirect_uri_client_and_lifetime(app, clock):
    code = consent(app, [CONSUMER_PRM])["code"]
    exchange(app, code, status=400, redirect_uri="http://evil.example/cb")
    code = consent(app, [CONSUMER_PRM])["code"]
    exchange(app, code, status=400, redirect_uri=None)  # it was sent to authorize
    code = consent(app, [CONSUMER_PRM])["code"]
    exchange(app, code, status=401, client_id="other")
    code = consent(app, [CONSUMER_PRM])["code"]
    clock.now += 301
    exchange(app, code, status=400)


def test_token_v1_pkce(app):
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    code = consent(app, [CONSUMER_PRM], **pkce)["code"]
    exchange(app, code, status=400)  # no verifier
    code = consent(app, [CONSUMER_PRM], **pkce)["code"]
    exchange(app, code, status=400, code_verifier="w" * 50)
    code = consent(app, [CONSUMER_PRM], **pkce)["code"]
    assert exchange(app, code, code_verifier=verifier).json["usage_points_id"] == CONSUMER_PRM
    assert authorize(app, code_challenge=challenge, code_challenge_method="plain").status_int == 400


def test_token_v1_refresh_rotates(app):
    first = exchange(app, consent(app, [PRODUCER_PRM])["code"]).json
    form = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": CLIENT,
        "client_secret": "s",
    }
    second = app.post("/v1/oauth2/token", form).json
    assert second["usage_points_id"] == PRODUCER_PRM
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert app.post("/v1/oauth2/token", form, status=400).json["error"] == "invalid_grant"
    app.post("/v1/oauth2/token", {**form, "grant_type": "client_credentials"}, status=400)


def test_v1_token_reads_its_own_meters_only(app):
    tok = exchange(app, consent(app, [CONSUMER_PRM])["code"]).json["access_token"]
    params = {"start": "2026-09-29", "end": "2026-10-01"}
    data(app, "/metering_data_dc/v5/daily_consumption", tok, usage_point_id=CONSUMER_PRM, **params)
    refused = data(
        app, "/metering_data_dc/v5/daily_consumption", tok, status=403, usage_point_id=PRODUCER_PRM, **params
    )
    assert refused.json["error"] == "ADAM-DC-0008"
    # the 2026 APIs take client_credentials tokens only
    data(
        app,
        "/mesure_synchrone_auto/v2/consommation_quotidienne",
        tok,
        status=401,
        pointId=CONSUMER_PRM,
        dateDebut="2026-09-29",
        dateFin="2026-10-01",
    )


def test_a_code_is_delivered_once_under_concurrency(app):
    code = consent(app, [CONSUMER_PRM])["code"]
    statuses = []

    def attempt():
        statuses.append(exchange(app, code, status="*").status_int)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [400] * 7


# -- v5 data ----------------------------------------------------------------


def test_v5_daily_consumption_shape(app, token):
    reading = data(
        app,
        "/metering_data_dc/v5/daily_consumption",
        token,
        usage_point_id=CONSUMER_PRM,
        start="2026-09-29",
        end="2026-10-01",
    ).json["meter_reading"]
    assert reading["usage_point_id"] == CONSUMER_PRM
    assert (reading["start"], reading["end"], reading["quality"]) == ("2026-09-29", "2026-10-01", "BRUT")
    assert reading["reading_type"] == {
        "measurement_kind": "energy",
        "measuring_period": "P1D",
        "unit": "Wh",
        "aggregate": "sum",
    }
    points = reading["interval_reading"]
    assert [p["date"] for p in points] == ["2026-09-29", "2026-09-30"]  # end excluded
    assert all(isinstance(p["value"], str) and int(p["value"]) > 1000 for p in points)


def test_v5_load_curve_has_48_end_of_interval_points_a_day(app, token):
    reading = data(
        app,
        "/metering_data_clc/v5/consumption_load_curve",
        token,
        usage_point_id=CONSUMER_PRM,
        start="2026-09-29",
        end="2026-10-01",
    ).json["meter_reading"]
    assert reading["reading_type"] == {"unit": "W", "measurement_kind": "power", "aggregate": "average"}
    points = reading["interval_reading"]
    assert len(points) == 96
    assert points[0]["date"] == "2026-09-29 00:30:00"
    assert points[47]["date"] == "2026-09-30 00:00:00"
    assert points[-1]["date"] == "2026-10-01 00:00:00"
    stamps = [dt.datetime.strptime(p["date"], "%Y-%m-%d %H:%M:%S") for p in points]
    assert all(b - a == dt.timedelta(minutes=30) for a, b in zip(stamps, stamps[1:]))
    for point in points:
        assert set(point) == {"value", "date", "interval_length", "measure_type"}
        assert point["interval_length"] == "PT30M" and point["measure_type"] == "B"
        assert isinstance(point["value"], str) and int(point["value"]) >= 0


def test_v5_daily_is_the_integral_of_the_load_curve(app, token):
    for prm, daily, curve in (
        (CONSUMER_PRM, "/metering_data_dc/v5/daily_consumption", "/metering_data_clc/v5/consumption_load_curve"),
        (PRODUCER_PRM, "/metering_data_dp/v5/daily_production", "/metering_data_plc/v5/production_load_curve"),
    ):
        params = {"usage_point_id": prm, "start": "2026-06-20", "end": "2026-06-21"}
        energy = int(data(app, daily, token, **params).json["meter_reading"]["interval_reading"][0]["value"])
        powers = [int(p["value"]) for p in data(app, curve, token, **params).json["meter_reading"]["interval_reading"]]
        assert abs(energy - sum(powers) / 2) <= 1
        assert energy > 0


def test_v5_max_power_is_timestamped_within_its_day(app, token):
    reading = data(
        app,
        "/metering_data_dcmp/v5/daily_consumption_max_power",
        token,
        usage_point_id=CONSUMER_PRM,
        start="2026-09-28",
        end="2026-10-02",
    ).json["meter_reading"]
    assert reading["reading_type"]["unit"] == "VA"
    assert reading["reading_type"]["aggregate"] == "maximum"
    points = reading["interval_reading"]
    assert [p["date"][:10] for p in points] == ["2026-09-28", "2026-09-29", "2026-09-30", "2026-10-01"]
    for point in points:
        dt.datetime.strptime(point["date"], "%Y-%m-%d %H:%M:%S")
        assert 0 < int(point["value"]) <= 12000  # subscribed power


def test_production_only_for_the_producer(app, token):
    ok = data(
        app,
        "/metering_data_plc/v5/production_load_curve",
        token,
        usage_point_id=PRODUCER_PRM,
        start="2026-06-20",
        end="2026-06-21",
    ).json
    values = [int(p["value"]) for p in ok["meter_reading"]["interval_reading"]]
    assert values[0] == 0 and max(values) > 500  # night, then sun
    refused = data(
        app,
        "/metering_data_dp/v5/daily_production",
        token,
        status=400,
        usage_point_id=CONSUMER_PRM,
        start="2026-09-29",
        end="2026-10-01",
    ).json
    assert refused["error"] == "ADAM-ERR0069"


def test_data_is_deterministic(clock):
    answers = []
    for _ in range(2):
        app = webtest.TestApp(Simulator("http://localhost", CLIENT, clock=clock).app)
        tok = app.post("/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT}).json[
            "access_token"
        ]
        answers.append(
            data(
                app,
                "/metering_data_clc/v5/consumption_load_curve",
                tok,
                usage_point_id=PRODUCER_PRM,
                start="2026-01-10",
                end="2026-01-12",
            ).json
        )
    assert answers[0] == answers[1]


@pytest.mark.parametrize(
    "params, error, fragment",
    [
        ({"start": "2026-09-29", "end": "2026-10-01"}, "Invalid_request", "usage_point_id"),
        ({"usage_point_id": "1234", "start": "2026-09-29", "end": "2026-10-01"}, "Invalid_request", "14 digits"),
        ({"usage_point_id": CONSUMER_PRM, "end": "2026-10-01"}, "Invalid_request", "Start date"),
        ({"usage_point_id": CONSUMER_PRM, "start": "29/09/2026", "end": "2026-10-01"}, "Invalid_request", "YYYY-MM-DD"),
        ({"usage_point_id": CONSUMER_PRM, "start": "2026-09-29", "end": "2026-02-30"}, "Invalid_request", "YYYY-MM-DD"),
        (
            {"usage_point_id": CONSUMER_PRM, "start": "2026-09-29", "end": "2026-09-29"},
            "Invalid_request",
            "before end date",
        ),
        (
            {"usage_point_id": CONSUMER_PRM, "start": "2026-09-29", "end": "2026-09-28"},
            "Invalid_request",
            "before end date",
        ),
        (
            {"usage_point_id": CONSUMER_PRM, "start": "2026-09-29", "end": "2026-10-06"},
            "Invalid_request",
            "current date",
        ),
        ({"usage_point_id": CONSUMER_PRM, "start": "2025-09-01", "end": "2026-09-29"}, "Invalid_request", "365 days"),
        (
            {"usage_point_id": CONSUMER_PRM, "start": "2023-09-01", "end": "2023-09-10"},
            "ADAM-ERR0125",
            "history deadline",
        ),
        (
            {"usage_point_id": SECONDARY_PRM, "start": "2025-03-10", "end": "2025-03-20"},
            "ADAM-ERR0123",
            "activation date",
        ),
    ],
)
def test_v5_daily_bad_params(app, token, params, error, fragment):
    body = data(app, "/metering_data_dc/v5/daily_consumption", token, status=400, **params).json
    assert body["error"] == error
    assert fragment in body["error_description"]


def test_v5_load_curve_limits(app, token):
    too_long = data(
        app,
        "/metering_data_clc/v5/consumption_load_curve",
        token,
        status=400,
        usage_point_id=CONSUMER_PRM,
        start="2026-09-20",
        end="2026-09-28",
    ).json
    assert too_long["error"] == "ADAM-ERR0126"
    data(
        app,
        "/metering_data_clc/v5/consumption_load_curve",
        token,
        usage_point_id=CONSUMER_PRM,
        start="2026-09-20",
        end="2026-09-27",
    )  # 7 days: fine
    old = data(
        app,
        "/metering_data_clc/v5/consumption_load_curve",
        token,
        status=400,
        usage_point_id=CONSUMER_PRM,
        start="2024-09-01",
        end="2024-09-02",
    ).json
    assert old["error"] == "ADAM-ERR0125"  # 24 months for load curves
    before = data(
        app,
        "/metering_data_clc/v5/consumption_load_curve",
        token,
        status=400,
        usage_point_id=SECONDARY_PRM,
        start="2025-03-14",
        end="2025-03-18",
    ).json
    assert before["error"] == "ADAM-ERR0123"  # meter activated on 2025-03-17
    panels = data(
        app,
        "/metering_data_dp/v5/daily_production",
        token,
        status=400,
        usage_point_id=PRODUCER_PRM,
        start="2024-07-29",
        end="2024-08-01",
    ).json
    assert panels["error"] == "ADAM-ERR0123"  # panels installed on 2024-07-31


def test_v5_customers(app, token):
    params = {"usage_point_id": PRODUCER_PRM}
    contract = data(app, "/customers_upc/v5/usage_points/contracts", token, **params).json
    entry = contract["customer"]["usage_points"][0]
    assert entry["usage_point"]["usage_point_id"] == PRODUCER_PRM
    assert entry["contracts"]["subscribed_power"] == "12 kVA"
    assert entry["contracts"]["offpeak_hours"].startswith("HC (")
    address = data(app, "/customers_upa/v5/usage_points/addresses", token, **params).json
    where = address["customer"]["usage_points"][0]["usage_point"]["usage_point_addresses"]
    assert where["city"] == "TOULOUSE" and "geo_points" in where
    identity = data(app, "/customers_i/v5/identity", token, **params).json
    assert identity["identity"]["natural_person"]["lastname"] == "Soleil"
    contact = data(app, "/customers_cd/v5/contact_data", token, **params).json
    assert set(contact["contact"]) == {"phone", "email"}
    data(app, "/customers_i/v5/identity", token, status=400)


# -- Data Connect 2026 ------------------------------------------------------

MESURE_KEYS = {
    # file: (top-level keys, grandeur keys, point keys), as in fixtures-2026
    "consommation_quotidienne": (
        {"idPrm", "etapeMetier", "periode", "typeValeur", "modeCalcul", "pas", "grandeur", "contexte"},
        {"grandeurMetier", "grandeurPhysique", "unite", "points", "calendrier"},
        {"v", "d"},
    ),
    "production_quotidienne": (
        {"idPrm", "etapeMetier", "periode", "typeValeur", "modeCalcul", "pas", "grandeur", "contexte"},
        {"grandeurMetier", "grandeurPhysique", "unite", "points", "calendrier"},
        {"v", "d"},
    ),
    "courbe_de_charge_consommation": (
        {"idPrm", "etapeMetier", "periode", "modeCalcul", "grandeur", "contexte"},
        {"grandeurMetier", "grandeurPhysique", "unite", "points", "calendrier"},
        {"v", "d", "p", "n", "iv", "ec"},
    ),
    "courbe_de_charge_production": (
        {"idPrm", "etapeMetier", "periode", "modeCalcul", "grandeur", "contexte"},
        {"grandeurMetier", "grandeurPhysique", "unite", "points", "calendrier"},
        {"v", "d", "p", "n", "iv", "ec"},
    ),
    "puissance_conso_max_quotidienne": (
        {"idPrm", "etapeMetier", "periode", "modeCalcul", "pas", "grandeur", "contexte"},
        {"grandeurMetier", "grandeurPhysique", "unite", "points", "calendrier"},
        {"v", "d"},
    ),
}
FIXTURE_PRM = {
    "consommation_quotidienne": CONSUMER_PRM,
    "production_quotidienne": PRODUCER_PRM,
    "courbe_de_charge_consommation": CONSUMER_PRM,
    "courbe_de_charge_production": PRODUCER_PRM,
    "puissance_conso_max_quotidienne": CONSUMER_PRM,
}


def mesure(app, tok, name, status=200, **params):
    if name == "puissance_conso_max_quotidienne":
        params = {"mesuresPas": "P1D", "grandeurPhysique": "PMA", **params}
    return data(app, f"/mesure_synchrone_auto/v2/{name}", tok, status=status, **params)


@pytest.mark.parametrize("name", sorted(MESURE_KEYS))
def test_2026_measure_shapes(app, token, name):
    body = mesure(app, token, name, pointId=FIXTURE_PRM[name], dateDebut="2026-09-29", dateFin="2026-10-01").json
    top, grandeur_keys, point_keys = MESURE_KEYS[name]
    assert set(body) == top
    assert body["idPrm"] == FIXTURE_PRM[name]
    assert body["periode"] == {"dateDebut": "2026-09-29", "dateFin": "2026-10-01"}
    assert body["contexte"] == []
    [grandeur] = body["grandeur"]
    assert set(grandeur) == grandeur_keys
    assert all(set(p) == point_keys and isinstance(p["v"], str) for p in grandeur["points"])
    if name.startswith("courbe"):
        assert len(grandeur["points"]) == 96 and grandeur["unite"] == "W"
        assert grandeur["points"][0]["d"] == "2026-09-29 00:30:00"
        assert grandeur["points"][-1]["d"] == "2026-10-01 00:00:00"
    else:
        assert len(grandeur["points"]) == 2
    # the same as the real captured answer, key for key
    fixture = json.loads((FIXTURES / f"mesure_{name}.json").read_text())
    assert set(fixture) == set(body)
    assert set(fixture["grandeur"][0]) == set(grandeur)
    for key in ("idPrm", "etapeMetier", "periode", "typeValeur", "modeCalcul", "pas"):
        assert body.get(key) == fixture.get(key)
    for key in ("grandeurMetier", "grandeurPhysique", "unite"):
        assert grandeur[key] == fixture["grandeur"][0][key]
    assert set(fixture["grandeur"][0]["points"][0]) == point_keys


@pytest.mark.parametrize(
    "v5, name, prm",
    [
        ("/metering_data_dc/v5/daily_consumption", "consommation_quotidienne", CONSUMER_PRM),
        ("/metering_data_dc/v5/daily_consumption", "consommation_quotidienne", PRODUCER_PRM),
        ("/metering_data_clc/v5/consumption_load_curve", "courbe_de_charge_consommation", PRODUCER_PRM),
        ("/metering_data_dcmp/v5/daily_consumption_max_power", "puissance_conso_max_quotidienne", CONSUMER_PRM),
        ("/metering_data_dp/v5/daily_production", "production_quotidienne", PRODUCER_PRM),
        ("/metering_data_plc/v5/production_load_curve", "courbe_de_charge_production", PRODUCER_PRM),
    ],
)
def test_v5_and_2026_give_the_same_numbers(app, token, v5, name, prm):
    old = data(app, v5, token, usage_point_id=prm, start="2026-09-27", end="2026-10-01").json
    new = mesure(app, token, name, pointId=prm, dateDebut="2026-09-27", dateFin="2026-10-01").json
    old_points = [(p["date"], p["value"]) for p in old["meter_reading"]["interval_reading"]]
    new_points = [(p["d"], p["v"]) for p in new["grandeur"][0]["points"]]
    assert old_points == new_points
    assert len(old_points) in (4, 192)


def test_2026_quirks(app, token):
    base = {"pointId": CONSUMER_PRM, "dateDebut": "2026-09-29", "dateFin": "2026-10-01"}
    # outside the Swagger: 500, not 400
    for missing in ("pointId", "dateDebut", "dateFin"):
        params = {k: v for k, v in base.items() if k != missing}
        mesure(app, token, "consommation_quotidienne", status=500, **params)
    mesure(app, token, "consommation_quotidienne", status=500, **{**base, "dateFin": "01/10"})
    data(app, "/mesure_synchrone_auto/v2/puissance_conso_max_quotidienne", token, status=500, **base)
    data(
        app,
        "/mesure_synchrone_auto/v2/puissance_conso_max_quotidienne",
        token,
        status=500,
        mesuresPas="P1D",
        grandeurPhysique="XYZ",
        **base,
    )
    same_day = {**base, "dateFin": "2026-09-29"}
    refused = mesure(app, token, "courbe_de_charge_consommation", status=400, **same_day).json
    assert refused["error"] == "Invalid_request"
    empty = mesure(app, token, "consommation_quotidienne", **same_day).json
    assert empty["grandeur"][0]["points"] == []
    # business errors keep the ADAM codes, as v5
    too_long = mesure(
        app,
        token,
        "courbe_de_charge_consommation",
        status=400,
        pointId=CONSUMER_PRM,
        dateDebut="2026-09-01",
        dateFin="2026-09-10",
    ).json
    assert too_long["error"] == "ADAM-ERR0126"
    before = mesure(
        app,
        token,
        "consommation_quotidienne",
        status=400,
        pointId=SECONDARY_PRM,
        dateDebut="2025-03-01",
        dateFin="2025-03-20",
    ).json
    assert before["error"] == "ADAM-ERR0123"
    # the ITC APIs take the PRM in the path
    data(app, "/situation_contrat_auto/v1", token, status=500, usage_point_id=CONSUMER_PRM)


def test_2026_monthly_max_power(app, token):
    body = mesure(
        app,
        token,
        "puissance_conso_max_quotidienne",
        pointId=CONSUMER_PRM,
        dateDebut="2026-08-15",
        dateFin="2026-10-01",
        mesuresPas="P1M",
    ).json
    assert body["pas"] == "P1M"
    points = body["grandeur"][0]["points"]
    assert [p["d"][:7] for p in points] == ["2026-08", "2026-09"]
    daily = mesure(
        app,
        token,
        "puissance_conso_max_quotidienne",
        pointId=CONSUMER_PRM,
        dateDebut="2026-09-01",
        dateFin="2026-10-01",
    ).json["grandeur"][0]["points"]
    assert points[1] == max(daily, key=lambda p: int(p["v"]))


def test_2026_contract_apis(app, token):
    situation = data(app, f"/situation_contrat_auto/v1/{PRODUCER_PRM}", token).json
    assert [c["contract_type"] for c in situation] == ["Contrat GRD-F", "Contrat GRD-A"]
    assert situation[0]["subscribed_power"] == {"unit": "kVA", "value": "12"}
    assert "subscribed_power" not in situation[1]
    consumer = data(app, f"/situation_contrat_auto/v1/{CONSUMER_PRM}", token).json
    assert len(consumer) == 1 and consumer[0]["segment"] == "C5"
    synth = data(app, f"/synth_contrat_auto/v1/{PRODUCER_PRM}", token).json
    assert synth["segments"] == [{"segment": "C5"}, {"segment": "P4"}]
    assert synth["generation_last_activation_date"] == "2024-07-31T00:00:00+0200"
    assert synth["consumption_last_activation_date"] == "2014-01-22T00:00:00+0100"
    counting = data(app, f"/comptage_auto/v1/{CONSUMER_PRM}", token).json
    assert counting["relais"]["plageHeuresCreuses"] == "HC (22H00-6H00)"
    general = data(app, f"/donnees_generales_auto/v1/{CONSUMER_PRM}", token).json
    assert set(general["address"]) == {"number_street_name", "postal_code_city", "insee_code"}
    for name, body in (
        ("situation_contrat_autoconsommation", situation),
        ("situation_contrat_consommateur", consumer),
        ("synth_contrat_autoconsommation", synth),
    ):
        fixture = json.loads((FIXTURES / f"{name}.json").read_text())
        if isinstance(fixture, list):
            assert [set(c) for c in fixture] == [set(c) for c in body]
            assert [c["contract_type"] for c in fixture] == [c["contract_type"] for c in body]
        else:
            assert set(fixture) <= set(body)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="the reference captures are not beside this repository")
def test_the_fixtures_are_the_reference_captures():
    """The copies in tests/fixtures/enedis-2026 that the tests read are the captures, byte for byte."""
    captured = sorted(path.name for path in REFERENCE.glob("*.json"))
    assert captured and sorted(path.name for path in FIXTURES.glob("*.json")) == captured
    for name in captured:
        assert (FIXTURES / name).read_bytes() == (REFERENCE / name).read_bytes(), name


def test_comptage_auto_may_be_unsubscribed(app, sim, token):
    sim.comptage_subscribed = False
    body = data(app, f"/comptage_auto/v1/{CONSUMER_PRM}", token, status=403).json
    assert body["code"] == "900908"
    assert body == json.loads((FIXTURES / "erreur_comptage_non_souscrit.json").read_text())


# -- knobs: failures, delay, v5 switch, stats ---------------------------------

DAILY = "/metering_data_dc/v5/daily_consumption"
DAILY_PARAMS = {"usage_point_id": CONSUMER_PRM, "start": "2026-09-29", "end": "2026-10-01"}


def test_failure_injection_429_with_next_access_time(app, sim, token):
    answer = control(
        app,
        sim,
        {
            "fail": [
                {
                    "match": "/metering_data_dc",
                    "status": 429,
                    "times": 2,
                    "next_access_time": "2026-10-04T12:01:00+02:00",
                }
            ]
        },
    )
    assert len(answer.json["fail"]) == 1
    for _ in range(2):
        throttled = data(app, DAILY, token, status=429, **DAILY_PARAMS).json
        assert throttled["nextAccessTime"] == "2026-10-04T12:01:00+02:00"
        assert throttled["code"] == "900802"
    # other paths are untouched, and the failure is used up
    data(app, "/metering_data_clc/v5/consumption_load_curve", token, **DAILY_PARAMS)
    data(app, DAILY, token, **DAILY_PARAMS)
    assert sim.fail == []
    assert sim.calls["daily_consumption"] == 3


def test_failure_injection_with_a_body_and_on_tokens(app, sim):
    sim.fail.append({"match": "/oauth2/v3/token", "status": 503, "body": "<html>down</html>"})
    sim.fail.append({"match": "/oauth2/v3/token", "status": 500, "body": {"error": "server_error"}})
    form = {"grant_type": "client_credentials", "client_id": CLIENT}
    down = app.post("/oauth2/v3/token", form, status=503)
    assert down.text == "<html>down</html>" and down.content_type == "text/html"
    assert app.post("/oauth2/v3/token", form, status=500).json == {"error": "server_error"}
    app.post("/oauth2/v3/token", form, status=200)
    assert sim.calls["token_v3"] == 3


def test_control_rejects_bad_input(app, sim):
    control(app, sim, {"delay": "slow"}, status=400)
    control(app, sim, {"v5_enabled": "no"}, status=400)
    control(app, sim, {"fail": [{"match": "/x", "status": 42}]}, status=400)
    app.post("/_control", "not json", content_type="application/json", status=400, headers=knob_key(sim))


def test_control_without_its_token_is_refused_and_changes_nothing(app, sim):
    """Anyone reaching a demo server could freeze it (a long delay) or fill its memory (fail lists)."""
    for headers in ({}, bearer("guess"), bearer(sim.control_token[:-1]), {"Authorization": sim.control_token}):
        started = time.monotonic()
        refused = app.post_json("/_control", {"delay": 5}, headers=headers, status=401)
        assert refused.json["error"] == "invalid_token"
        assert time.monotonic() - started < 1
    assert sim.delay == 0
    assert len(sim.control_token) >= 32
    assert Simulator("http://localhost").control_token != sim.control_token  # one per simulator


def test_unauthenticated_data_calls_are_refused_before_any_delay(app, sim, token):
    control(app, sim, {"delay": 2})
    for headers in ({}, bearer("not-a-token")):
        started = time.monotonic()
        app.get(DAILY, DAILY_PARAMS, headers=headers, status=401)
        assert time.monotonic() - started < 1  # refused at once: no thread held
    started = time.monotonic()
    data(app, DAILY, token, **DAILY_PARAMS)
    assert time.monotonic() - started >= 2


def test_control_knobs_are_bounded(app, sim):
    megabyte = "x" * (1024 * 1024)
    big = app.post(
        "/_control",
        json.dumps({"fail": [{"match": megabyte, "status": 500}]}),
        content_type="application/json",
        headers=knob_key(sim),
        expect_errors=True,
    )
    assert big.status_int in (400, 413) and sim.fail == []
    many = [{"match": "/", "status": 500}] * 200
    control(app, sim, {"fail": many}, status=400)
    for knobs in (
        {"delay": 301},
        {"delay": 61},
        {"delay": -1},
        {"delay": float("nan")},
        {"subscribed_delay_calls": 10**9},
        {"token_lifetime": 10**12},
        {"fail": {"match": "/", "status": 500, "times": 10**9}},
        {"fail": {"match": "/", "status": 500, "body": "y" * 20_000}},
        {"fail": {"match": "/", "status": 500, "extra": "z"}},
    ):
        control(app, sim, knobs, status=400)
    assert sim.delay == 0 and sim.fail == [] and sim.subscribed_delay_calls == 0 and sim.token_lifetime == 12600
    # Entries add up across posts, within the same bound, and a reset frees them.
    for _ in range(2):
        control(app, sim, {"fail": [{"match": "/", "status": 500}] * 50})
    control(app, sim, {"fail": {"match": "/", "status": 500}}, status=400)
    assert len(sim.fail) == 100
    control(app, sim, {"reset": True})
    assert sim.fail == []


def test_every_knob_of_the_table_has_its_default_its_bounds_and_its_reset(app, sim):
    """KNOBS drives POST /_control, GET /_stats and the reset: each knob, read from the table."""
    defaults = {knob.name: list(knob.default) if knob.type is list else knob.default for knob in KNOBS}
    stats = app.get("/_stats").json
    assert {name: stats[name] for name in defaults} == defaults
    assert set(stats) == {"calls", *defaults}
    for knob in KNOBS:
        if knob.type is bool:
            control(app, sim, {knob.name: "yes"}, status=400)
            changed = not knob.default
        elif knob.type is list:
            continue  # the failures have their own tests
        else:
            control(app, sim, {knob.name: knob.high + 1}, status=400)
            control(app, sim, {knob.name: knob.low - 1}, status=400)
            changed = knob.high
        assert getattr(sim, knob.name) == knob.default  # a refused value changes nothing
        assert control(app, sim, {knob.name: changed}).json[knob.name] == changed
        assert getattr(sim, knob.name) == changed
    assert control(app, sim, {"reset": True}).json == {"calls": {}, **defaults}
    assert {knob.name: getattr(sim, knob.name) for knob in KNOBS} == defaults


def test_delay_applies_to_data_calls_only(app, sim, token):
    control(app, sim, {"delay": 0.3})
    assert sim.delay == 0.3
    started = time.monotonic()
    app.post("/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT})
    assert time.monotonic() - started < 0.25
    started = time.monotonic()
    data(app, DAILY, token, **DAILY_PARAMS)
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    data(app, f"/synth_contrat_auto/v1/{CONSUMER_PRM}", token)
    assert time.monotonic() - started >= 0.3


def test_v5_can_be_switched_off(app, sim, token):
    control(app, sim, {"v5_enabled": False})
    assert sim.v5_enabled is False
    off = data(app, DAILY, token, status=404, **DAILY_PARAMS).json
    assert off["code"] == "900906"
    data(app, "/customers_upc/v5/usage_points/contracts", token, status=404, usage_point_id=CONSUMER_PRM)
    app.get(DAILY, DAILY_PARAMS, status=404)  # even without a token: the resource is gone
    mesure(app, token, "consommation_quotidienne", pointId=CONSUMER_PRM, dateDebut="2026-09-29", dateFin="2026-10-01")
    sim.v5_enabled = True
    data(app, DAILY, token, **DAILY_PARAMS)


def test_stats_and_reset(app, sim, token):
    data(app, DAILY, token, **DAILY_PARAMS)
    app.get("/unknown/path", status=404)
    stats = app.get("/_stats").json
    assert stats["calls"]["token_v3"] == 1
    assert stats["calls"]["daily_consumption"] == 1
    assert stats["calls"]["not_found"] == 1
    assert stats["v5_enabled"] is True and stats["delay"] == 0
    control(
        app, sim, {"delay": 1, "v5_enabled": False, "subscribed_delay_calls": 3, "fail": {"match": "/", "status": 500}}
    )
    after = control(app, sim, {"reset": True}).json
    assert after["calls"] == {} and after["delay"] == 0 and after["v5_enabled"] is True
    assert after["fail"] == [] and after["subscribed_delay_calls"] == 0
    data(app, DAILY, token, **DAILY_PARAMS)  # tokens survive a reset


def test_revoke_tokens_and_short_lifetime(app, sim, token, clock):
    control(app, sim, {"revoke_tokens": True})
    data(app, DAILY, token, status=401, **DAILY_PARAMS)
    control(app, sim, {"token_lifetime": 60})
    short = app.post("/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT}).json
    assert short["expires_in"] == "60"
    clock.now += 61
    data(app, DAILY, short["access_token"], status=401, **DAILY_PARAMS)


# -- mounted in a parent app, as `serve --demo` does ----------------------------


def test_mounted_under_a_prefix(clock):
    sim = Simulator("http://localhost/enedis", CLIENT, clock=clock)
    parent = bottle.Bottle()

    @parent.error(404)
    def html_404(error):  # the parent's handlers must not reshape Enedis's answers
        return "parent 404"

    parent.mount("/enedis/", sim.app)
    app = webtest.TestApp(parent)
    page = app.get(
        "/enedis/dataconnect/v1/oauth2/authorize",
        {"client_id": CLIENT, "response_type": "code", "state": "s", "duration": "P1Y", "redirect_uri": REDIRECT},
    )
    assert 'action="http://localhost/enedis/dataconnect/v1/oauth2/authorize"' in page.text
    form = page.forms[0]
    form.fields["usage_point_id"][2].checked = True
    _, query = query_of(form.submit("decision", index=0).headers["Location"])
    assert query["usage_point_id"] == SECONDARY_PRM
    tok = app.post("/enedis/oauth2/v3/token", {"grant_type": "client_credentials", "client_id": CLIENT}).json[
        "access_token"
    ]
    sim.fail.append({"match": "/metering_data_dc", "status": 429})
    app.get(f"/enedis{DAILY}", DAILY_PARAMS, headers=bearer(tok), status=429)
    app.get(f"/enedis{DAILY}", DAILY_PARAMS, headers=bearer(tok), status=200)
    assert app.get("/enedis/nowhere", status=404).json["code"] == "900906"
    assert sim.calls["daily_consumption"] == 2


def test_meters_on_offer():
    assert list(METERS) == ["99999999999991", "99999999999992", "99999999999993"]
    assert METERS[PRODUCER_PRM].producer and not METERS[CONSUMER_PRM].producer
