"""The Enedis client: the shared client_credentials token, the outbound budget,
and what a v5 data call answers. Enedis is `responses`; time is the test clock."""

import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from helpers import at_once

from deviceflow.enedis import BUDGET_WAIT, V5_PATHS, EnedisClient, data_path, parse_next_access_time
from deviceflow.errors import UpstreamBadAnswer, UpstreamBusy, UpstreamTimeout, UpstreamUnreachable

TOKEN_URL = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
DATA = "https://gw.ext.prod.api.enedis.fr"
LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"
LOAD_CURVE_URL = f"{DATA}/{LOAD_CURVE}"
PRM = "11111111111111"
QUERY = {"usage_point_id": PRM, "start": "2026-09-29", "end": "2026-10-01"}
METER_READING = {"meter_reading": {"usage_point_id": PRM, "interval_reading": [{"value": "4078"}]}}


@pytest.fixture
def make_config(make_config):
    """v5 forwarded as is (ENEDIS_API_MODE=legacy) unless a test says otherwise:
    the Data Connect 2026 modes have their own tests (test_enedis_2026.py)."""
    return lambda **env: make_config(**{"ENEDIS_API_MODE": "legacy", **env})


@pytest.fixture
def make_client(config, sqlite_store, clock):
    def make(config=config, store=sqlite_store, sleep=clock.advance):
        return EnedisClient(config, store, clock=clock, sleep=sleep)

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def enedis_token(mock, token="enedis-token-1", expires_in="12600", **kwargs):
    mock.add(
        responses.POST,
        TOKEN_URL,
        json={"access_token": token, "token_type": "Bearer", "expires_in": expires_in},
        **kwargs,
    )


def calls_to(mock, url):
    return [call for call in mock.calls if call.request.url.split("?")[0] == url]


# --- the token


def test_one_token_serves_many_data_calls(enedis_mock, client):
    enedis_token(enedis_mock)
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, json=METER_READING)
    for _ in range(5):
        assert client.fetch_v5(LOAD_CURVE, QUERY).status == 200
    assert len(calls_to(enedis_mock, TOKEN_URL)) == 1
    assert len(calls_to(enedis_mock, LOAD_CURVE_URL)) == 5


def test_token_request_is_client_credentials_with_the_proxys_secret(enedis_mock, client):
    enedis_token(enedis_mock)
    client.access_token()
    request = enedis_mock.calls[0].request
    assert parse_qs(request.body) == {
        "grant_type": ["client_credentials"],
        "client_id": ["test-client"],
        "client_secret": ["s3cr3t-value"],
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("expires_in", ["12600", 12600, "12600.0"])
def test_token_is_renewed_shortly_before_it_expires(enedis_mock, client, clock, expires_in):
    enedis_token(enedis_mock, "first", expires_in)
    enedis_token(enedis_mock, "second", expires_in)
    assert client.access_token() == "first"
    clock.advance(12600 - 301)
    assert client.access_token() == "first"
    clock.advance(2)  # within the last five minutes: renewed before Enedis would refuse it
    assert client.access_token() == "second"
    assert len(enedis_mock.calls) == 2


def test_short_lived_token_is_renewed_in_its_last_tenth(enedis_mock, client, clock):
    enedis_token(enedis_mock, "first", "60")
    enedis_token(enedis_mock, "second", "60")
    assert client.access_token() == "first"
    clock.advance(53)
    assert client.access_token() == "first"
    clock.advance(2)
    assert client.access_token() == "second"


def test_token_is_shared_by_every_instance_on_the_store(enedis_mock, make_client):
    enedis_token(enedis_mock)
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, json=METER_READING)
    first, second = make_client(), make_client()
    first.fetch_v5(LOAD_CURVE, QUERY)
    second.fetch_v5(LOAD_CURVE, QUERY)
    assert len(calls_to(enedis_mock, TOKEN_URL)) == 1
    assert [c.request.headers["Authorization"] for c in calls_to(enedis_mock, LOAD_CURVE_URL)] == [
        "Bearer enedis-token-1"
    ] * 2


def test_a_401_renews_the_token_once_and_retries_once(enedis_mock, client):
    enedis_token(enedis_mock, "refused")
    enedis_token(enedis_mock, "fresh")
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, status=401, json={"error": "invalid_token"})
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, json=METER_READING)
    answer = client.fetch_v5(LOAD_CURVE, QUERY)
    assert answer.status == 200 and json.loads(answer.body) == METER_READING
    assert [c.request.url.split("?")[0] for c in enedis_mock.calls] == [
        TOKEN_URL,
        LOAD_CURVE_URL,
        TOKEN_URL,
        LOAD_CURVE_URL,
    ]
    assert calls_to(enedis_mock, LOAD_CURVE_URL)[1].request.headers["Authorization"] == "Bearer fresh"
    assert client.access_token() == "fresh"


def test_a_second_401_is_the_proxys_credentials_so_502_not_a_device_401(enedis_mock, client):
    enedis_token(enedis_mock, "refused")
    enedis_token(enedis_mock, "refused too")
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, status=401, json={"error": "invalid_token"})
    with pytest.raises(UpstreamBadAnswer) as caught:
        client.fetch_v5(LOAD_CURVE, QUERY)
    assert caught.value.status == 502
    assert len(calls_to(enedis_mock, TOKEN_URL)) == 2 and len(calls_to(enedis_mock, LOAD_CURVE_URL)) == 2


def test_after_a_401_an_instance_takes_the_token_another_one_renewed(enedis_mock, make_client):
    enedis_token(enedis_mock, "old")
    enedis_token(enedis_mock, "new")
    first, second = make_client(), make_client()
    assert first.access_token() == "old"
    assert first.access_token(stale="old") == "new"
    assert second.access_token(stale="old") == "new"  # no third fetch
    assert len(enedis_mock.calls) == 2


@pytest.mark.parametrize("record", [{"access_token": "clear-before-encryption"}, {"encrypted": "not base64!"}, {}])
def test_a_cached_token_that_does_not_open_is_no_token(enedis_mock, client, record):
    """A clear record from before encryption, an altered one: a new token is fetched, no error."""
    client.store.put("enedis", "token", record, 3600)
    enedis_token(enedis_mock)
    assert client.access_token() == "enedis-token-1"
    assert len(enedis_mock.calls) == 1


@pytest.mark.parametrize(
    "status, error", [(401, UpstreamBadAnswer), (400, UpstreamBadAnswer), (500, UpstreamBadAnswer), (429, UpstreamBusy)]
)
def test_token_endpoint_failures_never_show_the_secret(enedis_mock, client, status, error):
    enedis_mock.add(responses.POST, TOKEN_URL, status=status, json={"error": "invalid_client"})
    with pytest.raises(error) as caught:
        client.access_token()
    assert "s3cr3t" not in json.dumps(caught.value.body())
    assert client.store.get("enedis", "token") is None


@pytest.mark.parametrize("answer", [{"token_type": "Bearer"}, {"access_token": ""}, ["x"]])
def test_token_answer_without_a_token_is_502(enedis_mock, client, answer):
    enedis_mock.add(responses.POST, TOKEN_URL, json=answer)
    with pytest.raises(UpstreamBadAnswer):
        client.access_token()


def test_fifty_threads_without_a_token_cause_one_token_call(enedis_mock, config, sqlite_store, clock):
    """Two instances (processes) on one store, 25 threads each: one fetch in all."""

    def slow_token(request):
        time.sleep(0.2)
        return 200, {}, json.dumps({"access_token": "shared", "expires_in": "12600"})

    enedis_mock.add_callback(responses.POST, TOKEN_URL, callback=slow_token)
    instances = [EnedisClient(config, sqlite_store, clock=clock, sleep=time.sleep) for _ in range(2)]
    tokens = at_once([instances[i % 2].access_token for i in range(50)])
    assert tokens == ["shared"] * 50
    assert len(calls_to(enedis_mock, TOKEN_URL)) == 1


# --- the outbound budget


def test_budget_gives_each_call_the_next_free_second_then_429(make_client, make_config):
    sleeps = []
    client = make_client(config=make_config(ENEDIS_MAX_CALLS_PER_SECOND="2"), sleep=sleeps.append)
    for _ in range(2 * (BUDGET_WAIT + 1)):  # this second and the next ten, two calls each
        client.wait_for_slot()
    assert sleeps == [second for second in range(1, BUDGET_WAIT + 1) for _ in range(2)]
    with pytest.raises(UpstreamBusy) as caught:
        client.wait_for_slot()
    assert caught.value.status == 429 and caught.value.retry_after == BUDGET_WAIT


def test_budget_is_shared_by_every_instance_on_the_store(make_client, make_config):
    config = make_config(ENEDIS_MAX_CALLS_PER_SECOND="1")
    first, second = make_client(config, sleep=lambda s: None), make_client(config, sleep=lambda s: None)
    for _ in range(BUDGET_WAIT + 1):
        first.wait_for_slot()
    with pytest.raises(UpstreamBusy):
        second.wait_for_slot()


def test_budget_under_one_call_a_second(make_client, make_config):
    sleeps = []
    client = make_client(config=make_config(ENEDIS_MAX_CALLS_PER_SECOND="0.5"), sleep=sleeps.append)
    for _ in range(6):
        client.wait_for_slot()
    assert sleeps == [2, 4, 6, 8, 10]
    with pytest.raises(UpstreamBusy):
        client.wait_for_slot()


def test_budget_frees_up_as_time_passes(make_client, make_config, clock):
    client = make_client(config=make_config(ENEDIS_MAX_CALLS_PER_SECOND="1"), sleep=lambda s: None)
    for _ in range(BUDGET_WAIT + 1):
        client.wait_for_slot()
    clock.advance(3)
    for _ in range(3):
        client.wait_for_slot()
    with pytest.raises(UpstreamBusy):
        client.wait_for_slot()


def test_budget_waits_and_refusals_are_counted(make_client, make_config):
    from deviceflow.metrics import Metrics

    metrics = Metrics()
    client = make_client(config=make_config(ENEDIS_MAX_CALLS_PER_SECOND="1"), sleep=lambda s: None)
    client.metrics = metrics
    for _ in range(BUDGET_WAIT + 1):
        client.wait_for_slot()
    with pytest.raises(UpstreamBusy):
        client.wait_for_slot()
    text = metrics.exposition()[0].decode()
    assert f'deviceflow_enedis_budget_waits_total{{outcome="served"}} {BUDGET_WAIT}.0' in text
    assert 'deviceflow_enedis_budget_waits_total{outcome="refused"} 1.0' in text


def test_token_and_data_calls_both_count_against_the_budget(enedis_mock, make_client, make_config):
    enedis_token(enedis_mock)
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, json=METER_READING)
    client = make_client(config=make_config(ENEDIS_MAX_CALLS_PER_SECOND="1"), sleep=lambda s: None)
    for _ in range(BUDGET_WAIT):  # 1 token call + 10 data calls fill 11 seconds
        client.fetch_v5(LOAD_CURVE, QUERY)
    with pytest.raises(UpstreamBusy):
        client.fetch_v5(LOAD_CURVE, QUERY)
    assert len(enedis_mock.calls) == 1 + BUDGET_WAIT


def test_data_calls_leave_threads_free_for_polls(enedis_mock, make_client, make_config):
    """THREADS=4 keeps two threads from data calls: a third call waiting on Enedis is 429 at once."""
    inside, release = threading.Semaphore(0), threading.Event()

    def slow_enedis(request):
        inside.release()
        release.wait(10)
        return 200, {}, json.dumps(METER_READING)

    enedis_token(enedis_mock)
    enedis_mock.add_callback(responses.GET, LOAD_CURVE_URL, callback=slow_enedis)
    client = make_client(config=make_config(THREADS="4"))
    answers = []
    waiting = [
        threading.Thread(target=lambda: answers.append(client.fetch_v5(LOAD_CURVE, QUERY).status)) for _ in range(2)
    ]
    for thread in waiting:
        thread.start()
    assert inside.acquire(timeout=10) and inside.acquire(timeout=10)
    with pytest.raises(UpstreamBusy) as caught:
        client.fetch_v5(LOAD_CURVE, QUERY)
    assert caught.value.status == 429 and caught.value.retry_after == BUDGET_WAIT
    release.set()
    for thread in waiting:
        thread.join(10)
    assert answers == [200, 200]
    assert client.fetch_v5(LOAD_CURVE, QUERY).status == 200  # the places are given back


# --- data calls


def test_data_call_is_a_plain_authorized_get(enedis_mock, client):
    enedis_token(enedis_mock)
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, json=METER_READING)
    answer = client.fetch_v5(LOAD_CURVE, {"usage_point_id": PRM, "start": "2026-09-29", "end": "", "extra": "left out"})
    request = calls_to(enedis_mock, LOAD_CURVE_URL)[0].request
    assert request.method == "GET" and request.body is None
    assert "Content-Type" not in request.headers
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Authorization"] == "Bearer enedis-token-1"
    assert urlsplit(request.url).query == f"usage_point_id={PRM}&start=2026-09-29"
    assert (answer.status, answer.content_type, answer.source) == (200, "application/json", "legacy")


def test_enedis_errors_keep_their_status_and_json_body(enedis_mock, client):
    enedis_token(enedis_mock)
    body = {"error": "no_data_found", "error_description": "no measure"}
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, status=404, json=body)
    answer = client.fetch_v5(LOAD_CURVE, QUERY)
    assert answer.status == 404 and json.loads(answer.body) == body and answer.retry_after is None


def test_html_error_page_is_wrapped_in_json_with_its_status(enedis_mock, client):
    enedis_token(enedis_mock)
    enedis_mock.add(
        responses.GET, LOAD_CURVE_URL, status=500, body="<html><h1>Internal error</h1></html>", content_type="text/html"
    )
    answer = client.fetch_v5(LOAD_CURVE, QUERY)
    assert answer.status == 500 and answer.content_type == "application/json"
    assert json.loads(answer.body)["error"] == "upstream_error"
    assert "<html>" not in answer.body.decode()


@pytest.mark.parametrize("status, headers", [(200, {}), (302, {"Location": "https://evil.example/"})])
def test_success_that_is_not_json_or_a_redirect_is_502(enedis_mock, client, status, headers):
    enedis_token(enedis_mock)
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, status=status, body="<html>login</html>", headers=headers)
    with pytest.raises(UpstreamBadAnswer) as caught:
        client.fetch_v5(LOAD_CURVE, QUERY)
    assert caught.value.status == 502
    assert len(enedis_mock.calls) == 2  # the redirect was not followed


@pytest.mark.parametrize(
    "failure, error, status",
    [
        (requests.ConnectTimeout("connect"), UpstreamTimeout, 504),
        (requests.ReadTimeout("read"), UpstreamTimeout, 504),
        (requests.ConnectionError("refused"), UpstreamUnreachable, 502),
    ],
)
def test_enedis_down_or_slow(enedis_mock, client, failure, error, status):
    enedis_token(enedis_mock)
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, body=failure)
    with pytest.raises(error) as caught:
        client.fetch_v5(LOAD_CURVE, QUERY)
    assert caught.value.status == status
    counted = "timeout" if status == 504 else "unreachable"
    assert (
        f'deviceflow_enedis_calls_total{{api="data",status="{counted}"}} 1.0' in client.metrics.exposition()[0].decode()
    )


def test_enedis_429_gives_retry_after_from_next_access_time(enedis_mock, client, clock):
    enedis_token(enedis_mock)
    clock.now = parse_next_access_time('"nextAccessTime": "2026-Jul-18 04:58:30+0000 UTC"')
    throttled = {
        "error": {
            "code": "900804",
            "message": "Message throttled out",
            "description": "You have exceeded your quota",
            "nextAccessTime": "2026-Jul-18 05:00:00+0000 UTC",
        }
    }
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, status=429, json=throttled)
    answer = client.fetch_v5(LOAD_CURVE, QUERY)
    assert answer.status == 429 and answer.retry_after == 90
    assert json.loads(answer.body) == throttled


@pytest.mark.parametrize("headers, expected", [({"Retry-After": "7"}, 7), ({}, 60)])
def test_enedis_429_without_next_access_time(enedis_mock, client, headers, expected):
    enedis_token(enedis_mock)
    enedis_mock.add(responses.GET, LOAD_CURVE_URL, status=429, json={"error": "too_many_requests"}, headers=headers)
    assert client.fetch_v5(LOAD_CURVE, QUERY).retry_after == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"nextAccessTime": "2026-Jul-18 05:00:00+0000 UTC"}', "2026-07-18T05:00:00+00:00"),
        ('{"detail": "{\\"nextAccessTime\\":\\"2026-Sep-12 20:00:00+0000 UTC\\"}"}', "2026-09-12T20:00:00+00:00"),
        ('{"nextAccessTime": "2026-Jul-18 07:00:00+0200 UTC"}', "2026-07-18T05:00:00+00:00"),
        ('{"nextAccessTime": "2026-07-18T05:00:00Z"}', "2026-07-18T05:00:00+00:00"),
        ('{"nextAccessTime": "soon"}', None),
        ("<html>429</html>", None),
    ],
)
def test_next_access_time_formats(text, expected):
    from datetime import datetime

    moment = parse_next_access_time(text)
    assert moment == (datetime.fromisoformat(expected).timestamp() if expected else None)


# --- which paths exist


@pytest.mark.parametrize(
    "raw",
    [
        "/data/proxy/metering_data_clc/v5/consumption_load_curve",
        "/data/proxy/customers_upc/v5/usage_points/contracts",
    ],
)
def test_known_paths(raw):
    assert data_path(raw) == raw.removeprefix("/data/proxy/")


@pytest.mark.parametrize(
    "raw",
    [
        "/data/proxy/metering_data_clc/v5/../../oauth2/v3/token",
        "/data/proxy/metering_data_clc%2Fv5%2Fconsumption_load_curve",
        "/data/proxy/%2e%2e/oauth2/v3/token",
        "/data/proxy//evil.example/x",
        "/data/proxy/@evil.example/metering_data_clc/v5/consumption_load_curve",
        "/data/proxy/http://evil.example/x",
        "/data/proxy/\\\\evil.example\\x",
        "/data/proxy/metering_data_clc/v5/consumption_load_curve/",
        "/data/proxy/metering_data_clc/v4/consumption_load_curve",
        "http://evil.example/data/proxy/metering_data_clc/v5/consumption_load_curve",
        "//data/proxy/metering_data_clc/v5/consumption_load_curve",
    ],
)
def test_anything_but_a_known_path_is_unknown(raw):
    assert data_path(raw) is None


def test_the_allow_list_is_the_nine_v5_apis():
    assert len(V5_PATHS) == 9
    assert all(p.split("/")[0].startswith(("metering_data_", "customers_")) and "/v5/" in p for p in V5_PATHS)
