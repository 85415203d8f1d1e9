"""Guessing and flooding: failed user-code entries, device-code requests, and
which client address the limits count (X-Forwarded-For only from TRUSTED_PROXIES)."""

import logging
import re
from pathlib import Path

import pytest
from helpers import get_code
from webtest import TestApp

from deviceflow.errors import PageError
from deviceflow.flow import DeviceFlow
from deviceflow.flow.device_authorization import (
    DEVICE_CODES_PER_ADDRESS,
    DEVICE_CODES_WINDOW,
    USER_CODE_ALPHABET,
    USER_CODE_LENGTH,
)
from deviceflow.flow.verification import (
    GUESSES_CEILING,
    GUESSES_GLOBAL,
    GUESSES_GLOBAL_WINDOW,
    GUESSES_PER_ADDRESS,
    GUESSES_PER_ADDRESS_WINDOW,
)
from deviceflow.middleware import ClientAddress

SECURITY = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def wrong_guess(app, address=None, **kwargs):
    environ = {"REMOTE_ADDR": address} if address else {}
    return app.get("/device?code=BBBB-BBBB", expect_errors=True, extra_environ=environ, **kwargs)


# --- failed user-code entries


def test_past_the_address_budget_even_the_right_code_waits(app):
    """Otherwise a 429 for wrong codes and a page for the right one would tell a guesser when he hit."""
    code = get_code(app)["user_code"]
    for _ in range(GUESSES_PER_ADDRESS):
        assert wrong_guess(app).status_int == 400
    page = app.get(f"/device?code={code}", expect_errors=True)
    assert page.status_int == 429
    assert int(page.headers["Retry-After"]) == GUESSES_PER_ADDRESS_WINDOW
    assert page.html.find(id="error") is not None
    assert all("csrf" not in form.fields for form in page.forms.values())  # no confirmation


def test_the_address_budget_comes_back_after_its_window(app, clock):
    for _ in range(GUESSES_PER_ADDRESS):
        wrong_guess(app)
    assert wrong_guess(app).status_int == 429
    clock.advance(GUESSES_PER_ADDRESS_WINDOW + 1)
    assert wrong_guess(app).status_int == 400


def test_the_confirm_button_counts_guesses_too(app):
    """POSTing the confirmation form with a made-up code is a guess like any other."""
    page = app.get(f"/device?code={get_code(app)['user_code']}")
    form = page.forms[0]
    for _ in range(GUESSES_PER_ADDRESS):
        form["user_code"] = "BBBB-BBBB"
        assert form.submit(expect_errors=True).status_int == 400
    assert form.submit(expect_errors=True).status_int == 429


def test_five_thousand_addresses_guessing_stay_within_the_ceiling(config, sqlite_store, clock):
    """One wrong guess per address and hour - far under the per-address limit - from 5,000
    addresses for three hours: only the server-wide ceiling stands in the way."""
    flow = DeviceFlow(config, sqlite_store, clock=clock)
    tried = 0
    for hour in range(3):
        for address in range(5000):
            try:
                flow.verification.find_pending("BBBB-BBBB", f"203.{address // 250}.{address % 250}.1")
                raise AssertionError("BBBB-BBBB is no live code")
            except PageError as error:
                tried += error.reason == "unknown_code"  # the others were refused before any look-up
        clock.advance(GUESSES_GLOBAL_WINDOW + 1)
    assert tried == 3 * GUESSES_CEILING


def superscript(number: int) -> str:
    return str(number).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def test_the_docs_state_the_odds_the_limits_give():
    """docs/security.md's figures follow from the constants: change one, the text must follow."""
    codes = len(USER_CODE_ALPHABET) ** USER_CODE_LENGTH
    per_day = GUESSES_CEILING * 86400 // GUESSES_GLOBAL_WINDOW
    per_guess = 1000 / codes  # 1,000 live codes at any moment, as docs/security.md assumes
    per_day_odds = 1 - (1 - per_guess) ** per_day
    text = " ".join(SECURITY.read_text(encoding="utf-8").split())
    assert f"{GUESSES_PER_ADDRESS} per {GUESSES_PER_ADDRESS_WINDOW // 60} minutes" in text
    assert f"past {GUESSES_GLOBAL} per hour" in text and f"past {GUESSES_CEILING:,} per hour" in text
    assert f"{codes / 1e10:.2f} × 10¹⁰ codes" in text
    assert f"{per_day:,} failed guesses a day" in text
    for value, after in ((per_guess, ". The ceiling"), (per_day_odds, " per day")):
        mantissa, exponent = f"{value:.1e}".split("e")
        assert f"≈ {mantissa} × 10{superscript(int(exponent))}{after}" in text
    assert f"{DEVICE_CODES_PER_ADDRESS} per client address per {DEVICE_CODES_WINDOW // 60} minutes" in text


def test_spending_the_global_budget_is_logged_once(config, sqlite_store, clock, caplog):
    flow = DeviceFlow(config, sqlite_store, clock=clock)
    with caplog.at_level(logging.WARNING, logger="deviceflow.flow"):
        for i in range(GUESSES_GLOBAL + 20):
            with pytest.raises(PageError):
                flow.verification.find_pending("BBBB-BBBB", f"203.0.113.{i % 200}")
    assert [r.levelname for r in caplog.records] == ["WARNING"]


# --- POST /device/code


def test_device_codes_per_address_are_limited_with_retry_after(app):
    for _ in range(DEVICE_CODES_PER_ADDRESS):
        assert app.post("/device/code", {"client_id": "test-client"}).status_int == 200
    refused = app.post("/device/code", {"client_id": "test-client"}, status=429)
    assert refused.json["error"] == "too_many_requests" and refused.json["error_description"].isascii()
    assert int(refused.headers["Retry-After"]) == DEVICE_CODES_WINDOW
    assert refused.headers["Cache-Control"] == "no-store"
    assert app.post(
        "/device/code", {"client_id": "test-client"}, extra_environ={"REMOTE_ADDR": "192.0.2.77"}, status=200
    )


def test_device_code_budget_comes_back_after_its_window(app, clock):
    for _ in range(DEVICE_CODES_PER_ADDRESS):
        app.post("/device/code", {"client_id": "test-client"})
    app.post("/device/code", {"client_id": "test-client"}, status=429)
    clock.advance(DEVICE_CODES_WINDOW + 1)
    app.post("/device/code", {"client_id": "test-client"}, status=200)


def test_refused_requests_do_not_eat_the_device_code_budget(app):
    """Only requests that would create a flow count: a typo in client_id does not lock a home out."""
    for _ in range(2 * DEVICE_CODES_PER_ADDRESS):
        app.post("/device/code", {"client_id": "intruder"}, status=401)
    app.post("/device/code", {"client_id": "test-client"}, status=200)


# --- the client address the limits count


def echo_address(environ, start_response):
    """A WSGI app showing what the middleware leaves for the app behind it."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    seen = [environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]]
    seen += [name for name in environ if "FORWARDED" in name]
    return [" ".join(seen).encode()]


def through(trusted, peer, **headers):
    from deviceflow.config import load

    proxies = load({"CLIENT_ID": "c", "TRUSTED_PROXIES": trusted}, dotenv_path=None).trusted_proxies
    app = TestApp(ClientAddress(echo_address, proxies))
    return app.get("/", headers=headers, extra_environ={"REMOTE_ADDR": peer}).text.split()


def test_forwarded_headers_from_an_untrusted_peer_are_ignored_and_removed():
    assert through(
        "", "198.51.100.9", **{"X-Forwarded-For": "10.9.9.9", "X-Forwarded-Proto": "https", "Forwarded": "for=10.9.9.9"}
    ) == ["198.51.100.9", "http"]
    assert through("10.0.0.1", "198.51.100.9", **{"X-Forwarded-For": "10.9.9.9"}) == ["198.51.100.9", "http"]


def test_a_trusted_proxy_names_the_client():
    seen = through("10.0.0.1", "10.0.0.1", **{"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"})
    assert seen == ["203.0.113.5", "https"]


def test_through_a_chain_of_proxies_the_rightmost_untrusted_address_is_the_client():
    """The client's own X-Forwarded-For is kept by proxies, on the left: it is not believed."""
    seen = through("10.0.0.0/8", "10.0.0.2", **{"X-Forwarded-For": "1.2.3.4, 203.0.113.5, 10.0.0.1"})
    assert seen == ["203.0.113.5", "http"]
    only_proxies = through("10.0.0.0/8, 192.168.1.1", "10.0.0.2", **{"X-Forwarded-For": "192.168.1.1, 10.0.0.1"})
    assert only_proxies[0] == "192.168.1.1"


@pytest.mark.parametrize("forwarded", ["unknown", "203.0.113.5:4711", "1.2.3.4, garbage"])
def test_a_hop_that_is_not_an_address_is_not_believed(forwarded):
    assert through("10.0.0.1", "10.0.0.1", **{"X-Forwarded-For": forwarded})[0] == "10.0.0.1"


def test_a_guesser_rotating_x_forwarded_for_is_still_one_address(app):
    for i in range(GUESSES_PER_ADDRESS):
        wrong_guess(app, headers={"X-Forwarded-For": f"203.0.113.{i}"})
    assert wrong_guess(app, headers={"X-Forwarded-For": "203.0.113.200"}).status_int == 429


def test_behind_a_trusted_proxy_each_client_has_its_own_budget(make_web, make_config, caplog):
    app = make_web(make_config(TRUSTED_PROXIES="192.0.2.10"))  # the test peer is the proxy
    for _ in range(GUESSES_PER_ADDRESS):
        wrong_guess(app, headers={"X-Forwarded-For": "203.0.113.1"})
    assert wrong_guess(app, headers={"X-Forwarded-For": "203.0.113.1"}).status_int == 429
    with caplog.at_level(logging.INFO, logger="deviceflow.access"):
        assert wrong_guess(app, headers={"X-Forwarded-For": "203.0.113.2"}).status_int == 400
    assert re.search(r"^203\.0\.113\.2 GET /device 400", caplog.messages[-1])
