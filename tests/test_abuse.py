"""A device's credentials turned against the server or the other devices: each
test is the request sequence an attacker sends, and asserts it fails with
nothing minted and no call to Enedis where that applies. Enedis is `responses`
(any call not registered fails as unreachable)."""

import logging
import math
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from helpers import PRM1, PRM2, consent, get_code, poll, refresh, tokens_for

from deviceflow import cli
from deviceflow.enedis import BUDGET_WAIT, EnedisClient
from deviceflow.errors import UpstreamBusy

TOKEN_URL = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
UPSTREAM_TOKEN_URL = "https://gw.prd.api.enedis.fr/v1/oauth2/token"
DATA = "https://gw.ext.prod.api.enedis.fr"
LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"
CONTRACTS = "customers_upc/v5/usage_points/contracts"
NEW_LOAD_CURVE = "mesure_synchrone_auto/v2/courbe_de_charge_consommation"
WEEK = {"start": "2026-09-22", "end": "2026-09-29"}
V5_LOAD_CURVE = (Path(__file__).parent / "fixtures" / "enedis-2026" / "v5_consumption_load_curve.json").read_bytes()


@pytest.fixture
def make_config(make_config):
    """The v1-style consent of helpers.consent, and v5 as is, unless a test says otherwise."""
    return lambda **env: make_config(**{"ENEDIS_AUTHORIZE_VERSION": "v1", "ENEDIS_API_MODE": "legacy", **env})


def enedis_answers(mock, *paths):
    mock.add(responses.POST, TOKEN_URL, json={"access_token": "enedis-token", "expires_in": "12600"})
    for path in paths or (LOAD_CURVE,):
        mock.add(responses.GET, f"{DATA}/{path}", body=V5_LOAD_CURVE, content_type="application/json")


def data_calls(mock) -> int:
    return len(
        [call for call in mock.calls if call.request.url.startswith(DATA + "/") and call.request.url != TOKEN_URL]
    )


def fetch(app, token, path=LOAD_CURVE, usage_point=PRM1, **query):
    return app.get(
        f"/data/proxy/{path}",
        {"usage_point_id": usage_point, **WEEK, **query},
        headers={"Authorization": f"Bearer {token}"},
        expect_errors=True,
    )


def minted(store) -> int:
    return store.count("access") + store.count("refresh")


# --- finding 5: only usage_point_id, start and end reach a v5 API


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_a_device_cannot_smuggle_parameters_to_a_v5_api(make_proxy, enedis_mock, mode):
    """Issue 14, finding 5: in legacy mode and the auto fallback, every query
    parameter the device sent went on to Enedis, with the proxy's own token."""
    proxy = make_proxy(ENEDIS_API_MODE=mode)
    token = tokens_for(proxy)["access_token"]
    enedis_answers(enedis_mock)
    enedis_mock.add(responses.GET, f"{DATA}/{NEW_LOAD_CURVE}", body=requests.ConnectionError("down"))  # auto: to v5
    answer = fetch(
        proxy, token, usage_point_ids=PRM2, client_id="someone-else", access_token="x", callback="https://evil.example/"
    )
    assert answer.status_int == 200 and answer.headers["X-Enedis-Proxy-Source"] == "legacy"
    sent = [c.request for c in enedis_mock.calls if c.request.url.startswith(f"{DATA}/{LOAD_CURVE}")]
    assert len(sent) == 1
    assert parse_qs(urlsplit(sent[0].url).query) == {
        "usage_point_id": [PRM1],
        "start": [WEEK["start"]],
        "end": [WEEK["end"]],
    }


# --- finding 9: /device/proxy only where there is an upstream token to refresh


def test_device_proxy_lends_nothing_outside_flow_device(make_web, make_config, sqlite_store, enedis_mock):
    """Issue 14, finding 9: in client_credentials mode /device/proxy still sent
    any refresh_token to Enedis's token endpoint with the proxy's secret."""
    enedis_mock.add(responses.POST, UPSTREAM_TOKEN_URL, json={"access_token": "a", "refresh_token": "r"})
    app = make_web(make_config())
    answer = app.post(
        "/device/proxy",
        {"grant_type": "refresh_token", "client_id": "test-client", "refresh_token": "made-up"},
        expect_errors=True,
    )
    assert (answer.status_int, answer.json["error"]) == (404, "not_found")
    assert answer.content_type == "application/json"
    assert len(enedis_mock.calls) == 0 and minted(sqlite_store) == 0


# --- finding 9: a refresh token works for the client it was issued to


def test_a_refresh_token_is_refused_to_another_client_id(make_web, make_config, sqlite_store):
    """Issue 14, finding 9: a refresh token presented with another allowed client id was rotated."""
    app = make_web(make_config())
    tokens = tokens_for(app)  # issued to test-client
    before = minted(sqlite_store)
    stolen = refresh(app, tokens["refresh_token"], client_id="domoticz")
    assert (stolen.status_int, stolen.json["error"]) == (400, "invalid_grant")
    assert minted(sqlite_store) == before
    assert refresh(app, tokens["refresh_token"]).status_int == 200  # the device itself goes on


def test_a_chain_issued_to_an_external_client_id_is_refreshed_by_it(make_web, make_config):
    """EXTERNAL_CLIENT_ID: a device that linked as `domoticz` refreshes as `domoticz`, never as CLIENT_ID."""
    app = make_web(make_config())
    code = get_code(app, client_id="domoticz")
    consent(app, code["user_code"])
    tokens = poll(app, code["device_code"], client_id="domoticz").json
    assert refresh(app, tokens["refresh_token"], client_id="test-client").json["error"] == "invalid_grant"
    renewed = refresh(app, tokens["refresh_token"], client_id="domoticz")
    assert renewed.status_int == 200
    assert refresh(app, renewed.json["refresh_token"], client_id="domoticz").status_int == 200


@pytest.mark.parametrize("client_id", ["test-client", "domoticz"])
def test_a_token_imported_from_the_php_server_binds_to_the_client_that_first_refreshes_it(
    make_web, make_config, client_id
):
    """The PHP server kept no client id with its refresh tokens, and a migrated
    DomoticzLinky sends whichever its plugin.py holds (CLIENT_ID, or one listed in
    EXTERNAL_CLIENT_ID): either is accepted once; the rotated token keeps that one."""
    app = make_web(make_config())
    flow = app.app.flow
    assert flow.tokens.import_refresh_token("php-refresh-token", [PRM1], flow.clock() + 86400)
    other = "domoticz" if client_id == "test-client" else "test-client"
    assert refresh(app, "php-refresh-token", client_id="stranger").json["error"] == "invalid_client"
    renewed = refresh(app, "php-refresh-token", client_id=client_id)
    assert renewed.status_int == 200
    assert refresh(app, renewed.json["refresh_token"], client_id=other).json["error"] == "invalid_grant"
    assert refresh(app, renewed.json["refresh_token"], client_id=client_id).status_int == 200


# --- finding 9: DATA_CALLS_PER_MINUTE per access token


def test_a_stolen_access_token_cannot_spend_the_outbound_budget(make_proxy, enedis_mock, sqlite_store, clock, caplog):
    """Issue 14, finding 9: one access token could call /data/proxy as fast as the outbound budget allowed,
    starving every other device. Now 30 calls within any 60 s (DATA_CALLS_PER_MINUTE), then 429."""
    proxy = make_proxy()
    stolen = tokens_for(proxy)["access_token"]
    other = tokens_for(proxy, PRM2)["access_token"]
    enedis_answers(enedis_mock)
    first_free = clock() + 60  # the first call's place (the outbound budget spreads them over a few seconds)
    assert [fetch(proxy, stolen).status_int for _ in range(30)] == [200] * 30
    made = data_calls(enedis_mock)
    with caplog.at_level(logging.WARNING, logger="deviceflow.limits"):
        refused = [fetch(proxy, stolen) for _ in range(100)]
    assert {(r.status_int, r.json["error"], r.headers["Retry-After"]) for r in refused} == {
        (429, "too_many_requests", str(math.ceil(first_free - clock())))
    }
    assert data_calls(enedis_mock) == made  # no Enedis call past the limit
    warnings = [r for r in caplog.records if r.name == "deviceflow.limits"]
    assert len(warnings) == 1 and "DATA_CALLS_PER_MINUTE" in warnings[0].getMessage()
    assert stolen not in caplog.text
    assert fetch(proxy, other, usage_point=PRM2).status_int == 200  # the others are not starved
    clock.now = first_free - 1  # within ANY 60 s, not per minute of the clock
    assert fetch(proxy, stolen).headers["Retry-After"] == "1"
    clock.now = first_free
    assert fetch(proxy, stolen).status_int == 200
    # Counted by digest: the clear token is nowhere in the store.
    rows = sqlite3.connect(sqlite_store.path).execute("SELECT kind, key, value FROM records").fetchall()
    assert not any(stolen in field for row in rows for field in row)


def test_the_data_call_limit_slides_and_is_shared_by_the_instances(make_proxy, enedis_mock, clock):
    one, two = make_proxy(DATA_CALLS_PER_MINUTE="10"), make_proxy(DATA_CALLS_PER_MINUTE="10")
    token = tokens_for(one)["access_token"]
    enedis_answers(enedis_mock)
    assert [fetch(one, token).status_int for _ in range(5)] == [200] * 5
    clock.advance(50)
    assert [fetch(two, token).status_int for _ in range(5)] == [200] * 5
    assert fetch(one, token).status_int == fetch(two, token).status_int == 429
    clock.advance(10.5)  # the first five are more than 60 s old, the next five are not
    assert [fetch(two, token).status_int for _ in range(6)] == [200] * 5 + [429]


# --- Enedis's hourly quota per API


def test_the_hourly_quota_of_an_enedis_api_is_never_exceeded(make_proxy, enedis_mock, clock, caplog):
    """Past ENEDIS_MAX_CALLS_PER_HOUR calls to one Enedis API within the hour,
    whoever asks: 429 with Retry-After to the first minute with room, and no
    call to Enedis (which would throttle every device for the rest of its hour)."""
    proxy = make_proxy(ENEDIS_MAX_CALLS_PER_HOUR="5")
    first, second = tokens_for(proxy)["access_token"], tokens_for(proxy)["access_token"]
    enedis_answers(enedis_mock, LOAD_CURVE, CONTRACTS)
    start = clock()
    assert [fetch(proxy, first).status_int for _ in range(3)] == [200] * 3
    clock.advance(20 * 60)
    assert [fetch(proxy, second).status_int for _ in range(2)] == [200] * 2
    made = data_calls(enedis_mock)
    with caplog.at_level(logging.WARNING, logger="deviceflow.limits"):
        refused = [fetch(proxy, token) for token in (first, second) * 5]
    # The first three calls leave the count at the start of the 61st minute after theirs.
    free_at = (int(start // 60) + 61) * 60
    assert {(r.status_int, r.json["error"], int(r.headers["Retry-After"])) for r in refused} == {
        (429, "too_many_requests", round(free_at - clock()))
    }
    assert data_calls(enedis_mock) == made
    warnings = [r.getMessage() for r in caplog.records if r.name == "deviceflow.limits"]
    assert len(warnings) == 1 and "metering_data_clc/v5" in warnings[0]
    assert fetch(proxy, first, CONTRACTS).status_int == 200  # another API has its own quota
    clock.now = free_at - 1
    assert fetch(proxy, first).status_int == 429
    clock.now = free_at
    assert [fetch(proxy, first).status_int for _ in range(4)] == [200] * 3 + [429]


def test_the_quota_holds_one_thousand_calls_within_any_sixty_minutes(sqlite_store, clock):
    """The figure of Enedis's terms (ENEDIS_MAX_CALLS_PER_HOUR's default), counted per minute."""
    from deviceflow import limits
    from deviceflow.config import Config

    per_hour = Config().enedis_max_calls_per_hour
    assert per_hour == 1000
    for _ in range(per_hour):  # 1,000 calls over 50 minutes
        assert limits.take_quota(sqlite_store, "metering_data_dc/v5", per_hour, clock())[1] == 0
        clock.advance(3)
    assert limits.take_quota(sqlite_store, "metering_data_dc/v5", per_hour, clock())[1] > 0
    assert limits.take_quota(sqlite_store, "metering_data_dp/v5", per_hour, clock())[1] == 0
    clock.advance(11 * 60)  # 61 minutes after the first: its minute is out, and only it
    assert limits.take_quota(sqlite_store, "metering_data_dc/v5", per_hour, clock())[1] == 0


def test_a_call_refused_an_outbound_slot_gives_its_quota_back(make_config, sqlite_store, clock, enedis_mock):
    """Otherwise calls that never left would keep an API's quota spent for an hour."""
    config = make_config(ENEDIS_MAX_CALLS_PER_HOUR="1", ENEDIS_MAX_CALLS_PER_SECOND="1")
    client = EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance)
    enedis_answers(enedis_mock)
    client.access_token()  # the token call takes this second's slot
    for ahead in range(1, BUDGET_WAIT + 1):  # others took the next ten seconds' slots
        sqlite_store.incr("budget", str(int(clock()) + ahead), 30)
    with pytest.raises(UpstreamBusy, match="budget"):
        client.fetch_v5(LOAD_CURVE, {"usage_point_id": PRM1, **WEEK})
    assert data_calls(enedis_mock) == 0
    clock.advance(60)
    assert client.fetch_v5(LOAD_CURVE, {"usage_point_id": PRM1, **WEEK}).status == 200


@pytest.mark.parametrize(
    "path, api",
    [
        ("metering_data_clc/v5/consumption_load_curve", "metering_data_clc/v5"),
        ("customers_upc/v5/usage_points/contracts", "customers_upc/v5"),
        ("mesure_synchrone_auto/v2/consommation_quotidienne", "mesure_synchrone_auto/v2"),
        ("mesure_synchrone_auto/v2/courbe_de_charge_consommation", "mesure_synchrone_auto/v2"),
        ("situation_contrat_auto/v1/99999999999991", "situation_contrat_auto/v1"),
        ("subscribed_services/v1", "subscribed_services/v1"),
    ],
)
def test_an_api_is_what_datahub_subscribes_an_application_to(path, api):
    from deviceflow import limits

    assert limits.quota_api(path) == api


# --- blind spots: the polling budget, and access tokens of a revoked chain


def test_slow_down_follows_a_configured_polling_budget(make_web, make_config):
    """LIMIT_REQUESTS_PER_MINUTE=3: the interval is 20 s and the 4th poll within a minute is slow_down."""
    app = make_web(make_config(LIMIT_REQUESTS_PER_MINUTE="3"))
    code = get_code(app)
    assert code["interval"] == 20
    answers = [poll(app, code["device_code"]).json for _ in range(4)]
    assert [a["error"] for a in answers] == ["authorization_pending"] * 3 + ["slow_down"]
    assert {a["interval"] for a in answers} == {20}


def test_an_access_token_dies_with_its_chain_replayed(make_proxy, enedis_mock, sqlite_store):
    """A retired refresh token presented again revokes the chain: its access tokens stop at once."""
    proxy = make_proxy()
    enedis_answers(enedis_mock)
    first = tokens_for(proxy)
    second = refresh(proxy, first["refresh_token"]).json
    third = refresh(proxy, second["refresh_token"]).json  # first use of the second: the first is retired
    assert fetch(proxy, third["access_token"]).status_int == 200
    made = data_calls(enedis_mock)
    assert refresh(proxy, first["refresh_token"]).json["error"] == "invalid_grant"  # the replay
    for tokens in (first, second, third):
        answer = fetch(proxy, tokens["access_token"])
        assert (answer.status_int, answer.json["error"]) == (401, "invalid_token")
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert data_calls(enedis_mock) == made


def test_an_access_token_dies_with_its_chain_revoked_by_the_operator(
    make_proxy, enedis_mock, sqlite_store, monkeypatch, tmp_path, capsys
):
    proxy = make_proxy()
    enedis_answers(enedis_mock)
    tokens = tokens_for(proxy)
    assert fetch(proxy, tokens["access_token"]).status_int == 200
    made = data_calls(enedis_mock)
    monkeypatch.chdir(tmp_path)
    for name, value in {"CLIENT_ID": "test-client", "DB_TYPE": "sqlite", "SQLITE_PATH": sqlite_store.path}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["revoke", "--usage-point", PRM1]) == 0
    answer = fetch(proxy, tokens["access_token"])
    assert (answer.status_int, answer.json["error"]) == (401, "invalid_token")
    assert data_calls(enedis_mock) == made


def test_the_limits_are_counted_alike_in_both_stores(any_store, clock):
    from deviceflow import limits

    assert [limits.data_call_wait(any_store, "digest", 2, clock()) for _ in range(3)] == [0, 0, 60]
    clock.advance(60)
    assert limits.data_call_wait(any_store, "digest", 2, clock()) == 0
    assert limits.take_quota(any_store, "metering_data_dc/v5", 1, clock())[1] == 0
    assert limits.take_quota(any_store, "metering_data_dc/v5", 1, clock())[1] > 0


@pytest.mark.parametrize(
    "name, value",
    [
        ("DATA_CALLS_PER_MINUTE", "0"),
        ("DATA_CALLS_PER_MINUTE", "601"),
        ("DATA_CALLS_PER_MINUTE", "lots"),
        ("ENEDIS_MAX_CALLS_PER_HOUR", "0"),
        ("ENEDIS_MAX_CALLS_PER_HOUR", "1e3"),
    ],
)
def test_the_limits_settings_refuse_what_would_not_limit(name, value):
    from deviceflow.config import ConfigError, load

    defaults = load({"CLIENT_ID": "abc"}, dotenv_path=None)
    assert (defaults.data_calls_per_minute, defaults.enedis_max_calls_per_hour) == (30, 1000)
    with pytest.raises(ConfigError, match=name):
        load({"CLIENT_ID": "abc", name: value}, dotenv_path=None)
