"""End to end, Data Connect 2026: a device consents through the v2 consent page
of the demo server's simulated Enedis, then asks DomoticzLinky's three v5
calls through /data/proxy, answered from the 2026 APIs (`new`, v5 switched
off) or from either (`auto`)."""

import requests
from browser import Browser
from helpers import DEVICE_GRANT
from test_e2e import CLIENT, device_post
from test_e2e_data_proxy import fetch, last_week, simulator
from test_translate import domoticz_linky_hours

PRODUCER = "99999999999992"  # consumes and produces: all three calls have data
LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"
PRODUCTION_LOAD_CURVE = "metering_data_plc/v5/production_load_curve"
MAX_POWER = "metering_data_dcmp/v5/daily_consumption_max_power"
DOMOTICZ_LINKY_CALLS = (LOAD_CURVE, PRODUCTION_LOAD_CURVE, MAX_POWER)
V5_CALL_NAMES = ("consumption_load_curve", "production_load_curve", "daily_consumption_max_power")


def consent_v2(base, prm=PRODUCER):
    """The device asks for a code; the person shares one meter on the v2 page. Returns (code, browser)."""
    code = device_post(base, "/device/code").json()
    browser = Browser()
    browser.open(code["verification_uri_complete"])
    browser.submit()  # "Continuer vers Enedis"
    assert "/enedis/dataconnect/v2/oauth2/authorize" in browser.page.url
    browser.submit(checked=(prm,), button=("decision", "accept"))
    assert browser.page.url.startswith(f"{base}/auth/redirect?autorisation_id="), browser.page.url
    return code, browser


def tokens(base, code):
    return device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"])


def device_token(base, prm=PRODUCER):
    code, browser = consent_v2(base, prm)
    assert browser.page.status_code == 200 and prm in browser.page.text
    answer = tokens(base, code).json()
    assert answer["usage_points_id"] == prm
    return answer["access_token"]


def enedis_v5(base, path, prm=PRODUCER):
    """The simulated Enedis's own v5 answer, asked directly with a client_credentials token."""
    token = requests.post(
        f"{base}/enedis/oauth2/v3/token", timeout=10, data={"grant_type": "client_credentials", "client_id": CLIENT}
    ).json()["access_token"]
    return requests.get(
        f"{base}/enedis/{path}",
        params={"usage_point_id": prm, **last_week()},
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
    )


def assert_domoticz_linky_reads(answer, prm=PRODUCER):
    assert answer.status_code == 200, answer.text
    reading = answer.json()["meter_reading"]
    assert reading["usage_point_id"] == prm
    assert reading["interval_reading"] and all(
        isinstance(point["value"], str) and point["date"] for point in reading["interval_reading"]
    )
    return reading


def test_new_mode_with_v5_switched_off_serves_domoticz_linky_after_a_v2_consent(live_server):
    base = live_server(ENEDIS_AUTHORIZE_VERSION="v2", ENEDIS_API_MODE="new")
    health = requests.get(f"{base}/healthz", timeout=10).json()
    assert (health["authorize_version"], health["api_mode"]) == ("v2", "new")
    simulator(base, v5_enabled=False)
    token = device_token(base)

    answers = {path: fetch(base, token, usage_point=PRODUCER, path=path) for path in DOMOTICZ_LINKY_CALLS}
    for path, answer in answers.items():
        assert answer.headers["X-Enedis-Proxy-Source"] == "new", path
        assert answer.headers["Cache-Control"] == "no-store"
        assert_domoticz_linky_reads(answer)
    for path in (LOAD_CURVE, PRODUCTION_LOAD_CURVE):
        hours = domoticz_linky_hours(answers[path].text, PRODUCER)
        assert len(hours) == 7 * 24  # a week of hours, from half-hour points
    maxima = answers[MAX_POWER].json()["meter_reading"]["interval_reading"]
    assert len(maxima) == 7 and all(len(point["date"]) == len("2026-10-01 12:50:25") for point in maxima)

    calls = simulator(base)["calls"]
    assert calls["subscribed_services"] == 1 and calls["courbe_de_charge_production"] == 1
    assert not any(calls.get(name) for name in V5_CALL_NAMES)  # v5 was never asked


def test_auto_mode_answers_what_v5_would_and_falls_back_on_it(live_server):
    base = live_server(ENEDIS_AUTHORIZE_VERSION="v2")  # ENEDIS_API_MODE=auto by default
    assert requests.get(f"{base}/healthz", timeout=10).json()["api_mode"] == "auto"
    token = device_token(base)

    for path in DOMOTICZ_LINKY_CALLS:
        translated = fetch(base, token, usage_point=PRODUCER, path=path)
        assert translated.headers["X-Enedis-Proxy-Source"] == "new", path
        assert assert_domoticz_linky_reads(translated) == enedis_v5(base, path).json()["meter_reading"], path

    # The 2026 API failing: v5 answers, the same data
    simulator(base, fail={"match": "/mesure_synchrone_auto", "status": 500})
    fallback = fetch(base, token, usage_point=PRODUCER)
    assert fallback.headers["X-Enedis-Proxy-Source"] == "legacy"
    assert fallback.json() == enedis_v5(base, LOAD_CURVE).json()

    # Throttled: no fallback, the device retries later
    simulator(base, fail={"match": "/mesure_synchrone_auto", "status": 429})
    throttled = fetch(base, token, usage_point=PRODUCER)
    assert throttled.status_code == 429 and throttled.headers["X-Enedis-Proxy-Source"] == "new"
    assert int(throttled.headers["Retry-After"]) > 0

    # v5 switched off, the 2026 API failing: its 500 (retry later), not v5's 404 ("no data")
    simulator(base, v5_enabled=False, fail={"match": "/mesure_synchrone_auto", "status": 500})
    both_down = fetch(base, token, usage_point=PRODUCER)
    assert both_down.status_code == 500 and both_down.headers["X-Enedis-Proxy-Source"] == "new"
    assert set(both_down.json()) == {"error", "error_description"}

    # v5 switched off, the 2026 API back: served
    assert_domoticz_linky_reads(fetch(base, token, usage_point=PRODUCER, path=MAX_POWER))


def test_v2_share_not_registered_yet_asks_the_person_to_reload(live_server):
    base = live_server(ENEDIS_AUTHORIZE_VERSION="v2", ENEDIS_API_MODE="new")
    # Enedis lists the share only from its fifth search: one more than the proxy's brief retries.
    simulator(base, subscribed_delay_calls=4)
    code, browser = consent_v2(base)
    assert browser.page.status_code == 503 and "Rechargez cette page" in browser.page.text
    assert tokens(base, code).json()["error"] == "authorization_pending"

    reloaded = browser.open(browser.page.url)
    assert reloaded.status_code == 200 and PRODUCER in reloaded.text
    assert tokens(base, code).json()["usage_points_id"] == PRODUCER
    assert simulator(base)["calls"]["subscribed_services"] == 5
