"""Generic pass-through mode (FLOW=DEVICE) and the refresh proxy (/device/proxy).

Upstream is `responses`: a request it does not expect fails, and `upstream.calls`
shows what left the proxy. The same flow against the simulated Enedis, over
HTTP, is in test_e2e.py.
"""

import base64
import hashlib
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from helpers import PRM1, confirm, get_code, poll

from deviceflow.errors import UpstreamBadAnswer, UpstreamRefused, UpstreamTimeout, UpstreamUnreachable
from deviceflow.passthrough import Passthrough
from deviceflow.store import digest

TOKEN_URL = "https://oauth.example.org/token"
SECRET = "s3cr3t-value"  # CLIENT_SECRET in tests/conftest.py
UPSTREAM_TOKENS = {
    "access_token": "up-access",
    "refresh_token": "up-refresh",
    "token_type": "Bearer",
    "expires_in": 3600,
    "scope": "openid",
}
REFRESH_FORM = {"grant_type": "refresh_token", "client_id": "test-client", "refresh_token": "up-refresh"}


@pytest.fixture
def upstream():
    """The token endpoint; any request it was not told about fails with ConnectionError."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def device_config(make_config):
    def make(**env):
        return make_config(FLOW="DEVICE", TOKEN_ENDPOINT=TOKEN_URL, **env)

    return make


@pytest.fixture
def device_app(make_web, device_config):
    return make_web(device_config())


def sent_form(call) -> dict:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def sent_query(call) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


def back_from_upstream(app, query, **params):
    """The browser coming back from the authorization server with a code."""
    return app.get("/auth/redirect", {"state": query["state"], "code": "upstream-code", **params}, expect_errors=True)


def s256(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# --- the token-endpoint client, on its own


def test_exchange_code_posts_the_grant_with_timeouts(device_config, upstream):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    config = device_config()
    tokens = Passthrough(config).exchange_code("the-code", "app-id", "the-secret", "the-verifier")
    assert tokens == UPSTREAM_TOKENS
    call = upstream.calls[0]
    assert sent_form(call) == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "client_id": "app-id",
        "redirect_uri": "http://localhost:8080/auth/redirect",
        "client_secret": "the-secret",
        "code_verifier": "the-verifier",
    }
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.request.req_kwargs["timeout"] == config.timeouts


@pytest.mark.parametrize(
    "answer, error",
    [
        ({"status": 400, "json": {"error": "invalid_grant"}}, UpstreamRefused),
        ({"status": 200, "json": {"token_type": "Bearer"}}, UpstreamRefused),
        ({"status": 200, "json": {"access_token": ""}}, UpstreamRefused),
        ({"status": 200, "json": ["access_token"]}, UpstreamRefused),
        ({"status": 200, "body": "<html>maintenance</html>"}, UpstreamBadAnswer),
        ({"body": requests.ConnectTimeout()}, UpstreamTimeout),
        ({"body": requests.ConnectionError()}, UpstreamUnreachable),
    ],
)
def test_exchange_code_without_a_token_is_an_upstream_error(device_config, upstream, answer, error):
    upstream.post(TOKEN_URL, **answer)
    with pytest.raises(error):
        Passthrough(device_config()).exchange_code("the-code", "app-id")


# --- FLOW=DEVICE: /auth/redirect exchanges the code, the device gets upstream's answer


def test_device_gets_the_upstream_token_response_and_the_redirect_extras(device_app, upstream):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    code = get_code(device_app)
    query = confirm(device_app, code["user_code"])
    assert "code_challenge" not in query  # PKCE unset

    page = back_from_upstream(device_app, query, usage_point_id=PRM1)
    assert page.status_int == 200 and 'id="done"' in page.text

    form = sent_form(upstream.calls[0])
    assert form == {
        "grant_type": "authorization_code",
        "code": "upstream-code",
        "client_id": "test-client",
        "redirect_uri": "http://localhost:8080/auth/redirect",
        "client_secret": SECRET,
    }
    answer = poll(device_app, code["device_code"])
    assert answer.status_int == 200 and answer.headers["Cache-Control"] == "no-store"
    assert answer.json == {**UPSTREAM_TOKENS, "usage_point_id": PRM1}
    assert poll(device_app, code["device_code"]).json["error"] == "invalid_grant"  # delivered once


def test_a_flow_started_before_sealing_still_delivers(device_app, upstream):
    """An operator upgrades with flows pending: their records hold no public key, the answer waits as before."""
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    code = get_code(device_app)
    store, key = device_app.app.store, digest(code["device_code"])
    store.put("flow", key, {k: v for k, v in store.get("flow", key).items() if k != "public_key"}, 3600)
    back_from_upstream(device_app, confirm(device_app, code["user_code"]))
    assert store.get("flow", key)["upstream"] == UPSTREAM_TOKENS
    assert poll(device_app, code["device_code"]).json == UPSTREAM_TOKENS


def test_a_sealed_answer_altered_in_the_store_says_start_again(device_app, upstream, caplog):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    code = get_code(device_app)
    back_from_upstream(device_app, confirm(device_app, code["user_code"]))
    store, key = device_app.app.store, digest(code["device_code"])
    store.update_if("flow", key, {}, {"sealed": store.get("flow", key)["sealed"][:-8] + "AAAAAAAA"})
    answer = poll(device_app, code["device_code"])
    assert answer.status_int == 400 and answer.json["error"] == "expired_token"
    assert "up-access" not in answer.text and code["device_code"] not in caplog.text


@pytest.mark.parametrize(
    "configured, from_device, expected",
    [
        (SECRET, None, SECRET),
        (SECRET, "device-secret", SECRET),  # the operator's secret wins
        (None, "device-secret", "device-secret"),  # generic proxy: the device lends its own
        (None, None, None),  # a public client
    ],
)
def test_client_secret_sources(make_web, device_config, upstream, configured, from_device, expected):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    app = make_web(device_config(CLIENT_SECRET=configured))
    code = get_code(app, **({"client_secret": from_device} if from_device else {}))
    back_from_upstream(app, confirm(app, code["user_code"]))
    tokens = poll(app, code["device_code"]).json  # a lent secret is used at this poll, the others before
    assert sent_form(upstream.calls[0]).get("client_secret") == expected
    # Once used, the device's secret is no longer kept in the store.
    assert app.app.store.get("flow", digest(code["device_code"])).get("client_secret") is None
    assert app.app.store.get("lent", digest(code["device_code"])) is None
    assert tokens["access_token"] == "up-access"


def test_pkce_sends_the_verifier_matching_the_challenge(make_web, device_config, upstream):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    app = make_web(device_config(PKCE="1"))
    code = get_code(app)
    query = confirm(app, code["user_code"])
    assert query["code_challenge_method"] == "S256"

    back_from_upstream(app, query)
    verifier = sent_form(upstream.calls[0])["code_verifier"]
    assert 43 <= len(verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9._~-]+", verifier)  # RFC 7636 §4.1
    assert s256(verifier) == query["code_challenge"]


def test_each_flow_has_its_own_verifier(make_web, device_config, upstream):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    app = make_web(device_config(PKCE="1"))
    challenges = {confirm(app, get_code(app)["user_code"])["code_challenge"] for _ in range(2)}
    assert len(challenges) == 2


def test_redirect_parameters_never_override_or_fill_in_token_fields(device_app, upstream):
    # Upstream sends no refresh_token and an extra field of its own.
    upstream.post(
        TOKEN_URL,
        json={
            "access_token": "up-access",
            "token_type": "Bearer",
            "expires_in": 3600,
            "usage_points_id": "from-upstream",
        },
    )
    code = get_code(device_app)
    query = confirm(device_app, code["user_code"])
    back_from_upstream(
        device_app,
        query,
        access_token="forged",
        expires_in="999999",
        token_type="mac",
        refresh_token="forged",
        scope="admin",
        id_token="forged",
        error_description="x",
        usage_points_id="forged",
        usage_point_id=PRM1,
        custom="kept",
    )
    assert poll(device_app, code["device_code"]).json == {
        "access_token": "up-access",
        "token_type": "Bearer",
        "expires_in": 3600,
        "usage_points_id": "from-upstream",
        "usage_point_id": PRM1,
        "custom": "kept",
    }


FAILURES = [
    pytest.param(
        {"status": 400, "json": {"error": "invalid_grant", "error_description": "<b>EVIL</b>"}}, 502, id="oauth-error"
    ),
    pytest.param({"status": 200, "body": "<script>EVIL()</script>", "content_type": "text/html"}, 502, id="not-json"),
    pytest.param({"status": 200, "json": {"note": "EVIL"}}, 502, id="no-access-token"),
    pytest.param({"status": 503, "body": "<h1>EVIL gateway</h1>"}, 502, id="html-error"),
    pytest.param({"body": requests.ReadTimeout()}, 504, id="timeout"),
    pytest.param({"body": requests.ConnectionError()}, 502, id="unreachable"),
]


@pytest.mark.parametrize("answer, status", FAILURES)
def test_upstream_failure_denies_the_flow_with_a_readable_page(device_app, upstream, caplog, answer, status):
    upstream.post(TOKEN_URL, **answer)
    code = get_code(device_app, client_secret="device-secret")
    query = confirm(device_app, code["user_code"])
    with caplog.at_level(logging.DEBUG):
        page = back_from_upstream(device_app, query, usage_point_id=PRM1)
    assert page.status_int == status
    assert page.content_type == "text/html"
    assert "Votre appareil en est informé" in page.text
    assert "EVIL" not in page.text
    for secret in (SECRET, "upstream-code", code["device_code"], query["state"]):
        assert secret not in caplog.text and secret not in page.text
    assert poll(device_app, code["device_code"]).json["error"] == "access_denied"


def test_refusal_at_upstream_consent_makes_no_token_call(device_app, upstream):
    code = get_code(device_app)
    query = confirm(device_app, code["user_code"])
    page = device_app.get(
        "/auth/redirect",
        {"state": query["state"], "error": "access_denied", "error_description": "<script>x()</script>"},
        expect_errors=True,
    )
    assert page.status_int == 400 and "<script>x()" not in page.text
    assert len(upstream.calls) == 0
    assert poll(device_app, code["device_code"]).json["error"] == "access_denied"


def test_redirect_without_code_denies_the_flow(device_app, upstream):
    code = get_code(device_app)
    query = confirm(device_app, code["user_code"])
    page = device_app.get("/auth/redirect", {"state": query["state"]}, expect_errors=True)
    assert page.status_int == 400 and len(upstream.calls) == 0
    assert poll(device_app, code["device_code"]).json["error"] == "access_denied"


# --- client ids


@pytest.mark.parametrize(
    "configured, presented, sent",
    [
        ("", "any-app", "any-app"),  # CLIENT_ID empty: a generic proxy, any client id goes through
        ("test-client", "test-client", "test-client"),
        ("test-client", "domoticz", "test-client"),  # an EXTERNAL_CLIENT_ID alias: upstream only sees CLIENT_ID
    ],
)
def test_client_id_sent_upstream(make_web, device_config, upstream, configured, presented, sent):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    app = make_web(device_config(CLIENT_ID=configured))
    code = get_code(app, client_id=presented)
    query = confirm(app, code["user_code"])
    assert query["client_id"] == sent
    back_from_upstream(app, query)
    assert sent_form(upstream.calls[0])["client_id"] == sent
    assert poll(app, code["device_code"], client_id=presented).json["access_token"] == "up-access"


def test_configured_client_id_is_an_allow_list(device_app):
    refused = device_app.post("/device/code", {"client_id": "stranger"}, expect_errors=True)
    assert refused.status_int == 401 and refused.json["error"] == "invalid_client"


# --- a "-cg" state suffix: this flow in client_credentials mode


def test_cg_suffix_switches_one_flow_to_client_credentials(make_web, device_config, upstream):
    app = make_web(device_config(PKCE="1"))
    code = get_code(app)
    query = confirm(app, code["user_code"], state_suffix="-cg")
    assert query["state"].endswith("-cg") and "code_challenge" not in query
    back_from_upstream(app, query, usage_point_id=PRM1)
    assert len(upstream.calls) == 0
    tokens = poll(app, code["device_code"]).json
    assert tokens["usage_points_id"] == PRM1 and tokens["expires_in"] == 12600
    assert app.app.flow.tokens.authenticate(tokens["access_token"])["usage_points"] == [PRM1]


def test_other_suffixes_keep_the_pass_through(device_app, upstream):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    code = get_code(device_app)
    query = confirm(device_app, code["user_code"], state_suffix="abc1")
    assert query["state"].endswith("abc1")
    back_from_upstream(device_app, query)
    assert len(upstream.calls) == 1
    assert poll(device_app, code["device_code"]).json["access_token"] == "up-access"


# --- POST /device/proxy: the refresh_token grant, and nothing else, with the secret


def test_proxy_forwards_a_refresh_with_the_secret(device_app, upstream):
    upstream.post(
        TOKEN_URL,
        body=b'{"access_token": "new", "refresh_token": "newer"}',
        status=200,
        content_type="application/json;charset=UTF-8",
    )
    answer = device_app.post("/device/proxy", {**REFRESH_FORM, "scope": "openid"})
    assert answer.status_int == 200
    assert answer.body == b'{"access_token": "new", "refresh_token": "newer"}'
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cache-Control"] == "no-store"
    call = upstream.calls[0]
    assert sent_form(call) == {**REFRESH_FORM, "scope": "openid", "client_secret": SECRET}
    assert sent_query(call) == {"redirect_uri": "http://localhost:8080/auth/redirect"}


def test_proxy_keeps_upstream_status_and_error_body(device_app, upstream):
    upstream.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "expired"})
    answer = device_app.post("/device/proxy", REFRESH_FORM, expect_errors=True)
    assert answer.status_int == 400
    assert answer.json == {"error": "invalid_grant", "error_description": "expired"}


def test_proxy_sends_client_id_for_an_alias(device_app, upstream):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    device_app.post("/device/proxy", {**REFRESH_FORM, "client_id": "domoticz"})
    assert sent_form(upstream.calls[0])["client_id"] == "test-client"


@pytest.mark.parametrize(
    "configured, from_device, expected",
    [
        (SECRET, "device-secret", SECRET),
        (None, "device-secret", "device-secret"),
        (None, None, None),
    ],
)
def test_proxy_secret_sources(make_web, device_config, upstream, configured, from_device, expected):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    app = make_web(device_config(CLIENT_SECRET=configured))
    app.post("/device/proxy", {**REFRESH_FORM, **({"client_secret": from_device} if from_device else {})})
    assert sent_form(upstream.calls[0]).get("client_secret") == expected


REFUSED_GRANTS = [
    "client_credentials",
    "authorization_code",
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:saml2-bearer",
    "REFRESH_TOKEN",
    "refresh_token ",
    " refresh_token",
    "refresh-token",
    "refresh_token\t",
]


@pytest.mark.parametrize("flow", ["DEVICE", ""])
@pytest.mark.parametrize("grant", REFUSED_GRANTS)
def test_proxy_never_lends_the_secret_to_another_grant(make_web, make_config, upstream, flow, grant):
    app = make_web(make_config(FLOW=flow, TOKEN_ENDPOINT=TOKEN_URL))
    answer = app.post(
        "/device/proxy",
        {**REFRESH_FORM, "grant_type": grant, "code": "c", "username": "u", "password": "p"},
        expect_errors=True,
    )
    if flow:
        assert answer.status_int == 400
        assert answer.json["error"] in ("unsupported_grant_type", "invalid_request")  # control characters: the latter
    else:  # no pass-through at all in client_credentials mode
        assert (answer.status_int, answer.json["error"]) == (404, "not_found")
    assert len(upstream.calls) == 0


@pytest.mark.parametrize(
    "request_args, status, error",
    [
        ({"params": {"client_id": "test-client", "refresh_token": "r"}}, 400, "invalid_request"),  # no grant_type
        ({"params": {"grant_type": "refresh_token", "client_id": "test-client"}}, 400, "invalid_request"),
        ({"params": {**REFRESH_FORM, "client_id": "stranger"}}, 401, "invalid_client"),
        ({"params": {"grant_type": "refresh_token", "refresh_token": "r"}}, 400, "invalid_request"),  # no client_id
        (
            {"params": "grant_type=refresh_token&grant_type=client_credentials&client_id=test-client&refresh_token=r"},
            400,
            "invalid_request",
        ),
        (
            {
                "params": '{"grant_type": "client_credentials", "client_id": "test-client"}',
                "content_type": "application/json",
            },
            400,
            "invalid_request",
        ),
    ],
)
def test_proxy_refuses_bad_requests_without_calling_upstream(device_app, upstream, request_args, status, error):
    answer = device_app.post("/device/proxy", expect_errors=True, **request_args)
    assert (answer.status_int, answer.json["error"]) == (status, error)
    assert answer.headers["Cache-Control"] == "no-store"
    assert len(upstream.calls) == 0


def test_proxy_ignores_a_grant_in_the_query_string(device_app, upstream):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    device_app.post("/device/proxy?grant_type=client_credentials", REFRESH_FORM)
    call = upstream.calls[0]
    assert sent_form(call)["grant_type"] == "refresh_token"
    assert list(sent_query(call)) == ["redirect_uri"]


@pytest.mark.parametrize(
    "answer, status, error",
    [
        ({"body": requests.ReadTimeout()}, 504, "upstream_timeout"),
        ({"body": requests.ConnectionError()}, 502, "upstream_unreachable"),
        ({"status": 503, "body": "<html>down</html>", "content_type": "text/html"}, 503, "upstream_error"),
        ({"status": 200, "body": "<html>portal</html>", "content_type": "text/html"}, 502, "upstream_error"),
        ({"status": 302, "headers": {"Location": "https://elsewhere.example/"}}, 502, "upstream_error"),
    ],
)
def test_proxy_upstream_failures_are_json(device_app, upstream, caplog, answer, status, error):
    upstream.post(TOKEN_URL, **answer)
    with caplog.at_level(logging.DEBUG):
        reply = device_app.post("/device/proxy", REFRESH_FORM, expect_errors=True)
    assert (reply.status_int, reply.json["error"]) == (status, error)
    assert reply.content_type == "application/json"
    assert SECRET not in caplog.text and "up-refresh" not in caplog.text


def test_proxy_checks_the_device_version(make_web, device_config, upstream):
    app = make_web(device_config(VERSION_MIN="2.0.0"))
    answer = app.post("/device/proxy", REFRESH_FORM, headers={"User-Agent": "DomoticzLinky/1.9.0"}, expect_errors=True)
    assert answer.json["error"] == "version_mismatch" and len(upstream.calls) == 0
