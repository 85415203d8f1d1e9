"""Secrets - the client secret, device codes, access and refresh tokens (the
proxy's, upstream's, the proxy's own Enedis token), authorization codes and
`autorisation_id`s - never appear in logs at any level, in pages or in error
descriptions. Whole flows run at DEBUG with every log record captured; then
every secret value is looked for in the log text and in every answer that is
not the one delivering it."""

import io
import logging
import secrets

import pytest
import requests
import responses
from helpers import PRM1, PRM2, confirm, get_code, poll, refresh, stopped_log
from test_e2e import consent_in_browser, device_post
from test_e2e_data_proxy import fetch as live_fetch
from webtest import TestApp

from deviceflow.enedis import EnedisClient
from deviceflow.web import make_app

SECRET = "s3cr3t-value"  # CLIENT_SECRET in conftest.py
TOKEN_V3 = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"
DATA_URL = f"https://gw.ext.prod.api.enedis.fr/{LOAD_CURVE}"
SUBSCRIBED = "https://gw.ext.prod.api.enedis.fr/subscribed_services/v1"
TOKEN_ENDPOINT = "https://oauth.example.org/token"
# Where a secret is handed to its owner: the only answers allowed to hold one.
DELIVERIES = ("/device/code", "/device/token", "/device/proxy")


def marked(name):
    """A secret value no other text can contain by chance."""
    return f"{name}-{secrets.token_hex(8)}"


class Recorder(TestApp):
    """A TestApp keeping every answer, to look for secrets in them afterwards."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.answers = []

    def do_request(self, req, status=None, expect_errors=None):
        response = super().do_request(req, status=status, expect_errors=expect_errors)
        self.answers.append((req.path, response))
        return response

    def exposed(self):
        """Headers of every answer; bodies of every answer but the successful deliveries."""
        parts = []
        for path, response in self.answers:
            parts.append(str(response.headerlist))
            if not (path in DELIVERIES and response.status_int == 200):
                parts.append(response.text)
        return "\n".join(parts)


@pytest.fixture
def captured():
    """Every log record at DEBUG, from every logger (root, deviceflow, waitress, bottle, urllib3)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    loggers = [root] + [logging.getLogger(name) for name in ("deviceflow", "waitress", "bottle", "urllib3", "requests")]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield buffer.getvalue
    root.removeHandler(handler)
    for logger, level in saved:
        logger.setLevel(level)


def recorder(config, store, upstream=None):
    return Recorder(
        make_app(config, store, upstream=upstream, clock=store.clock), extra_environ={"REMOTE_ADDR": "192.0.2.10"}
    )


def found_in(text, values):
    return sorted(value for value in values if value in text)


def test_client_credentials_flow_and_data_calls_at_debug(make_config, sqlite_store, clock, enedis_mock, captured):
    config = make_config(ENEDIS_API_MODE="legacy")  # v5 forwarded as is: the calls mocked here
    enedis_token = marked("enedis-token")
    enedis_mock.add(responses.POST, TOKEN_V3, json={"access_token": enedis_token, "expires_in": 3600})
    enedis_mock.add(responses.GET, DATA_URL, json={"meter_reading": {"usage_point_id": PRM1}})
    enedis_mock.add(responses.GET, DATA_URL, body="<html>busy</html>", status=503, content_type="text/html")
    enedis_mock.add(responses.GET, DATA_URL, body=requests.ReadTimeout())
    app = recorder(config, sqlite_store, EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance))
    authorization_code, lent = marked("enedis-code"), marked("device-secret")
    found = {SECRET, enedis_token, authorization_code, lent}

    code = get_code(app, client_secret=lent)
    found.add(code["device_code"])
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"
    query = confirm(app, code["user_code"])
    page = app.get(
        "/auth/redirect", {"state": query["state"], "code": authorization_code, "usage_point_id": f"{PRM1};{PRM2}"}
    )
    assert page.status_int == 200
    app.get(
        "/auth/redirect", {"state": query["state"], "code": authorization_code, "usage_point_id": PRM1}, status=400
    )  # the state again
    first = poll(app, code["device_code"]).json
    assert poll(app, code["device_code"]).json["error"] == "invalid_grant"

    def data(token, usage_point=PRM1):
        return app.get(
            f"/data/proxy/{LOAD_CURVE}",
            {"usage_point_id": usage_point, "start": "2026-09-01", "end": "2026-09-02"},
            headers={"Authorization": f"Bearer {token}"},
            expect_errors=True,
        )

    assert data(first["access_token"]).status_int == 200
    assert data(first["access_token"], "33333333333333").status_int == 403
    assert data(first["access_token"]).status_int == 503  # Enedis's HTML page, wrapped
    assert data(first["access_token"]).status_int == 504

    second = refresh(app, first["refresh_token"]).json
    third = refresh(app, second["refresh_token"]).json
    assert refresh(app, first["refresh_token"]).json["error"] == "invalid_grant"  # replayed: chain revoked
    assert data(third["access_token"]).status_int == 401
    assert refresh(app, third["refresh_token"], usage_points_id=PRM1).json["error"] == "invalid_grant"
    found.update(t[k] for t in (first, second, third) for k in ("access_token", "refresh_token"))

    log = captured()
    assert "revoked" in log and "GET /data/proxy/<path:path> 504" in log  # the capture did see the flow
    assert found_in(log, found) == [] and found_in(app.exposed(), found) == []


def test_v2_returns_with_an_autorisation_id_at_debug(make_config, sqlite_store, clock, enedis_mock, captured):
    config = make_config(ENEDIS_AUTHORIZE_VERSION="v2")
    app = recorder(config, sqlite_store, EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance))
    enedis_token = marked("enedis-token")
    enedis_mock.add(responses.POST, TOKEN_V3, json={"access_token": enedis_token, "expires_in": 3600})
    enedis_mock.add(
        responses.POST,
        SUBSCRIBED,
        json={"serviceSouscrit": [{"pointId": PRM1, "etatCode": "ACTIF", "dateDebut": "2027-01-15"}]},
    )  # redeemed: logged at INFO
    enedis_mock.add(
        responses.POST,
        SUBSCRIBED,
        json={"serviceSouscrit": [{"pointId": PRM1, "etatCode": "ACTIF", "dateDebut": "2020-01-01"}]},
    )  # an older share: refused, a WARNING
    enedis_mock.add(responses.POST, SUBSCRIBED, body=requests.ConnectionError("refused"))
    found = {SECRET, enedis_token}
    for expected in (200, 403, 502):
        autorisation_id = str(10**14 + secrets.randbelow(10**14))  # Enedis's ids are numbers
        code = get_code(app)
        query = confirm(app, code["user_code"])
        page = app.get(
            "/auth/redirect", {"state": query["state"], "autorisation_id": autorisation_id}, expect_errors=True
        )
        assert page.status_int == expected
        found |= {autorisation_id, code["device_code"]}
    log = captured()
    assert "redeemed" in log and "refused" in log and "upstream unreachable" in log
    assert found_in(log, found) == [] and found_in(app.exposed(), found) == []


def test_pass_through_flow_and_refresh_proxy_at_debug(make_config, sqlite_store, captured):
    config = make_config(FLOW="DEVICE", TOKEN_ENDPOINT=TOKEN_ENDPOINT, CLIENT_SECRET=None)
    app = recorder(config, sqlite_store)
    lent, authorization_code = marked("device-secret"), marked("upstream-code")
    upstream = {k: marked(f"upstream-{k}") for k in ("access", "refresh", "access2", "refresh2")}
    found = {lent, authorization_code, *upstream.values()}
    with responses.RequestsMock() as mock:
        mock.post(
            TOKEN_ENDPOINT,
            json={
                "access_token": upstream["access"],
                "refresh_token": upstream["refresh"],
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        )
        mock.post(
            TOKEN_ENDPOINT,
            json={"error": "invalid_grant", "error_description": f"code {authorization_code} is used"},
            status=400,
        )
        mock.post(TOKEN_ENDPOINT, json={"access_token": upstream["access2"], "refresh_token": upstream["refresh2"]})
        mock.post(TOKEN_ENDPOINT, body=requests.ConnectionError())

        code = get_code(app, client_secret=lent)
        found.add(code["device_code"])
        query = confirm(app, code["user_code"])
        assert app.get("/auth/redirect", {"state": query["state"], "code": authorization_code}).status_int == 200
        assert poll(app, code["device_code"]).json["access_token"] == upstream["access"]

        again = get_code(app, client_secret=lent)  # upstream refuses this one, quoting the code
        found.add(again["device_code"])
        query = confirm(app, again["user_code"])
        page = app.get("/auth/redirect", {"state": query["state"], "code": authorization_code}, expect_errors=True)
        assert page.status_int == 200  # a lent secret: the code is exchanged at the device's next poll
        assert poll(app, again["device_code"]).json["error"] == "access_denied"

        form = {
            "grant_type": "refresh_token",
            "client_id": "test-client",
            "refresh_token": upstream["refresh"],
            "client_secret": lent,
        }
        assert app.post("/device/proxy", form).json["refresh_token"] == upstream["refresh2"]
        assert app.post("/device/proxy", form, expect_errors=True).status_int == 502

    log = captured()
    assert "exchange refused by upstream" in log
    assert found_in(log, found) == [] and found_in(app.exposed(), found) == []


@pytest.mark.parametrize("mode", ["client_credentials", "pass-through"])
def test_a_live_demo_server_at_debug_logs_no_secret(live_server, mode):
    """The whole stack - waitress, Bottle, requests/urllib3 towards the simulated Enedis - at DEBUG."""
    secret = marked("demo-secret")
    passing = mode == "pass-through"
    mode_env = {"FLOW": "DEVICE", "PKCE": "1"} if passing else {}
    base = live_server(LOG_LEVEL="DEBUG", CLIENT_SECRET=secret, **mode_env)
    code = device_post(base, "/device/code").json()
    done = consent_in_browser(base, code["verification_uri_complete"])
    back = dict(part.split("=", 1) for part in requests.utils.urlparse(done.url).query.split("&"))
    tokens = device_post(
        base,
        "/device/token",
        grant_type="urn:ietf:params:oauth:grant-type:device_code",
        device_code=code["device_code"],
    ).json()
    if passing:
        renewed = device_post(base, "/device/proxy", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    else:
        assert live_fetch(base, tokens["access_token"]).status_code == 200
        renewed = device_post(base, "/device/token", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    found = {
        secret,
        back["code"],
        code["device_code"],
        tokens["access_token"],
        tokens["refresh_token"],
        renewed.json()["access_token"],
        renewed.json()["refresh_token"],
    }
    assert len(found) == 7

    log = stopped_log(live_server.processes[-1])  # every line: a secret in the last ones counts too
    assert "DEBUG urllib3" in log and "/device/token 200" in log
    assert found_in(log, found) == []
    assert done.status_code == 200 and found_in(done.text, found) == []
