"""End to end: a device that went through the flow on the demo server (waitress
on 127.0.0.1, simulated Enedis) fetches its data through /data/proxy."""

import datetime as dt
from zoneinfo import ZoneInfo

import requests
from helpers import DEVICE_GRANT, control_headers
from test_e2e import PRM, consent_in_browser, device_post

LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"
OTHER_PRM = "99999999999992"


def device_tokens(base):
    code = device_post(base, "/device/code").json()
    consent_in_browser(base, code["verification_uri_complete"], points=(PRM,))
    tokens = device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"]).json()
    assert tokens["usage_points_id"] == PRM
    return tokens


def last_week():
    today = dt.datetime.now(ZoneInfo("Europe/Paris")).date()  # Enedis's today
    return {"start": (today - dt.timedelta(days=7)).isoformat(), "end": today.isoformat()}


def fetch(base, token, usage_point=PRM, path=LOAD_CURVE):
    return requests.get(
        f"{base}/data/proxy/{path}",
        params={"usage_point_id": usage_point, **last_week()},
        headers={"Authorization": f"Bearer {token}", "User-Agent": "DomoticzLinky/2.6.0"},
        timeout=30,
    )


def simulator(base, **knobs):
    return requests.post(f"{base}/enedis/_control", json=knobs, headers=control_headers(base), timeout=10).json()


def test_device_fetches_a_week_of_load_curve_and_not_another_meter(live_server):
    base = live_server(ENEDIS_API_MODE="legacy")
    token = device_tokens(base)["access_token"]

    week = fetch(base, token)
    assert week.status_code == 200, week.text
    assert week.headers["X-Enedis-Proxy-Source"] == "legacy"
    assert week.headers["Cache-Control"] == "no-store"
    reading = week.json()["meter_reading"]
    assert reading["usage_point_id"] == PRM
    assert len(reading["interval_reading"]) == 7 * 48  # half-hour points

    other = fetch(base, token, usage_point=OTHER_PRM)
    assert other.status_code == 403 and other.json()["error"] == "insufficient_scope"


def test_proxy_renews_its_token_when_enedis_forgets_it(live_server):
    base = live_server(ENEDIS_API_MODE="legacy")
    token = device_tokens(base)["access_token"]
    assert fetch(base, token).status_code == 200
    simulator(base, reset=True, revoke_tokens=True)

    assert fetch(base, token).status_code == 200
    calls = simulator(base)["calls"]
    assert calls["token_v3"] == 1 and calls["consumption_load_curve"] == 2  # refused once, then served


def test_enedis_throttling_reaches_the_device_as_429_with_retry_after(live_server):
    base = live_server(ENEDIS_API_MODE="legacy")
    token = device_tokens(base)["access_token"]
    later = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=10)
    simulator(
        base,
        fail={
            "match": "/metering_data",
            "status": 429,
            "next_access_time": later.strftime("%Y-%b-%d %H:%M:%S+0000 UTC"),
        },
    )
    answer = fetch(base, token)
    assert answer.status_code == 429 and answer.json()["message"] == "Message throttled out"
    assert 590 <= int(answer.headers["Retry-After"]) <= 600
