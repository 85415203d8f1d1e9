"""Every upstream answer is untrusted input (issue 16, findings 4 and 5), each
test written as the attack: JSON nested 100,000 deep, error lists without a
description, `Retry-After: ²`, answers of the wrong types, a 20 MB answer, a
body or headers dripping past the deadline, upstream's `text/html`. Devices
get JSON (502 `upstream_error`, 504 `upstream_timeout`, never a 500), people a
page, and `auto` asks v5 instead. Enedis is `responses`, or a small HTTP
server on 127.0.0.1 where real sockets matter (the deadline)."""

import gzip
import json
import socket
import threading
import time

import pytest
import responses
from helpers import PRM1, confirm, get_code, poll, tokens_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deviceflow import translate
from deviceflow.enedis import EnedisClient
from deviceflow.errors import UpstreamBadAnswer
from deviceflow.upstream import MAX_ANSWER_BYTES, MAX_JSON_DEPTH, answer_deadline, parse_json

ENEDIS = "https://gw.ext.prod.api.enedis.fr"
TOKEN_V3 = f"{ENEDIS}/oauth2/v3/token"
SUBSCRIBED = f"{ENEDIS}/subscribed_services/v1"
LOAD_CURVE = translate.CONSUMPTION_LOAD_CURVE
LOAD_CURVE_V5 = f"{ENEDIS}/{LOAD_CURVE}"
LOAD_CURVE_2026 = f"{ENEDIS}/mesure_synchrone_auto/v2/courbe_de_charge_consommation"
PASSTHROUGH_TOKEN = "https://oauth.example.org/token"
WEEK = {"start": "2026-09-22", "end": "2026-09-29"}
V5_ANSWER = {
    "meter_reading": {
        "usage_point_id": PRM1,
        "start": WEEK["start"],
        "end": WEEK["end"],
        "interval_reading": [{"value": "4078", "date": "2026-09-22 00:30:00"}],
    }
}
# What the Python json module cannot parse without running out of stack.
NESTED = b"[" * 100_000 + b"]" * 100_000
NESTED_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
# Parses, but deeper than any Enedis answer: every later step would walk it recursively.
DEEP_FAULT = b'{"fault": ' * 900 + b'{"code": "900800"}' + b"}" * 900
JSON = "application/json"


def is_upstream_error(response, status=502, error="upstream_error"):
    assert response.status_int == status, response.text
    assert response.json["error"] == error and response.json["error_description"].isascii()
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    return True


def is_page(response, status):
    assert response.status_int == status, response.text
    assert response.content_type == "text/html" and response.html.find(id="error") is not None
    return True


@pytest.fixture
def proxy_in(make_web, make_config, sqlite_store, clock):
    """The proxy in an ENEDIS_API_MODE, its Enedis client on `responses`."""

    def make(mode, **env):
        config = make_config(ENEDIS_API_MODE=mode, **env)
        return make_web(config, upstream=EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance))

    return make


@pytest.fixture
def enedis(enedis_mock):
    enedis_mock.add(responses.POST, TOKEN_V3, json={"access_token": "enedis-token", "expires_in": 12600})
    return enedis_mock


def fetch(app, token, path=LOAD_CURVE):
    return app.get(
        f"/data/proxy/{path}",
        {"usage_point_id": PRM1, **WEEK},
        headers={"Authorization": f"Bearer {token}"},
        expect_errors=True,
    )


def asked(mock, url):
    return [call for call in mock.calls if call.request.url.split("?")[0] == url]


# --- finding 4: deeply nested JSON, in every place an answer is read


@pytest.mark.parametrize("body", [NESTED, NESTED_OBJECT, DEEP_FAULT], ids=["array", "object", "900 faults"])
@pytest.mark.parametrize("mode", ["legacy", "new"])
def test_nested_json_from_enedis_is_a_502_in_every_mode(proxy_in, enedis, mode, body):
    app = proxy_in(mode)
    token = tokens_for(app)["access_token"]
    enedis.add(responses.GET, LOAD_CURVE_V5 if mode == "legacy" else LOAD_CURVE_2026, body=body, content_type=JSON)
    assert is_upstream_error(fetch(app, token))


def test_nested_json_error_from_enedis_keeps_its_status_as_an_upstream_error(proxy_in, enedis):
    app = proxy_in("new")
    token = tokens_for(app)["access_token"]
    enedis.add(responses.GET, LOAD_CURVE_2026, status=500, body=DEEP_FAULT, content_type=JSON)
    assert is_upstream_error(fetch(app, token), status=500)


@pytest.mark.parametrize("body", [NESTED, DEEP_FAULT], ids=["100000 deep", "900 faults"])
def test_auto_asks_v5_when_the_2026_answer_is_nested_too_deep(proxy_in, enedis, body):
    app = proxy_in("auto")
    token = tokens_for(app)["access_token"]
    enedis.add(responses.GET, LOAD_CURVE_2026, status=200, body=body, content_type=JSON)
    enedis.add(responses.GET, LOAD_CURVE_V5, json=V5_ANSWER)
    answer = fetch(app, token)
    assert answer.status_int == 200 and answer.json == V5_ANSWER
    assert answer.headers["X-Enedis-Proxy-Source"] == "legacy"


def test_nested_json_from_the_enedis_token_endpoint_is_a_502(proxy_in, enedis_mock):
    app = proxy_in("legacy")
    token = tokens_for(app)["access_token"]
    enedis_mock.add(responses.POST, TOKEN_V3, body=NESTED_OBJECT, content_type=JSON)
    assert is_upstream_error(fetch(app, token))
    assert not asked(enedis_mock, LOAD_CURVE_V5)


def test_nested_json_from_subscribed_services_is_a_page_and_the_person_may_reload(proxy_in, enedis):
    app = proxy_in("auto", ENEDIS_AUTHORIZE_VERSION="v2")
    enedis.add(responses.POST, SUBSCRIBED, body=NESTED_OBJECT, content_type=JSON)
    code = get_code(app)
    state = confirm(app, code["user_code"])["state"]
    page = app.get("/auth/redirect", {"state": state, "autorisation_id": "123456789"}, expect_errors=True)
    assert is_page(page, 502)
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"


@pytest.fixture
def device_app(make_web, make_config):
    """FLOW=DEVICE without CLIENT_SECRET: the device lends its own."""
    return make_web(make_config(FLOW="DEVICE", TOKEN_ENDPOINT=PASSTHROUGH_TOKEN, CLIENT_SECRET=None))


def test_nested_json_from_the_code_exchange_denies_the_flow_and_forgets_the_lent_secret(
    device_app, enedis_mock, sqlite_store
):
    enedis_mock.add(responses.POST, PASSTHROUGH_TOKEN, body=NESTED_OBJECT, content_type=JSON)
    code = get_code(device_app, client_secret="lent-secret-value")
    state = confirm(device_app, code["user_code"])["state"]
    # A lent secret is opened only with the device code: the exchange runs at the device's next poll.
    assert device_app.get("/auth/redirect", {"state": state, "code": "c"}).status_int == 200
    assert poll(device_app, code["device_code"]).json["error"] == "access_denied"
    assert all(record.get("client_secret") is None for _, record in sqlite_store.scan("flow"))
    assert list(sqlite_store.scan("lent")) == []


@pytest.mark.parametrize("content_type", [JSON, "text/html"])
def test_nested_json_on_device_proxy_is_a_502(device_app, enedis_mock, content_type):
    enedis_mock.add(responses.POST, PASSTHROUGH_TOKEN, body=NESTED, content_type=content_type)
    reply = device_app.post(
        "/device/proxy",
        {"grant_type": "refresh_token", "client_id": "test-client", "refresh_token": "r", "client_secret": "s"},
        expect_errors=True,
    )
    assert is_upstream_error(reply)


# --- finding 4: error lists without a description, Retry-After: ², wrong types

MISSING_DESCRIPTIONS = [
    [{"error": "E1"}],
    [{"error": "E1"}, {"code": "E2", "message": "Date invalide"}],
    {"error": "E1", "error_description": {"nested": True}},
]


@pytest.mark.parametrize("body", MISSING_DESCRIPTIONS)
def test_an_error_without_description_keeps_its_status_in_new_mode(proxy_in, enedis, body):
    app = proxy_in("new")
    token = tokens_for(app)["access_token"]
    enedis.add(responses.GET, LOAD_CURVE_2026, status=400, json=body)
    answer = fetch(app, token)
    assert answer.status_int == 400 and answer.json["error"] == "E1"
    assert isinstance(answer.json["error_description"], str)


@pytest.mark.parametrize("body", MISSING_DESCRIPTIONS)
def test_auto_asks_v5_after_an_error_without_description(proxy_in, enedis, body):
    app = proxy_in("auto")
    token = tokens_for(app)["access_token"]
    enedis.add(responses.GET, LOAD_CURVE_2026, status=500, json=body)
    enedis.add(responses.GET, LOAD_CURVE_V5, json=V5_ANSWER)
    answer = fetch(app, token)
    assert answer.status_int == 200 and answer.headers["X-Enedis-Proxy-Source"] == "legacy"


@pytest.mark.parametrize("mode, url", [("legacy", LOAD_CURVE_V5), ("new", LOAD_CURVE_2026)])
@pytest.mark.parametrize("retry_after", ["²", "١٢", "12.5", "-5", "99999999999999999999"])
def test_an_enedis_429_with_an_odd_retry_after_is_a_429(proxy_in, enedis, mode, url, retry_after):
    app = proxy_in(mode)
    token = tokens_for(app)["access_token"]
    enedis.add(
        responses.GET, url, status=429, json={"error": "too_many_requests"}, headers={"Retry-After": retry_after}
    )
    answer = fetch(app, token)
    assert answer.status_int == 429
    assert 1 <= int(answer.headers["Retry-After"]) <= 86400


def test_a_429_from_the_token_endpoint_with_retry_after_superscript_is_a_429(proxy_in, enedis_mock):
    app = proxy_in("legacy")
    token = tokens_for(app)["access_token"]
    enedis_mock.add(responses.POST, TOKEN_V3, status=429, body="busy", headers={"Retry-After": "²"})
    answer = fetch(app, token)
    assert answer.status_int == 429 and answer.headers["Retry-After"] == "60"


def test_wrong_types_at_every_level_give_v5_text_or_nothing(proxy_in, enedis):
    """A v5 client reads text where v5 had text: a list, an object or a number from
    Enedis never reaches it in their place, nor an error's extra fields."""
    app = proxy_in("new")
    token = tokens_for(app)["access_token"]
    odd = {
        "idPrm": ["x"],
        "etapeMetier": {"x": 1},
        "periode": {"dateDebut": 7, "dateFin": None},
        "grandeur": [
            {
                "grandeurMetier": "CONS",
                "grandeurPhysique": "PA",
                "unite": {"W": True},
                "points": [
                    {"v": "10", "d": "2026-09-22 00:30:00", "p": ["PT30M"], "n": 3},
                    {"v": ["1"], "d": "2026-09-22 01:00:00"},
                    "x",
                    None,
                    5,
                ],
            }
        ],
    }
    enedis.add(responses.GET, LOAD_CURVE_2026, json=odd)
    reading = fetch(app, token).json["meter_reading"]
    assert reading["usage_point_id"] == PRM1 and reading["quality"] == "BRUT"
    assert (reading["start"], reading["end"]) == (WEEK["start"], WEEK["end"])
    assert reading["reading_type"]["unit"] == "W"
    assert reading["interval_reading"] == [{"value": "10", "date": "2026-09-22 00:30:00"}]

    enedis.replace(
        responses.GET,
        LOAD_CURVE_2026,
        status=400,
        json={"error": "E1", "error_description": "bad", "detail": {"nested": [1, 2]}},
    )
    assert fetch(app, token).json == {"error": "E1", "error_description": "bad"}


# Names the translation reads, so that random answers reach every branch of it.
NAMES = st.sampled_from(
    [
        "grandeur",
        "points",
        "v",
        "d",
        "p",
        "n",
        "unite",
        "grandeurMetier",
        "grandeurPhysique",
        "CONS",
        "PA",
        "EA",
        "PMA",
        "idPrm",
        "periode",
        "dateDebut",
        "dateFin",
        "pas",
        "etapeMetier",
        "contracts",
        "contract_type",
        "subscribed_power",
        "value",
        "unit",
        "segment",
        "person",
        "customer",
        "organization",
        "contact_data",
        "landline",
        "phone",
        "email",
        "address",
        "postal_code_city",
        "error",
        "error_description",
        "error_uri",
        "code",
        "message",
        "fault",
        "relais",
        "plageHeuresCreuses",
        "dispositifComptage",
        "typeComptage",
        "consumption_last_activation_date",
        "x",
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5) | NAMES
ANSWERS = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=5), max_leaves=30
)


def leaves(value):
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [leaf for item in value for leaf in leaves(item)]
    return [value]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(sorted(translate._MEASURES) + sorted(translate._CUSTOMERS)),
    st.sampled_from([200, 400, 404, 429, 500]),
    ANSWERS,
    ANSWERS,
    ANSWERS,
)
def test_translate_takes_wrong_types_at_every_level(path, status, first, synth, comptage):
    """Whatever JSON Enedis sends (once parse_json let it through), the
    translation answers text where v5 had text, and never raises."""
    params = {"usage_point_id": PRM1, **WEEK}
    v5_status, body = translate.to_v5(path, params, [(status, first), (200, synth), (200, comptage)])
    assert isinstance(v5_status, int) and all(isinstance(leaf, str) for leaf in leaves(body))
    translate.should_fall_back(v5_status, json.dumps(body, allow_nan=False))


@pytest.mark.parametrize(
    "body",
    [
        b'{"meter_reading": NaN}',
        b'{"meter_reading": {"value": 1e999}}',
        b'{"meter_reading": Infinity}',
        '{"v": "\u00e9"}'.encode("utf-16"),
    ],
)
def test_json_that_is_not_strict_json_is_not_relayed(proxy_in, enedis, body):
    app = proxy_in("legacy")
    token = tokens_for(app)["access_token"]
    enedis.add(responses.GET, LOAD_CURVE_V5, body=body, content_type=JSON)
    assert is_upstream_error(fetch(app, token))


def test_parse_json_bounds_the_depth():
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(UpstreamBadAnswer):
        parse_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))


# --- finding 5: the size of an answer

TWENTY_MB = 20 * 1024 * 1024


def huge_v5_answer(size=TWENTY_MB):
    point = b'{"value": "4078", "date": "2026-09-22 00:30:00", "interval_length": "PT30M"},'
    points = point * (size // len(point))
    return (
        b'{"meter_reading": {"usage_point_id": "' + PRM1.encode() + b'", "interval_reading": [' + points[:-1] + b"]}}"
    )


def huge_2026_answer(size=TWENTY_MB):
    point = b'{"v": "4078", "d": "2026-09-22 00:30:00", "p": "PT30M", "n": "B"},'
    points = point * (size // len(point))
    return (
        b'{"idPrm": "' + PRM1.encode() + b'", "grandeur": [{"grandeurMetier": "CONS", "grandeurPhysique": "PA", '
        b'"points": [' + points[:-1] + b"]}]}"
    )


@pytest.mark.parametrize(
    "mode, url, body", [("legacy", LOAD_CURVE_V5, huge_v5_answer), ("new", LOAD_CURVE_2026, huge_2026_answer)]
)
@pytest.mark.parametrize("how", ["content-length", "no length", "gzip"])
def test_a_20_mb_answer_is_refused(proxy_in, enedis, mode, url, body, how):
    app = proxy_in(mode)
    token = tokens_for(app)["access_token"]
    payload = body()
    if how == "content-length":  # refused before it is read
        enedis.add(responses.GET, url, body=payload, content_type=JSON, auto_calculate_content_length=True)
    elif how == "no length":  # read up to the cap
        enedis.add(responses.GET, url, body=payload, content_type=JSON)
    else:  # 20 MB behind a few kB on the wire
        enedis.add(
            responses.GET, url, body=gzip.compress(payload), content_type=JSON, headers={"Content-Encoding": "gzip"}
        )
    assert is_upstream_error(fetch(app, token))


def test_a_year_of_load_curve_fits_well_under_the_cap():
    import datetime as dt

    from deviceflow.simulator import curve_points

    points = list(curve_points(PRM1, dt.date(2025, 9, 29), dt.date(2026, 9, 29), "CONS"))
    year = json.dumps(
        {
            "idPrm": PRM1,
            "grandeur": [
                {"points": [{"v": str(v), "d": d, "p": "PT30M", "n": "B", "iv": "0", "ec": "0"} for d, v in points]}
            ],
        },
        indent=2,
    )
    assert len(points) == 17520 and len(year) * 1.25 < MAX_ANSWER_BYTES


# --- finding 5: the content type devices get


@pytest.mark.parametrize("status", [200, 404])
def test_upstream_text_html_is_never_relayed_on_data_proxy(proxy_in, enedis, status):
    app = proxy_in("legacy")
    token = tokens_for(app)["access_token"]
    enedis.add(responses.GET, LOAD_CURVE_V5, status=status, body=json.dumps(V5_ANSWER), content_type="text/html")
    answer = fetch(app, token)
    assert answer.status_int == status and answer.json == V5_ANSWER
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_upstream_text_html_is_never_relayed_on_device_proxy(device_app, enedis_mock):
    body = b'{"access_token": "<script>alert(1)</script>", "refresh_token": "r2"}'
    enedis_mock.add(responses.POST, PASSTHROUGH_TOKEN, body=body, content_type="text/html")
    reply = device_app.post(
        "/device/proxy",
        {"grant_type": "refresh_token", "client_id": "test-client", "refresh_token": "r", "client_secret": "s"},
        expect_errors=True,
    )
    assert reply.status_int == 200 and reply.body == body
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


# --- finding 5: the deadline, against a real socket


class Dripping:
    """An upstream on 127.0.0.1 that answers the token quickly, and a data call
    with headers, then a body, one byte every `pause` seconds for `seconds`."""

    def __init__(self, where="body", pause=0.1, seconds=6.0):
        self.where, self.pause, self.seconds = where, pause, seconds
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            try:
                if request.startswith(b"POST"):
                    body = json.dumps({"access_token": "t", "expires_in": 12600}).encode()
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                        b"\r\n%s" % (len(body), body)
                    )
                    return
                body = json.dumps(V5_ANSWER).encode() + b" " * 200
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
                head += b"X-Padding: " + b"x" * 200 + b"\r\n\r\n"
                if self.where == "body":
                    conn.sendall(head)
                    self._drip(conn, body)
                else:
                    self._drip(conn, head)
                    conn.sendall(body)
            except OSError:
                pass  # the proxy hung up: what it should do

    def _drip(self, conn, data):
        """A byte at a time for `seconds`, then the rest at once."""
        end, sent = time.monotonic() + self.seconds, 0
        while sent < len(data) and time.monotonic() < end:
            conn.sendall(data[sent : sent + 1])
            sent += 1
            time.sleep(self.pause)
        conn.sendall(data[sent:])

    def close(self):
        self.closed.set()
        self.listener.close()


@pytest.mark.parametrize("where", ["body", "headers"])
def test_an_upstream_dripping_past_the_deadline_is_a_504(make_web, make_config, sqlite_store, clock, where):
    dripping = Dripping(where)
    try:
        base = f"http://127.0.0.1:{dripping.port}"
        config = make_config(
            ENEDIS_API_MODE="legacy",
            DATA_ENDPOINT=base,
            TOKEN_ENDPOINT_V3=f"{base}/oauth2/v3/token",
            UPSTREAM_CONNECT_TIMEOUT="0.5",
            UPSTREAM_READ_TIMEOUT="0.5",
        )
        app = make_web(config, upstream=EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance))
        token = tokens_for(app)["access_token"]
        started = time.monotonic()
        answer = fetch(app, token)
        took = time.monotonic() - started
    finally:
        dripping.close()
    # Each byte comes well within the read timeout: only the deadline stops it.
    assert answer_deadline(config) == 1.5
    assert is_upstream_error(answer, status=504, error="upstream_timeout")
    assert took < answer_deadline(config) + 1.0


def test_the_frameworks_own_errors_on_device_paths_are_json_with_nosniff(app):
    for response in (app.get("/data/unknown", expect_errors=True), app.put("/device/token", expect_errors=True)):
        assert response.status_int in (404, 405) and response.json["error"]
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
