"""End to end: the demo server in a subprocess (waitress on 127.0.0.1, simulated
Enedis), a device speaking HTTP, and a scripted browser."""

import datetime

import requests
from browser import Browser
from helpers import DEVICE_GRANT

CLIENT = "deviceflow-demo"
PRM = "99999999999991"


def device_post(base, path, **form):
    return requests.post(
        f"{base}{path}", data={"client_id": CLIENT, **form}, timeout=10, headers={"User-Agent": "DomoticzLinky/2.6.0"}
    )


def consent_in_browser(base, verification_uri_complete, points=(PRM,)):
    browser = Browser()
    page = browser.open(verification_uri_complete)
    assert page.status_code == 200 and "DomoticzLinky" in page.text
    browser.submit()  # "Continuer vers Enedis": the proxy sends the browser to the consent page
    assert "/enedis/dataconnect/v1/oauth2/authorize" in browser.page.url
    done = browser.submit(checked=points, button=("decision", "accept"))
    assert done.url.startswith(f"{base}/auth/redirect"), done.url
    return done


def test_device_gets_tokens_after_consent_then_rotates_them(live_server):
    base = live_server()
    code = device_post(base, "/device/code").json()
    assert code["verification_uri_complete"].startswith(base)
    assert (
        device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"]).json()["error"]
        == "authorization_pending"
    )

    done = consent_in_browser(base, code["verification_uri_complete"], points=(PRM, "99999999999992"))
    assert done.status_code == 200 and PRM in done.text

    tokens = device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"])
    assert tokens.status_code == 200
    first = tokens.json()
    assert first["usage_points_id"] == f"{PRM},99999999999992"

    second = device_post(base, "/device/token", grant_type="refresh_token", refresh_token=first["refresh_token"])
    third = device_post(base, "/device/token", grant_type="refresh_token", refresh_token=second.json()["refresh_token"])
    assert second.status_code == 200 and third.status_code == 200
    assert len({first["refresh_token"], second.json()["refresh_token"], third.json()["refresh_token"]}) == 3
    # second was used, so first has been replaced: presenting it again is refused
    old = device_post(base, "/device/token", grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"


def test_refusing_at_enedis_tells_the_device(live_server):
    base = live_server()
    code = device_post(base, "/device/code").json()
    browser = Browser()
    browser.open(code["verification_uri_complete"])
    browser.submit()
    page = browser.submit(button=("decision", "refuse"))
    assert page.status_code == 400 and "refusée" in page.text
    answer = device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"])
    assert answer.json()["error"] == "access_denied"


def test_refresh_token_survives_a_restart(live_server, tmp_path):
    store = tmp_path / "kept.sqlite3"
    base = live_server.proxy(store)
    code = device_post(base, "/device/code").json()
    consent_in_browser(base, code["verification_uri_complete"])
    tokens = device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"]).json()
    first = live_server.processes[-1]
    first.terminate()
    first.wait(10)

    again = live_server.proxy(store)
    renewed = device_post(again, "/device/token", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert renewed.status_code == 200 and renewed.json()["usage_points_id"] == PRM


def test_pass_through_mode_relays_the_upstream_tokens(live_server):
    """FLOW=DEVICE with PKCE: the simulated Enedis's v1 token endpoint issues the tokens, the proxy relays them.
    The device lends its client_secret (no CLIENT_SECRET here): the code is exchanged at its poll."""
    base = live_server(FLOW="DEVICE", PKCE="1")
    code = device_post(base, "/device/code", client_secret="lent-by-the-device").json()
    consent_in_browser(base, code["verification_uri_complete"])
    # The simulator checked the PKCE verifier against the challenge before issuing these.
    tokens = device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"]).json()
    assert tokens["usage_points_id"] == PRM and "issued_at" in tokens  # upstream's own answer
    assert tokens["usage_point_id"] == PRM  # plus the redirect's extra parameter

    # Data requests go straight to upstream, with upstream's token.
    today = datetime.date.today()
    data = requests.get(
        f"{base}/enedis/metering_data_dc/v5/daily_consumption",
        timeout=10,
        params={
            "usage_point_id": PRM,
            "start": str(today - datetime.timedelta(days=8)),
            "end": str(today - datetime.timedelta(days=1)),
        },
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert data.status_code == 200 and data.json()["meter_reading"]["usage_point_id"] == PRM

    def token_calls():
        calls = requests.get(f"{base}/enedis/_stats", timeout=10).json()["calls"]
        return calls.get("token_v1", 0), calls.get("token_v3", 0)

    before = token_calls()
    refused = device_post(base, "/device/proxy", grant_type="client_credentials")
    assert refused.status_code == 400 and refused.json()["error"] == "unsupported_grant_type"
    assert token_calls() == before  # the secret was not lent

    renewed = device_post(base, "/device/proxy", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert renewed.status_code == 200 and renewed.json()["access_token"] != tokens["access_token"]
    replayed = device_post(base, "/device/proxy", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"  # upstream's own answer
