"""Bad requests: refused with 400 JSON on device routes and a readable page on
browser routes, never a 500; protective headers on every page; cookie flags."""

import io
from urllib.parse import parse_qsl
from wsgiref.util import setup_testing_defaults

import pytest
from helpers import DEVICE_GRANT, confirm, get_code
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webtest import TestApp

from deviceflow.errors import InvalidRequest, StoreUnavailable
from deviceflow.forms import parse_pairs

FORM = "application/x-www-form-urlencoded"
BAD_BODIES = [
    pytest.param("client_id=test-client", "application/json", id="json content type"),
    pytest.param("client_id=test-client", "multipart/form-data; boundary=x", id="multipart"),
    pytest.param("client_id=test-client", "text/plain", id="text/plain"),
    pytest.param("client_id=test-client&client_id=test-client", FORM, id="repeated parameter"),
    pytest.param(
        "client_id=test-client&" + "&".join(f"p{i}=abcdefgh" for i in range(6000)),
        FORM,
        id="body over 64 KiB of short values",
    ),
    pytest.param("client_id=test-client&scope=" + "a" * 4097, FORM, id="value over 4096"),
    pytest.param("client_id=test-client&" + "n" * 300 + "=1", FORM, id="name over 256"),
    pytest.param("client_id=%ff%fe", FORM, id="not UTF-8 escaped"),
    pytest.param(b"client_id=\xff\xfe", FORM, id="not UTF-8 raw"),
    pytest.param("client_id=test-client%00", FORM, id="NUL"),
    pytest.param("client_id=test-client%0d%0aSet-Cookie:%20x=y", FORM, id="CR LF"),
    pytest.param("client_id=test-client%0a", FORM, id="LF"),
]


def assert_readable_page(page, status):
    assert page.status_int == status
    assert page.content_type == "text/html"
    assert page.html.find(id="error") is not None
    assert "Traceback" not in page.text


def assert_json_error(response, status, error="invalid_request"):
    assert response.status_int == status
    assert response.content_type == "application/json"
    assert response.json["error"] == error
    assert response.json["error_description"].isascii()
    assert response.headers["Cache-Control"] == "no-store"


# --- device routes: 400 JSON


@pytest.mark.parametrize("path", ["/device/code", "/device/token"])
@pytest.mark.parametrize("body, content_type", BAD_BODIES)
def test_bad_device_bodies_are_400_json(app, path, body, content_type):
    response = app.post(path, body, content_type=content_type, expect_errors=True)
    assert_json_error(response, 400)


def test_a_bad_device_request_does_not_start_a_flow(app, sqlite_store):
    app.post("/device/code", "client_id=test-client&client_id=domoticz", content_type=FORM, status=400)
    assert sqlite_store.count("flow") == 0


def test_a_non_numeric_content_length_is_400_json(app):
    response = app.app  # the raw WSGI app: WebTest's own checks refuse such a header
    raw = TestApp(response, lint=False)
    answer = raw.post(
        "/device/token", "grant_type=x", content_type=FORM, headers={"Content-Length": "12x"}, expect_errors=True
    )
    assert_json_error(answer, 400)


@pytest.mark.parametrize("path", ["/device/%ff", "/data/proxy/%c3%28"])
def test_a_path_that_is_not_utf8_is_json_on_device_paths(app, path):
    response = app.get(path, expect_errors=True)
    assert response.status_int in (400, 404) and response.content_type == "application/json"


# --- browser routes: a readable page with 400


@pytest.mark.parametrize("body, content_type", BAD_BODIES)
def test_bad_browser_bodies_are_a_readable_400_page(app, body, content_type):
    body = body.replace("client_id", "user_code") if isinstance(body, str) else body
    for path in ("/device", "/auth/verify_code"):
        assert_readable_page(app.post(path, body, content_type=content_type, expect_errors=True), 400)


@pytest.mark.parametrize(
    "query",
    [
        "code=BBBB-BBBB&code=CCCC-CCCC",
        "code=%ff%fe",
        "code=BBBB%00",
        "code=BBBB%0d%0a",
        "code=" + "B" * 5000,
    ],
)
def test_bad_verification_links_are_a_readable_400_page(app, query):
    assert_readable_page(app.get(f"/device?{query}", expect_errors=True), 400)


@pytest.mark.parametrize(
    "query",
    [
        "state={state}&state={state}&usage_point_id=11111111111111",
        "state={state}&usage_point_id=11111111111111%00",
        "state={state}&usage_point_id=%ff",
        "state={state}&error=access_denied&error_description=" + "x" * 5000,
    ],
)
def test_bad_returns_from_enedis_are_a_readable_400_page(app, query):
    code = get_code(app)
    state = confirm(app, code["user_code"])["state"]
    assert_readable_page(app.get("/auth/redirect?" + query.format(state=state), expect_errors=True), 400)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Cookie": "a<b=c; deviceflow_lang=en"}, id="illegal cookie name"),
        pytest.param({"Cookie": 'deviceflow_browser="\\'}, id="unterminated quoted cookie"),
        pytest.param({"Accept-Language": "é" * 3000 + ";q=x,,;;q=1e999"}, id="absurd Accept-Language"),
        pytest.param({"User-Agent": "\xff\xfe/1.0"}, id="User-Agent not UTF-8"),
    ],
)
def test_odd_headers_never_break_a_page_or_a_device_route(app, headers):
    raw = TestApp(app.app, extra_environ={"REMOTE_ADDR": "192.0.2.10"}, lint=False)
    code = raw.post("/device/code", {"client_id": "test-client"}, headers=headers)
    assert code.status_int == 200
    page = raw.get(f"/device?code={code.json['user_code']}", headers=headers)
    assert page.status_int == 200 and page.forms[0]["csrf"].value


def test_a_mangled_cookie_keeps_the_legal_ones(app):
    """A stray illegal cookie from another site on the same host must not cost the person his language."""
    raw = TestApp(app.app, lint=False)
    page = raw.get("/device", headers={"Cookie": "a<b=c; deviceflow_lang=en"})
    assert page.html.find("html")["lang"] == "en"


# --- faults in browser routes


def store_down(store, monkeypatch):
    def down(*args, **kwargs):
        raise StoreUnavailable("down")

    for method in ("get", "get_many", "put", "add", "take", "update_if", "incr", "delete", "count", "scan", "ping"):
        monkeypatch.setattr(store, method, down)


@pytest.mark.parametrize("step", ["open the link", "press continue", "come back from Enedis"])
def test_store_down_during_a_browser_route_is_a_503_page_not_a_500(app, sqlite_store, monkeypatch, step):
    code = get_code(app)
    page = app.get(f"/device?code={code['user_code']}")
    csrf = page.forms[0]["csrf"].value
    state = confirm(app, code["user_code"])["state"]
    store_down(sqlite_store, monkeypatch)
    if step == "open the link":
        page = app.get(f"/device?code={code['user_code']}", expect_errors=True)
    elif step == "press continue":
        page = app.post("/device", {"user_code": code["user_code"], "csrf": csrf}, expect_errors=True)
    else:
        page = app.get("/auth/redirect", {"state": state, "usage_point_id": "11111111111111"}, expect_errors=True)
    assert_readable_page(page, 503)
    assert "Location" not in page.headers


# --- what every page carries


@pytest.mark.parametrize(
    "path, status",
    [
        ("/", 200),
        ("/device", 200),
        ("/device?code=BBBB-BBBB", 400),
        ("/nothing", 404),
        ("/auth/redirect", 400),
    ],
)
def test_every_page_sends_protective_headers(app, path, status):
    page = app.get(path, status=status)
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_cookies_are_secure_when_base_url_is_https(make_web, make_config):
    app = make_web(make_config(BASE_URL="https://proxy.example.org"))
    code = get_code(app)
    page = app.get(f"/device?code={code['user_code']}&lang=en")
    cookies = page.headers.getall("Set-Cookie")
    assert len(cookies) == 2
    for cookie in cookies:
        flags = [flag.strip().lower() for flag in cookie.split(";")]
        assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags


def test_cookies_are_not_secure_on_plain_http(app):
    """A home instance on http://homeassistant.local:8080 would never get its cookie back otherwise."""
    code = get_code(app)
    cookie = app.get(f"/device?code={code['user_code']}").headers["Set-Cookie"].lower()
    assert "secure" not in cookie and "httponly" in cookie


# --- no input at all gives a 500


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST"]),
    path=st.sampled_from(
        [
            "/device/code",
            "/device/token",
            "/device/proxy",
            "/device",
            "/auth/verify_code",
            "/auth/redirect",
            "/auth/redirect/x",
            "/",
            "/healthz",
            "/data/proxy/x",
        ]
    ),
    query=st.binary(max_size=200),
    body=st.binary(max_size=300),
    content_type=st.sampled_from([FORM, "application/json", "", f"{FORM}; charset=latin-1", "x/\x00"]),
    cookie=st.binary(max_size=80),
    agent=st.binary(max_size=40),
)
def test_random_bytes_never_give_a_500(app, method, path, query, body, content_type, cookie, agent):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query.decode("latin-1"),
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_COOKIE": cookie.decode("latin-1"),
        "HTTP_USER_AGENT": agent.decode("latin-1"),
        "REMOTE_ADDR": "192.0.2.10",
    }
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=int(status.split()[0]), headers=dict(headers))

    b"".join(app.app(environ, start_response))
    assert answer["status"] < 500
    device = path.startswith(("/device/", "/data/", "/healthz"))
    assert answer["headers"]["Content-Type"].startswith("application/json" if device else "text/html")


def test_a_live_server_refuses_huge_bodies_before_reading_them(live_server):
    import requests

    base = live_server()
    over_app_limit = requests.post(
        f"{base}/device/token", data={"grant_type": DEVICE_GRANT, "x": "a" * 100_000}, timeout=10
    )
    assert over_app_limit.status_code == 400 and over_app_limit.json()["error"] == "invalid_request"
    huge = requests.post(
        f"{base}/device/token", data=b"a" * (2 * 1024 * 1024), timeout=10, headers={"Content-Type": FORM}
    )
    assert huge.status_code == 413


@given(
    st.lists(
        st.sampled_from(["a", "b", "=", "&", "+", " ", "%", "%20", "%2B", "%26", "%3D", "%C3%A9", "é", "%e9", "%zz"])
    )
)
@settings(max_examples=400)
def test_forms_read_as_the_standard_library_reads_them(pieces):
    # A form the proxy accepts means what urllib.parse.parse_qsl says it means; anything it refuses, it
    # refuses for a reason of its own (a repeated name, bytes that are not UTF-8).
    text = "".join(pieces)
    try:
        expected = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        expected = None
    try:
        read = parse_pairs(text, "body")
    except InvalidRequest:
        read = None
    if expected is not None and len({name for name, _ in expected}) == len(expected):
        assert read == dict(expected)
    else:
        assert read is None
