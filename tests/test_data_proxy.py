"""GET /data/proxy/<v5 path> as a device sees it (SPEC §4): WebTest over the
WSGI app, and a real waitress server for the raw request paths. Enedis is
`responses`; devices get their tokens through the flow (helpers)."""

import json
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import waitress
from helpers import PRM1, PRM2, at_once, tokens_for
from webtest import TestApp

from deviceflow.enedis import BUDGET_WAIT, EnedisClient
from deviceflow.errors import StoreUnavailable

TOKEN_URL = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
DATA = "https://gw.ext.prod.api.enedis.fr"
LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"
LOAD_CURVE_URL = f"{DATA}/{LOAD_CURVE}"
WEEK = {"start": "2026-09-22", "end": "2026-09-29"}
# A real v5 load curve answer (see tests/fixtures/enedis-2026/README.md).
V5_LOAD_CURVE = (Path(__file__).parent / "fixtures" / "enedis-2026" / "v5_consumption_load_curve.json").read_bytes()

# Each request path tries to make the proxy call somewhere else than a known
# Enedis data API; none may reach Enedis.
PATH_ATTACKS = {
    "dot-dot": "/data/proxy/metering_data_clc/v5/../../../oauth2/v3/token",
    "encoded dot-dot": "/data/proxy/metering_data_clc/v5/%2e%2e/%2e%2e/%2e%2e/oauth2/v3/token",
    "encoded slashes": "/data/proxy/%2F%2Fevil.example/x",
    "scheme-relative": "/data/proxy//evil.example/x",
    "userinfo": "/data/proxy/@evil.example/metering_data_clc/v5/consumption_load_curve",
    "scheme": "/data/proxy/http://evil.example/metering_data_clc/v5/consumption_load_curve",
    "backslashes": "/data/proxy/\\\\evil.example\\metering_data_clc",
    "dot segment": "/data/proxy/metering_data_clc/v5/%2e/consumption_load_curve",
    "unknown api": "/data/proxy/oauth2/v3/token",
}
# Harmless once decoded, so only the raw request path gives them away.
RAW_ONLY_ATTACKS = {
    "encoded known path": "/data/proxy/metering_data_clc%2Fv5%2Fconsumption_load_curve",
    "encoded letters": "/data/proxy/metering_data_clc/v5/consumption%5Fload%5Fcurve",
}


@pytest.fixture
def make_config(make_config):
    """v5 forwarded as is (ENEDIS_API_MODE=legacy) unless a test says otherwise:
    the Data Connect 2026 modes have their own tests (test_enedis_2026.py)."""
    return lambda **env: make_config(**{"ENEDIS_API_MODE": "legacy", **env})


@pytest.fixture
def make_proxy(make_web, config, sqlite_store, clock):
    def make(config=config, sleep=clock.advance):
        return make_web(config, upstream=EnedisClient(config, sqlite_store, clock=clock, sleep=sleep))

    return make


@pytest.fixture
def proxy(make_proxy):
    return make_proxy()


@pytest.fixture
def device_token(proxy):
    return tokens_for(proxy, PRM1)["access_token"]


def enedis_answers(mock, status=200, body=V5_LOAD_CURVE, **kwargs):
    mock.add(responses.POST, TOKEN_URL, json={"access_token": "enedis-token", "expires_in": "12600"})
    mock.add(
        responses.GET,
        LOAD_CURVE_URL,
        status=status,
        body=body,
        content_type=kwargs.pop("content_type", "application/json"),
        **kwargs,
    )


def fetch(app, token, path=f"/data/proxy/{LOAD_CURVE}", usage_point=PRM1, raw=False, **query):
    params = {"usage_point_id": usage_point, **WEEK, **query} if usage_point is not None else {**WEEK, **query}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    extra = {"REQUEST_URI": f"{path}?usage_point_id={usage_point}"} if raw else None
    return app.get(path, params, headers=headers, extra_environ=extra, expect_errors=True)


def assert_json_error(response, status, error):
    assert response.status_int == status, response.text
    assert response.json["error"] == error
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"


# --- the data, as Enedis gave it


def test_device_fetches_a_week_of_load_curve(proxy, device_token, enedis_mock):
    enedis_answers(enedis_mock)
    response = fetch(proxy, device_token)
    assert response.status_int == 200
    assert response.body == V5_LOAD_CURVE
    assert response.json["meter_reading"]["interval_reading"][0]["value"] == "4078"
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Enedis-Proxy-Source"] == "legacy"
    assert response.headers["Via"].startswith("1.1 deviceflow")
    sent = enedis_mock.calls[-1].request
    assert sent.url.startswith(LOAD_CURVE_URL + "?")
    assert parse_qs(urlsplit(sent.url).query) == {
        "usage_point_id": [PRM1],
        "start": [WEEK["start"]],
        "end": [WEEK["end"]],
    }
    assert sent.headers["Authorization"] == "Bearer enedis-token"  # the proxy's token, never the device's


def test_empty_query_parameters_are_not_passed_on(proxy, device_token, enedis_mock):
    enedis_answers(enedis_mock)
    fetch(proxy, device_token, end="", start="")
    assert urlsplit(enedis_mock.calls[-1].request.url).query == f"usage_point_id={PRM1}"


def test_a_token_with_two_usage_points_reaches_both(proxy, enedis_mock):
    enedis_answers(enedis_mock)
    token = tokens_for(proxy, f"{PRM1};{PRM2}")["access_token"]
    assert fetch(proxy, token, usage_point=PRM1).status_int == 200
    assert fetch(proxy, token, usage_point=PRM2).status_int == 200


@pytest.mark.parametrize(
    "status, error", [(404, "no_data_found"), (403, "forbidden"), (400, "ADAM-ERR0123"), (500, "technical_error")]
)
def test_enedis_status_and_json_body_are_kept(proxy, device_token, enedis_mock, status, error):
    """DomoticzLinky reads 404 as "no data" and retries on 500: both must be Enedis's."""
    body = json.dumps({"error": error, "error_description": "from Enedis"}).encode()
    enedis_answers(enedis_mock, status=status, body=body)
    response = fetch(proxy, device_token)
    assert response.status_int == status and response.body == body
    assert response.headers["X-Enedis-Proxy-Source"] == "legacy"


def test_enedis_html_error_page_becomes_json_with_its_status(proxy, device_token, enedis_mock):
    enedis_answers(enedis_mock, status=500, body="<html><body>Erreur</body></html>", content_type="text/html")
    response = fetch(proxy, device_token)
    assert_json_error(response, 500, "upstream_error")
    assert "html" not in response.text


# --- who may ask


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_missing_or_unknown_token_is_401_invalid_token(proxy, enedis_mock, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = proxy.get(f"/data/proxy/{LOAD_CURVE}", {"usage_point_id": PRM1, **WEEK}, headers=headers, status=401)
    assert_json_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert len(enedis_mock.calls) == 0


def test_expired_token_is_401_invalid_token_so_the_device_refreshes(proxy, device_token, enedis_mock, clock):
    clock.advance(12601)
    response = fetch(proxy, device_token)
    assert_json_error(response, 401, "invalid_token")
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert len(enedis_mock.calls) == 0


def test_usage_point_not_in_the_token_is_403_insufficient_scope(proxy, device_token, enedis_mock):
    assert_json_error(fetch(proxy, device_token, usage_point=PRM2), 403, "insufficient_scope")
    assert len(enedis_mock.calls) == 0


@pytest.mark.parametrize("usage_point", [None, ""])
def test_missing_usage_point_is_400_invalid_request(proxy, device_token, enedis_mock, usage_point):
    assert_json_error(fetch(proxy, device_token, usage_point=usage_point), 400, "invalid_request")
    assert len(enedis_mock.calls) == 0


def test_repeated_parameter_is_400_invalid_request(proxy, device_token, enedis_mock):
    response = proxy.get(
        f"/data/proxy/{LOAD_CURVE}?usage_point_id={PRM1}&usage_point_id={PRM2}",
        headers={"Authorization": f"Bearer {device_token}"},
        expect_errors=True,
    )
    assert_json_error(response, 400, "invalid_request")
    assert len(enedis_mock.calls) == 0


def test_version_min_refuses_old_devices(make_web, make_config, sqlite_store, enedis_mock):
    config = make_config(VERSION_MIN="2.0.0")
    app = make_web(config, upstream=EnedisClient(config, sqlite_store, clock=sqlite_store.clock))
    token = app.app.flow.tokens.mint([PRM1], "test-client")["access_token"]
    response = app.get(
        f"/data/proxy/{LOAD_CURVE}",
        {"usage_point_id": PRM1},
        headers={"Authorization": f"Bearer {token}", "User-Agent": "DomoticzLinky/1.9.0"},
        expect_errors=True,
    )
    assert_json_error(response, 400, "version_mismatch")
    assert len(enedis_mock.calls) == 0


# --- which paths exist


@pytest.mark.parametrize("path", PATH_ATTACKS.values(), ids=PATH_ATTACKS.keys())
@pytest.mark.parametrize("raw", [True, False], ids=["REQUEST_URI", "PATH_INFO only"])
def test_path_attacks_are_404_without_calling_enedis(proxy, device_token, enedis_mock, path, raw):
    assert_json_error(fetch(proxy, device_token, path=path, raw=raw), 404, "not_found")
    assert len(enedis_mock.calls) == 0


@pytest.mark.parametrize("path", RAW_ONLY_ATTACKS.values(), ids=RAW_ONLY_ATTACKS.keys())
def test_encoded_paths_are_404_when_the_server_gives_the_raw_path(proxy, device_token, enedis_mock, path):
    assert_json_error(fetch(proxy, device_token, path=path, raw=True), 404, "not_found")
    assert len(enedis_mock.calls) == 0


def test_every_v5_api_is_reachable(proxy, device_token, enedis_mock):
    from deviceflow.enedis import V5_PATHS

    enedis_mock.add(responses.POST, TOKEN_URL, json={"access_token": "enedis-token", "expires_in": 12600})
    for path in sorted(V5_PATHS):
        enedis_mock.add(responses.GET, f"{DATA}/{path}", json={"ok": path})
        assert fetch(proxy, device_token, path=f"/data/proxy/{path}", raw=True).json == {"ok": path}


# --- when the proxy cannot get an answer


def test_outbound_budget_spent_is_429_with_retry_after(make_proxy, make_config, enedis_mock):
    proxy = make_proxy(make_config(ENEDIS_MAX_CALLS_PER_SECOND="1"), sleep=lambda seconds: None)
    token = tokens_for(proxy, PRM1)["access_token"]
    enedis_answers(enedis_mock)
    for _ in range(BUDGET_WAIT):  # the token and ten data calls fill the next eleven seconds
        assert fetch(proxy, token).status_int == 200
    response = fetch(proxy, token)
    assert_json_error(response, 429, "too_many_requests")
    assert response.headers["Retry-After"] == str(BUDGET_WAIT)
    assert len(enedis_mock.calls) == 1 + BUDGET_WAIT


def test_enedis_429_is_passed_on_with_retry_after_from_next_access_time(proxy, device_token, enedis_mock, clock):
    clock.now = 1784350680.0  # 2026-07-18 04:58:00 UTC
    throttled = {
        "error": {
            "code": "900804",
            "message": "Message throttled out",
            "nextAccessTime": "2026-Jul-18 05:00:00+0000 UTC",
        }
    }
    enedis_answers(enedis_mock, status=429, body=json.dumps(throttled))
    response = fetch(proxy, tokens_for(proxy, PRM1)["access_token"])
    assert response.status_int == 429 and response.json == throttled
    assert response.headers["Retry-After"] == "120"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "failure, status, error",
    [
        (requests.ConnectTimeout("connect"), 504, "upstream_timeout"),
        (requests.ReadTimeout("read"), 504, "upstream_timeout"),
        (requests.ConnectionError("refused"), 502, "upstream_unreachable"),
    ],
)
def test_enedis_slow_or_down_is_never_a_404(proxy, device_token, enedis_mock, failure, status, error):
    enedis_answers(enedis_mock, body=failure)
    assert_json_error(fetch(proxy, device_token), status, error)


def test_token_endpoint_down_is_502(proxy, device_token, enedis_mock):
    enedis_mock.add(responses.POST, TOKEN_URL, body=requests.ConnectionError("refused"))
    assert_json_error(fetch(proxy, device_token), 502, "upstream_unreachable")


@pytest.mark.parametrize("broken", ["get", "incr"])
def test_store_down_is_503(proxy, device_token, enedis_mock, sqlite_store, broken):
    enedis_answers(enedis_mock)

    def down(*args, **kwargs):
        raise StoreUnavailable("down")

    setattr(sqlite_store, broken, down)
    assert_json_error(fetch(proxy, device_token), 503, "temporarily_unavailable")
    assert len(enedis_mock.calls) == 0


def test_without_an_enedis_client_the_route_is_502(app, enedis_mock):
    token = app.app.flow.tokens.mint([PRM1], "test-client")["access_token"]
    assert_json_error(fetch(app, token), 502, "upstream_unreachable")


# --- many devices at once


def test_fifty_concurrent_requests_fetch_one_enedis_token(make_proxy, make_config, enedis_mock):
    proxy = make_proxy(
        make_config(ENEDIS_MAX_CALLS_PER_SECOND="100", THREADS="100", DATA_CALLS_PER_MINUTE="50"), sleep=time.sleep
    )
    token = tokens_for(proxy, PRM1)["access_token"]

    def slow_token(request):
        time.sleep(0.3)  # long enough for every request to need it at once
        return 200, {}, json.dumps({"access_token": "enedis-token", "expires_in": "12600"})

    enedis_mock.add_callback(responses.POST, TOKEN_URL, callback=slow_token)
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, body=V5_LOAD_CURVE, content_type="application/json")
    statuses = at_once([lambda: fetch(proxy, token).status_int] * 50)
    assert statuses == [200] * 50
    assert len([c for c in enedis_mock.calls if c.request.url == TOKEN_URL]) == 1
    assert len(enedis_mock.calls) == 51


# --- through a real waitress server: it decodes PATH_INFO, REQUEST_URI stays raw


@contextmanager
def served(wsgi):
    server = waitress.create_server(wsgi, host="127.0.0.1", port=0, threads=4, clear_untrusted_proxy_headers=False)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        server.close()
        thread.join(5)


def raw_get(port, target, token):
    """Send the request target byte for byte, as no HTTP client library would."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Connection: close\r\n\r\n".encode("latin-1")
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


WAITRESS_ATTACKS = {
    **PATH_ATTACKS,
    **RAW_ONLY_ATTACKS,
    "leading slashes": f"//data/proxy/{LOAD_CURVE}",
    "absolute form": f"http://evil.example/data/proxy/{LOAD_CURVE}",
}


def test_path_attacks_through_waitress_are_404_without_calling_enedis(proxy, device_token, enedis_mock):
    enedis_answers(enedis_mock)
    query = f"?usage_point_id={PRM1}&start={WEEK['start']}&end={WEEK['end']}"
    with served(proxy.app) as port:
        results = {name: raw_get(port, target + query, device_token) for name, target in WAITRESS_ATTACKS.items()}
        assert len(enedis_mock.calls) == 0
        control = raw_get(port, f"/data/proxy/{LOAD_CURVE}{query}", device_token)
    for name, (status, body) in results.items():
        assert (status, json.loads(body)["error"]) == (404, "not_found"), name
    assert control == (200, V5_LOAD_CURVE)  # the same server does answer the genuine path


# --- what operators see


def test_data_calls_and_enedis_calls_are_counted(make_config, sqlite_store, clock, enedis_mock):
    from test_metrics import scrape

    from deviceflow.metrics import Metrics
    from deviceflow.web import make_app

    config, metrics = make_config(METRICS="1"), Metrics(sqlite_store, clock)
    enedis = EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance, metrics=metrics)
    app = TestApp(make_app(config, sqlite_store, upstream=enedis, clock=clock, metrics=metrics))
    token = app.app.flow.tokens.mint([PRM1], "test-client")["access_token"]
    enedis_mock.add(responses.POST, TOKEN_URL, json={"access_token": "enedis-token", "expires_in": "12600"})
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, status=401, json={"code": "900901"})
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, body=V5_LOAD_CURVE, content_type="application/json")

    assert fetch(app, token).status_int == 200
    assert fetch(app, token, usage_point=PRM2).status_int == 403
    samples = scrape(app)
    assert samples[("deviceflow_data_calls_total", ("legacy", "200"))] == 1
    assert samples[("deviceflow_data_calls_total", ("none", "403"))] == 1
    assert samples[("deviceflow_enedis_calls_total", ("token", "200"))] == 2  # the first one refused once
    assert samples[("deviceflow_enedis_calls_total", ("data", "401"))] == 1
    assert samples[("deviceflow_enedis_calls_total", ("data", "200"))] == 1
