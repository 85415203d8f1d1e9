"""Every route of docs/protocol.md in scope, as a device and a browser see it (WebTest over the WSGI app)."""

import re

import pytest
from helpers import DEVICE_GRANT, PRM1, PRM2, confirm, consent, get_code, poll, refresh, tokens_for

from deviceflow.store import digest

# --- POST /device/code


def test_device_code_answers_the_rfc8628_fields(app):
    body = get_code(app)
    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert len(body["device_code"]) >= 43  # 32 random bytes, url-safe
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", body["user_code"])
    assert body["verification_uri"] == "http://localhost:8080/device"
    assert body["verification_uri_complete"] == f"http://localhost:8080/device?code={body['user_code']}"
    assert body["expires_in"] == 300 and body["interval"] == 5


def test_device_code_is_not_cacheable_json(app):
    response = app.post("/device/code", {"client_id": "test-client"})
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"


def test_external_client_id_is_accepted(app):
    assert "device_code" in get_code(app, client_id="domoticz")


def test_device_code_without_client_id_is_invalid_request(app):
    response = app.post("/device/code", {}, status=400)
    assert response.json["error"] == "invalid_request"


def test_unknown_client_is_invalid_client_401(app):
    response = app.post("/device/code", {"client_id": "intruder"}, status=401)
    assert response.json["error"] == "invalid_client"
    assert response.headers["Cache-Control"] == "no-store"


def test_interval_follows_the_polling_budget(make_web, make_config):
    app = make_web(make_config(LIMIT_REQUESTS_PER_MINUTE="7", CODE_LIFETIME="600"))
    body = get_code(app)
    assert body["interval"] == 9 and body["expires_in"] == 600


def test_base_url_builds_urls_not_the_host_header(make_web, make_config):
    app = make_web(make_config(BASE_URL="https://proxy.example.org/"))
    body = app.post("/device/code", {"client_id": "test-client"}, headers={"Host": "evil.example"}).json
    assert body["verification_uri"] == "https://proxy.example.org/device"


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("client_id=test-client", "application/json"),
        ('{"client_id": "test-client"}', "application/json"),
        ("client_id=test-client&client_id=other", "application/x-www-form-urlencoded"),
        ("client_id=test-client&scope=" + "a" * (65 * 1024), "application/x-www-form-urlencoded"),
        ("client_id=test-%ff%fe", "application/x-www-form-urlencoded"),
        ("client_id=test-client%0d%0aX: y", "application/x-www-form-urlencoded"),
        ("client_id=test%00client", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_bodies_are_400_invalid_request(app, body, content_type):
    response = app.post("/device/code", body, content_type=content_type, status=400)
    assert response.json["error"] == "invalid_request"
    assert response.json["error_description"].isascii()


def test_version_min_refuses_old_or_unnamed_clients(make_web, make_config):
    app = make_web(make_config(VERSION_MIN="2.5.0"))
    old = app.post(
        "/device/code", {"client_id": "test-client"}, headers={"User-Agent": "DomoticzLinky/2.4.9"}, status=400
    )
    assert old.json["error"] == "version_mismatch"
    none = app.post("/device/token", {"grant_type": DEVICE_GRANT}, headers={"User-Agent": "curl"}, status=400)
    assert none.json["error"] == "version_mismatch"
    app.post("/device/code", {"client_id": "test-client"}, headers={"User-Agent": "DomoticzLinky/2.6.0"}, status=200)
    app.post("/device/code", {"client_id": "test-client"}, headers={"User-Agent": "DomoticzLinky/2.10"}, status=200)


# --- GET /device, POST /auth/verify_code


def test_link_shows_the_code_and_does_not_start_consent(app):
    code = get_code(app)
    page = app.get(f"/device?code={code['user_code']}")
    assert page.status_int == 200
    assert code["user_code"] in page.text
    assert page.html.find("html")["lang"] == "fr"
    assert "Continuer vers Enedis" in page.text
    assert "Location" not in page.headers
    form = page.forms[0]
    assert form.method.upper() == "POST" and form["csrf"].value


def test_the_requesting_application_is_named(app):
    code = app.post("/device/code", {"client_id": "test-client"}, headers={"User-Agent": "DomoticzLinky/2.6.0"}).json
    page = app.get(f"/device?code={code['user_code']}")
    assert "DomoticzLinky" in page.text


def test_english_when_the_browser_prefers_it(app):
    code = get_code(app)
    page = app.get(f"/device?code={code['user_code']}", headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    assert page.html.find("html")["lang"] == "en"
    assert "Continue to Enedis" in page.text


def test_typed_code_matches_ignoring_case_spaces_and_dashes(app):
    code = get_code(app)["user_code"]
    typed = code.lower().replace("-", " ")
    page = app.get("/device")
    page.forms[0]["user_code"] = typed
    confirmation = page.forms[0].submit()
    assert code in confirmation.text and confirmation.forms[0]["csrf"].value


def test_confirm_redirects_to_the_authorization_endpoint(app):
    code = get_code(app)
    query = confirm(app, code["user_code"])
    assert query["client_id"] == "test-client"
    assert query["response_type"] == "code"
    assert query["duration"] == "P3Y"
    assert query["redirect_uri"] == "http://localhost:8080/auth/redirect"
    assert len(query["state"]) >= 32


def test_confirm_is_a_302_to_the_configured_endpoint(app):
    code = get_code(app)
    page = app.get(f"/device?code={code['user_code']}")
    response = page.forms[0].submit(status=302)
    assert response.headers["Location"].startswith(
        "https://mon-compte-particulier.enedis.fr/dataconnect/v1/oauth2/authorize?"
    )


def test_caller_state_suffix_is_appended(app):
    code = get_code(app)
    query = confirm(app, code["user_code"], state_suffix="sandbox3")
    assert query["state"].endswith("sandbox3") and len(query["state"]) > len("sandbox3") + 30


def test_confirm_without_the_csrf_token_of_this_browser_is_refused(app):
    code = get_code(app)
    page = app.get(f"/device?code={code['user_code']}")
    page.forms[0]["csrf"] = "0" * 64
    response = page.forms[0].submit(expect_errors=True)
    assert response.status_int == 403
    assert "Location" not in response.headers


def test_wrong_code_shows_the_page_again_with_an_error(app):
    page = app.get("/device?code=BBBB-BBBB", status=400)
    assert page.html.find(id="error") is not None
    assert page.forms[0]["user_code"].value == "BBBB-BBBB"


def test_expired_code_is_refused_on_the_page(app, clock):
    code = get_code(app)
    clock.advance(301)
    assert app.get(f"/device?code={code['user_code']}", expect_errors=True).status_int == 400


def test_old_links_to_verify_code_show_the_confirmation(app):
    code = get_code(app)
    page = app.get(f"/auth/verify_code?code={code['user_code']}")
    assert code["user_code"] in page.text and page.forms[0]["csrf"].value


def test_repeated_wrong_codes_get_429_from_one_address(app):
    for _ in range(10):
        app.get("/device?code=BBBB-BBBB", expect_errors=True)
    page = app.get("/device?code=CCCC-CCCC", expect_errors=True)
    assert page.status_int == 429
    assert page.headers["Retry-After"]
    other = app.get("/device?code=CCCC-CCCC", expect_errors=True, extra_environ={"REMOTE_ADDR": "192.0.2.99"})
    assert other.status_int == 400


def test_many_addresses_guessing_share_a_global_budget(app):
    for i in range(300):
        app.get(
            "/device?code=BBBB-BBBB", expect_errors=True, extra_environ={"REMOTE_ADDR": f"10.0.{i // 250}.{i % 250}"}
        )
    page = app.get("/device?code=CCCC-CCCC", expect_errors=True, extra_environ={"REMOTE_ADDR": "10.0.0.1"})
    assert page.status_int == 429  # a site that failed waits once the server-wide count is spent


def test_pages_send_protective_headers(app):
    page = app.get("/device")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_browser_cookie_is_httponly_and_lax(app):
    code = get_code(app)
    page = app.get(f"/device?code={code['user_code']}")
    cookie = page.headers["Set-Cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


# --- GET /auth/redirect


def test_consent_shows_success_and_the_device_gets_tokens(app):
    code = get_code(app)
    page = consent(app, code["user_code"], f"{PRM1};{PRM2}")
    assert page.status_int == 200 and PRM1 in page.text
    response = poll(app, code["device_code"])
    assert response.status_int == 200
    body = response.json
    assert body["usage_points_id"] == f"{PRM1},{PRM2}"
    assert body["token_type"] == "Bearer" and body["expires_in"] == 12600 and body["scope"] == ""
    assert body["access_token"] and body["refresh_token"] and body["access_token"] != body["refresh_token"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/auth/redirect/extra/segments", "/auth/redirect_parent"])
def test_redirect_variants_enedis_produces(app, path):
    code = get_code(app)
    query = confirm(app, code["user_code"])
    page = app.get(path, {"state": query["state"], "code": "c", "usage_point_id": PRM1})
    assert page.status_int == 200
    assert poll(app, code["device_code"]).status_int == 200


def test_state_is_single_use(app):
    code = get_code(app)
    query = confirm(app, code["user_code"])
    app.get("/auth/redirect", {"state": query["state"], "code": "c", "usage_point_id": PRM1})
    again = app.get(
        "/auth/redirect", {"state": query["state"], "code": "c", "usage_point_id": PRM2}, expect_errors=True
    )
    assert again.status_int == 400


def test_state_is_bound_to_the_browser(app):
    code = get_code(app)
    query = confirm(app, code["user_code"])
    app.reset()  # another browser: no cookie
    page = app.get("/auth/redirect", {"state": query["state"], "code": "c", "usage_point_id": PRM1}, expect_errors=True)
    assert page.status_int == 400
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"


def test_refusal_at_enedis_marks_the_flow_denied(app):
    code = get_code(app)
    query = confirm(app, code["user_code"])
    page = app.get(
        "/auth/redirect",
        {"state": query["state"], "error": "access_denied", "error_description": "<script>alert(1)</script>"},
        expect_errors=True,
    )
    assert page.status_int == 400
    assert "<script>alert(1)" not in page.text
    assert poll(app, code["device_code"]).json["error"] == "access_denied"


@pytest.mark.parametrize("points", ["123", "1111111111111a", "", f"{PRM1};../x"])
def test_malformed_usage_points_are_refused(app, points):
    code = get_code(app)
    page = consent(app, code["user_code"], points)
    assert page.status_int == 400
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"


def test_unknown_state_gives_a_readable_page(app):
    page = app.get("/auth/redirect?state=nope&code=x", expect_errors=True)
    assert page.status_int == 400 and page.content_type == "text/html"


# --- POST /device/token


def test_pending_poll_carries_the_interval(app):
    code = get_code(app)
    response = poll(app, code["device_code"])
    assert response.status_int == 400
    assert response.json["error"] == "authorization_pending" and response.json["interval"] == 5
    assert response.headers["Cache-Control"] == "no-store"


def test_polling_at_the_interval_never_sees_slow_down(app, clock):
    code = get_code(app)
    for _ in range(40):
        assert poll(app, code["device_code"]).json["error"] == "authorization_pending"
        clock.advance(5)


def test_polling_too_fast_gets_slow_down_with_interval(app, clock):
    code = get_code(app)
    answers = [poll(app, code["device_code"]).json["error"] for _ in range(13)]
    assert answers[:12] == ["authorization_pending"] * 12
    assert answers[12] == "slow_down"
    assert poll(app, code["device_code"]).json["interval"] == 5
    clock.advance(61)
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"


def test_expired_code_is_expired_token_for_a_day(app, clock):
    code = get_code(app)
    clock.advance(301)
    assert poll(app, code["device_code"]).json["error"] == "expired_token"
    clock.advance(23 * 3600)
    assert poll(app, code["device_code"]).json["error"] == "expired_token"


def test_never_issued_code_is_invalid_grant(app):
    assert poll(app, "never-issued").json["error"] == "invalid_grant"


def test_tokens_are_delivered_once(app):
    code = get_code(app)
    consent(app, code["user_code"])
    assert poll(app, code["device_code"]).status_int == 200
    second = poll(app, code["device_code"])
    assert second.status_int == 400 and second.json["error"] == "invalid_grant"


def test_another_client_cannot_poll_the_code(app):
    code = get_code(app)
    consent(app, code["user_code"])
    assert poll(app, code["device_code"], client_id="domoticz").json["error"] == "invalid_grant"
    assert poll(app, code["device_code"]).status_int == 200


@pytest.mark.parametrize(
    "form, error",
    [
        ({"grant_type": "password", "client_id": "test-client"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": "test-client"}, "unsupported_grant_type"),
        ({"client_id": "test-client"}, "invalid_request"),
        ({"grant_type": DEVICE_GRANT, "client_id": "test-client"}, "invalid_request"),
        ({"grant_type": "refresh_token", "client_id": "test-client"}, "invalid_request"),
    ],
)
def test_token_endpoint_errors(app, form, error):
    response = app.post("/device/token", form, status=400)
    assert response.json["error"] == error


def test_token_endpoint_unknown_client_is_401(app):
    response = app.post("/device/token", {"grant_type": DEVICE_GRANT, "client_id": "x", "device_code": "y"}, status=401)
    assert response.json["error"] == "invalid_client"


def test_tokens_are_stored_only_as_digests(app, sqlite_store, tmp_path):
    body = tokens_for(app)
    assert sqlite_store.get("access", digest(body["access_token"]))["usage_points"] == [PRM1]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("store.sqlite3*"))
    assert body["access_token"].encode() not in raw
    assert body["refresh_token"].encode() not in raw


# --- refresh


def test_refresh_rotates_and_keeps_usage_points(app):
    first = tokens_for(app, f"{PRM1};{PRM2}")
    second = refresh(app, first["refresh_token"]).json
    assert second["usage_points_id"] == f"{PRM1},{PRM2}"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["token_type"] == "Bearer" and second["expires_in"] == 12600


def test_old_refresh_token_works_until_the_new_one_is_used(app):
    first = tokens_for(app)
    lost = refresh(app, first["refresh_token"]).json  # answer lost on the way
    retry = refresh(app, first["refresh_token"])
    assert retry.status_int == 200
    assert refresh(app, lost["refresh_token"]).json["error"] == "invalid_grant"  # superseded, never used
    assert refresh(app, retry.json["refresh_token"]).status_int == 200


def test_reusing_a_replaced_refresh_token_revokes_the_chain(app):
    first = tokens_for(app)
    second = refresh(app, first["refresh_token"]).json
    third = refresh(app, second["refresh_token"]).json  # second is used: first is now replaced
    reuse = refresh(app, first["refresh_token"])
    assert reuse.status_int == 400 and reuse.json["error"] == "invalid_grant"
    assert refresh(app, third["refresh_token"]).json["error"] == "invalid_grant"


def test_refresh_checks_usage_points_in_any_order(app):
    first = tokens_for(app, f"{PRM1};{PRM2}")
    ok = refresh(app, first["refresh_token"], usage_points_id=f"{PRM2},{PRM1}")
    assert ok.status_int == 200
    bad = refresh(app, ok.json["refresh_token"], usage_points_id=PRM1)
    assert bad.json["error"] == "invalid_grant"


def test_unknown_refresh_token_is_invalid_grant(app):
    assert refresh(app, "not-a-token").json["error"] == "invalid_grant"


def test_refresh_token_expires_with_the_consent_duration(make_web, make_config, clock):
    app = make_web(make_config(DURATION="P30D"))
    first = tokens_for(app)
    clock.advance(29 * 86400)
    second = refresh(app, first["refresh_token"]).json
    clock.advance(2 * 86400)
    assert refresh(app, second["refresh_token"]).json["error"] == "invalid_grant"


# --- discovery and operations


def test_metadata_names_the_endpoints(app):
    body = app.get("/.well-known/oauth-authorization-server").json
    assert body["issuer"] == "http://localhost:8080"
    assert body["device_authorization_endpoint"] == "http://localhost:8080/device/code"
    assert body["token_endpoint"] == "http://localhost:8080/device/token"
    assert DEVICE_GRANT in body["grant_types_supported"] and body["response_types_supported"]


def test_healthz_reports_ok_then_503_when_the_store_is_gone(app, sqlite_store):
    assert app.get("/healthz").json["status"] == "ok"

    def broken():
        from deviceflow.errors import StoreUnavailable

        raise StoreUnavailable("down")

    sqlite_store.ping = broken
    assert app.get("/healthz", status=503).json["status"] == "unavailable"


def test_store_down_gives_503_temporarily_unavailable(app, sqlite_store):
    from deviceflow.errors import StoreUnavailable

    def down(*args, **kwargs):
        raise StoreUnavailable("down")

    sqlite_store.add = down
    response = app.post("/device/code", {"client_id": "test-client"}, status=503)
    assert response.json["error"] == "temporarily_unavailable"


def test_home_page_says_what_is_stored(app):
    page = app.get("/")
    assert "conservé" in page.text and page.content_type == "text/html"


def test_unknown_device_path_is_json_404_and_page_path_is_html(app):
    assert app.get("/device/nothing", status=404).json["error"] == "not_found"
    assert app.get("/nothing", status=404).content_type == "text/html"


def test_wrong_method_on_device_route_is_json(app):
    for response in (app.get("/device/token", status=405), app.get("/device/code", status=405)):
        assert response.json["error"] == "invalid_request"
        assert response.headers["Allow"] == "POST"
        assert response.headers["Cache-Control"] == "no-store"


def test_head_on_a_device_route_is_a_405_without_a_body(app):
    """waitress sends whatever the application returns, even to HEAD: a body there is read by a
    keep-alive client as the start of the next response. Bottle dropped it; the token endpoint must too."""
    from webob import Request

    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    for path in ("/device/token", "/device/code"):
        environ = Request.blank(path, method="HEAD", headers={"User-Agent": "Dev/3.0.0"}).environ
        environ["REMOTE_ADDR"] = "192.0.2.10"
        body = b"".join(app.app(environ, start_response))
        assert statuses[-1].startswith("405 ") and body == b"", (path, body)


def test_wrong_method_at_the_token_endpoint_is_described_as_before(app):
    """The description Bottle's 405 had (deviceflow.web.framework_error), for every device route alike."""
    token, code = app.put("/device/token", status=405).json, app.put("/device/code", status=405).json
    assert token == code == {"error": "invalid_request", "error_description": "invalid request"}


def test_an_unforeseen_failure_at_the_token_endpoint_is_a_json_500_named_in_the_log(app, monkeypatch, caplog):
    def broken(client_id, device_code):
        raise RuntimeError(f"could not read {device_code}")

    monkeypatch.setattr(app.app.flow.device_code_grant, "poll", broken)
    code = app.post("/device/code", {"client_id": "test-client"}).json
    form = {"grant_type": DEVICE_GRANT, "client_id": "test-client", "device_code": code["device_code"]}
    response = app.post("/device/token", form, status=500)
    assert response.json["error"] == "server_error"
    assert response.headers["Cache-Control"] == "no-store"
    assert "unexpected error on POST /device/token: RuntimeError" in caplog.text
    assert code["device_code"] not in caplog.text and "Traceback" not in caplog.text


def test_static_css_is_served_locally(app):
    assert "font" in app.get("/static/style.css").text


# --- the pages people see: who runs the server, the language switch, what to do next


def test_home_names_the_operator_and_how_long_things_are_kept(make_web, make_config):
    app = make_web(
        make_config(
            OPERATOR_NAME="Association Exemple",
            OPERATOR_CONTACT="admin@example.org",
            CODE_LIFETIME="600",
            DURATION="P1Y",
        )
    )
    page = app.get("/")
    operator = page.html.find(id="operator")
    assert "Association Exemple" in operator.text
    assert operator.find("a")["href"] == "mailto:admin@example.org"
    stored = page.html.find(id="stored").text
    assert "10\u00a0minutes" in stored and "1\u00a0an" in stored


def test_home_says_when_the_operator_gave_no_name(app):
    assert "n'a pas indiqué son nom" in app.get("/").html.find(id="operator").text


def test_language_switch_keeps_the_code_being_confirmed(app):
    code = get_code(app)["user_code"]
    page = app.get(f"/device?code={code}")
    switch = page.html.find(id="switch-language")["href"]
    assert switch == f"http://localhost:8080/device?code={code}&lang=en"
    english = app.get(switch.replace("http://localhost:8080", ""))
    assert english.html.find("html")["lang"] == "en" and english.html.find(id="user-code").text == code


def test_language_switch_of_a_posted_form_leads_to_the_empty_form(app):
    page = app.post("/auth/verify_code", {"user_code": "BBBB-BBBB"}, status=400)
    assert page.html.find(id="switch-language")["href"] == "http://localhost:8080/auth/verify_code?lang=en"


def test_done_page_shows_again_in_the_other_language_without_replaying_enedis(app):
    code = get_code(app)
    done = consent(app, code["user_code"])
    assert done.status_int == 200 and PRM1 in done.html.find(id="usage-points").text
    switch = done.html.find(id="switch-language")["href"]
    assert "state" not in switch
    english = app.get(switch.replace("http://localhost:8080", ""))
    assert english.html.find("html")["lang"] == "en" and PRM1 in english.html.find(id="usage-points").text
    assert poll(app, code["device_code"]).status_int == 200  # delivered once, as before


def test_the_way_back_from_enedis_shows_nothing_to_another_browser(app):
    code = get_code(app)
    consent(app, code["user_code"])
    app.reset()  # another browser: no cookie
    page = app.get("/auth/redirect?lang=en", status=400)
    assert page.html.find(id="usage-points") is None and "no request pending" in page.text


def test_too_many_wrong_codes_give_a_page_with_the_wait_and_no_form(app):
    for _ in range(10):
        app.get("/device?code=BBBB-BBBB", status=400)
    page = app.get("/device?code=CCCC-CCCC", status=429)
    assert page.headers["Retry-After"] == "900"
    assert "15\u00a0minutes" in page.html.find(id="next").text
    assert page.forms == {}


def test_a_code_that_expires_during_consent_says_how_long_codes_last(app, clock):
    code = get_code(app)
    clock.advance(200)
    query = confirm(app, code["user_code"])
    clock.advance(150)  # the code's 5 minutes are over, the consent's state still lives
    page = app.get("/auth/redirect", {"state": query["state"], "usage_point_id": PRM1}, status=400)
    assert page.html.find("h1").text == "Code expiré"
    assert "5\u00a0minutes" in page.html.find(id="next").text


def test_refusal_at_enedis_says_what_to_do_next(app):
    code = get_code(app)
    page = consent(app, code["user_code"], usage_points=None, error="access_denied")
    assert page.status_int == 400 and page.html.find("h1").text == "Autorisation refusée"
    assert "nouveau code" in page.html.find(id="next").text


def test_code_entry_script_is_local_and_only_a_help(app):
    page = app.get("/device")
    script = page.html.find("script")
    assert script["src"] == "http://localhost:8080/static/code.js" and not script.text.strip()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert app.get("/static/code.js").content_type in ("application/javascript", "text/javascript")
