"""Faults: the store unreachable (SQLite locked by another process, a MongoDB
client that raises), Enedis down, slow or answering garbage, and a server
process killed with SIGKILL in the middle of traffic. Devices get JSON (503,
502, 504), people get a page, the server recovers by itself, and no token
already delivered is lost."""

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import requests
import responses
from helpers import DEVICE_GRANT, PRM1, confirm, consent, get_code, poll, refresh, tokens_for
from pymongo.errors import AutoReconnect
from test_e2e import PRM, consent_in_browser, device_post
from test_e2e_data_proxy import device_tokens, simulator
from test_e2e_data_proxy import fetch as live_fetch

from deviceflow.config import KNOWN_NAMES
from deviceflow.enedis import EnedisClient
from deviceflow.store import SQLiteStore

TOKEN_V3 = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"
DATA_URL = f"https://gw.ext.prod.api.enedis.fr/{LOAD_CURVE}"
SUBSCRIBED = "https://gw.ext.prod.api.enedis.fr/subscribed_services/v1"
TOKEN_ENDPOINT = "https://oauth.example.org/token"
TRUNCATED = '{"meter_reading": {"usage_point_id": "11111111111111", "interval_reading": [{"va'


def assert_unavailable(response):
    assert response.status_int == 503, response.text
    assert response.json == {
        "error": "temporarily_unavailable",
        "error_description": "the store is not available, retry later",
    }
    assert response.headers["Cache-Control"] == "no-store"


def assert_page(response, status):
    assert response.status_int == status
    assert response.content_type == "text/html" and response.html.find(id="error") is not None


# --- the store

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


@contextmanager
def locked_by_another_process(path):
    """Another process holds the SQLite write lock (a stuck operator tool, a backup)."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert locker.stdout.readline().strip() == "locked"
        yield
    finally:
        locker.communicate("\n", timeout=10)


def test_sqlite_locked_by_another_process_is_503_then_recovers(make_web, config, tmp_path, clock):
    path = tmp_path / "locked.sqlite3"
    store = SQLiteStore(str(path), clock=clock, busy_timeout=0.2)
    app = make_web(config, store)
    code = get_code(app)
    page = app.get(f"/device?code={code['user_code']}")
    with locked_by_another_process(path):
        assert_unavailable(app.post("/device/code", {"client_id": "test-client"}, expect_errors=True))
        # A pending poll writes nothing (its polls are counted in memory): reading is enough.
        assert poll(app, code["device_code"]).json["error"] == "authorization_pending"
        assert_page(page.forms[0].submit(expect_errors=True), 503)
        assert app.get("/healthz").json["status"] == "ok"  # reading still works (WAL): no alarm for a lock
    # No restart: the same app, the same store object.
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"
    assert consent(app, code["user_code"]).status_int == 200
    assert poll(app, code["device_code"]).status_int == 200


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_a_store_unusable_at_start_is_one_line_and_exit_1(tmp_path, where):
    blocker = tmp_path / "blocker"
    blocker.mkdir() if where == "a directory" else blocker.write_text("")
    path = blocker if where == "a directory" else blocker / "store.sqlite3"
    env = {k: v for k, v in os.environ.items() if k not in KNOWN_NAMES}
    started = subprocess.run(
        [sys.executable, "-m", "deviceflow", "serve", "--port", "1"],
        cwd=tmp_path,
        env={**env, "CLIENT_ID": "x", "SQLITE_PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 1 and "Traceback" not in started.stderr
    assert (
        started.stderr.strip().splitlines()[-1].startswith(f"deviceflow: the sqlite store at {path} is not available (")
    )


class Outage:
    """A MongoDB collection whose client raises while `down`, as pymongo does when the server goes away."""

    def __init__(self, collection):
        self.collection = collection
        self.down = False

    def __getattr__(self, name):
        attribute = getattr(self.collection, name)
        if not self.down or not callable(attribute):
            return attribute

        def fail(*args, **kwargs):
            raise AutoReconnect("connection reset by peer")

        return fail


def test_mongodb_raising_is_503_everywhere_then_recovers(make_web, config, mongo_store):
    app = make_web(config, mongo_store)
    outage = mongo_store.col = Outage(mongo_store.col)
    code = get_code(app)
    tokens = tokens_for(app)
    outage.down = True
    assert_unavailable(app.post("/device/code", {"client_id": "test-client"}, expect_errors=True))
    assert_unavailable(poll(app, code["device_code"]))
    assert_unavailable(refresh(app, tokens["refresh_token"]))
    assert app.get("/healthz", status=503).json["status"] == "unavailable"
    assert_page(app.get(f"/device?code={code['user_code']}", expect_errors=True), 503)
    outage.down = False
    assert app.get("/healthz").json["status"] == "ok"
    assert refresh(app, tokens["refresh_token"]).status_int == 200
    assert consent(app, code["user_code"]).status_int == 200
    assert poll(app, code["device_code"]).status_int == 200


# --- Enedis, in-process (responses)


@pytest.fixture
def proxy(make_web, make_config, sqlite_store, clock):
    config = make_config(ENEDIS_API_MODE="legacy")  # v5 forwarded as is: the calls mocked here
    return make_web(config, upstream=EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance))


def data(app, token):
    return app.get(
        f"/data/proxy/{LOAD_CURVE}",
        {"usage_point_id": PRM1, "start": "2026-09-01", "end": "2026-09-08"},
        headers={"Authorization": f"Bearer {token}"},
        expect_errors=True,
    )


@pytest.mark.parametrize(
    "token, answer, status",
    [
        pytest.param(
            {"json": {"access_token": "t", "expires_in": 600}},
            {"status": 200, "body": TRUNCATED, "content_type": "application/json"},
            502,
            id="truncated data",
        ),
        pytest.param(
            {"json": {"access_token": "t", "expires_in": 600}},
            {"status": 200, "body": "<html>maintenance</html>", "content_type": "text/html"},
            502,
            id="HTML data",
        ),
        pytest.param(
            {"status": 200, "body": '{"access_token": "t", "expi', "content_type": "application/json"},
            None,
            502,
            id="truncated token",
        ),
        pytest.param(
            {"status": 502, "body": "<html>Bad gateway</html>", "content_type": "text/html"}, None, 502, id="HTML token"
        ),
        pytest.param({"body": requests.ConnectionError("refused")}, None, 502, id="token endpoint down"),
        pytest.param({"body": requests.ReadTimeout("slow")}, None, 504, id="token endpoint slow"),
    ],
)
def test_enedis_answering_garbage_is_json_for_the_device(proxy, enedis_mock, token, answer, status):
    device_token = tokens_for(proxy)["access_token"]
    enedis_mock.add(responses.POST, TOKEN_V3, **token)
    if answer:
        enedis_mock.add(responses.GET, DATA_URL, **answer)
    response = data(proxy, device_token)
    assert response.status_int == status and response.content_type == "application/json"
    assert response.json["error"] in ("upstream_error", "upstream_unreachable", "upstream_timeout")
    assert response.json["error_description"].isascii() and "html" not in response.text
    assert response.headers["Cache-Control"] == "no-store"


def test_the_next_data_call_works_once_enedis_is_back(proxy, enedis_mock):
    device_token = tokens_for(proxy)["access_token"]
    enedis_mock.add(responses.POST, TOKEN_V3, body=requests.ConnectionError("refused"))
    assert data(proxy, device_token).status_int == 502
    enedis_mock.replace(responses.POST, TOKEN_V3, json={"access_token": "t", "expires_in": 600})
    enedis_mock.add(responses.GET, DATA_URL, json={"meter_reading": {"usage_point_id": PRM1}})
    assert data(proxy, device_token).status_int == 200


@pytest.mark.parametrize(
    "answer, status",
    [
        pytest.param(
            {"status": 200, "body": '{"access_token": "a", "refresh_tok', "content_type": "application/json"},
            502,
            id="truncated",
        ),
        pytest.param({"status": 200, "body": "<html>portal</html>", "content_type": "text/html"}, 502, id="HTML"),
        pytest.param({"body": requests.ReadTimeout("slow")}, 504, id="slow"),
        pytest.param({"body": requests.ConnectionError("refused")}, 502, id="down"),
    ],
)
def test_pass_through_upstream_garbage_is_a_page_for_people_and_json_for_devices(make_web, make_config, answer, status):
    app = make_web(make_config(FLOW="DEVICE", TOKEN_ENDPOINT=TOKEN_ENDPOINT))
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, TOKEN_ENDPOINT, **answer)
        mock.add(responses.POST, TOKEN_ENDPOINT, **answer)
        code = get_code(app)
        query = confirm(app, code["user_code"])
        page = app.get("/auth/redirect", {"state": query["state"], "code": "c"}, expect_errors=True)
        assert_page(page, status)
        assert poll(app, code["device_code"]).json["error"] == "access_denied"
        proxied = app.post(
            "/device/proxy",
            {"grant_type": "refresh_token", "client_id": "test-client", "refresh_token": "r"},
            expect_errors=True,
        )
    assert proxied.status_int == status and proxied.json["error"].startswith("upstream_")


@pytest.mark.parametrize(
    "answer, status",
    [
        pytest.param({"body": requests.ConnectionError("refused")}, 502, id="down"),
        pytest.param({"body": requests.ReadTimeout("slow")}, 504, id="slow"),
        pytest.param(
            {"status": 200, "body": '{"serviceSouscrit": [{"poi', "content_type": "application/json"},
            502,
            id="truncated",
        ),
        pytest.param({"status": 500, "body": "<html>error</html>", "content_type": "text/html"}, 502, id="HTML"),
    ],
)
def test_a_v2_return_enedis_cannot_answer_for_is_a_page(
    make_web, make_config, sqlite_store, clock, enedis_mock, answer, status
):
    """ENEDIS_AUTHORIZE_VERSION=v2 sends back an autorisation_id that only Enedis can turn into meters."""
    config = make_config(ENEDIS_AUTHORIZE_VERSION="v2")
    app = make_web(config, upstream=EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance))
    enedis_mock.add(responses.POST, TOKEN_V3, json={"access_token": "t", "expires_in": 600})
    enedis_mock.add(responses.POST, SUBSCRIBED, **answer)
    code = get_code(app)
    query = confirm(app, code["user_code"])
    page = app.get("/auth/redirect", {"state": query["state"], "autorisation_id": "123456789"}, expect_errors=True)
    assert_page(page, status)
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"  # the person may reload


# --- Enedis, live: the demo server and its simulated Enedis


def test_enedis_slow_or_garbled_through_a_live_server(live_server):
    base = live_server(UPSTREAM_READ_TIMEOUT="1", ENEDIS_API_MODE="legacy")
    token = device_tokens(base)["access_token"]
    simulator(base, delay=3)
    started = time.monotonic()
    slow = live_fetch(base, token)
    assert slow.status_code == 504 and slow.json()["error"] == "upstream_timeout"
    assert time.monotonic() - started < 2.9
    simulator(base, delay=0, fail={"match": "/metering_data", "status": 200, "body": TRUNCATED, "times": 1})
    garbled = live_fetch(base, token)
    assert garbled.status_code == 502 and garbled.json()["error"] == "upstream_error"
    simulator(base, fail={"match": "/metering_data", "status": 503, "body": "<h1>Maintenance</h1>", "times": 1})
    html = live_fetch(base, token)
    assert html.status_code == 503 and html.json()["error"] == "upstream_error"
    assert live_fetch(base, token).status_code == 200  # back to normal, no restart


def test_upstream_token_endpoint_down_gives_people_a_page_on_a_live_server(live_server):
    base = live_server(FLOW="DEVICE")
    simulator(base, fail={"match": "/v1/oauth2/token", "status": 502, "body": "<h1>Bad gateway</h1>", "times": 1})
    code = device_post(base, "/device/code").json()
    page = consent_in_browser(base, code["verification_uri_complete"])
    assert page.status_code == 502 and "text/html" in page.headers["Content-Type"]
    assert "Bad gateway" not in page.text
    answer = device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"])
    assert answer.json()["error"] == "access_denied"


# --- a process killed with SIGKILL


def test_sigkill_during_traffic_loses_no_delivered_token(live_server, tmp_path):
    """Tokens delivered before the kill - and those delivered by refreshes still
    running when it came - all work after a restart on the same SQLite file."""
    store = tmp_path / "killed.sqlite3"
    base = live_server.proxy(store)
    chains = [device_tokens(base)["refresh_token"] for _ in range(8)]
    approved = []
    for _ in range(4):  # consented, not yet collected: the traffic collects them
        code = device_post(base, "/device/code").json()
        consent_in_browser(base, code["verification_uri_complete"])
        approved.append(code["device_code"])

    latest = list(chains)  # the newest refresh token each device has received
    collected, stop = {}, threading.Event()

    def rotate(i):
        while not stop.is_set():
            try:
                answer = device_post(base, "/device/token", grant_type="refresh_token", refresh_token=latest[i])
            except requests.RequestException:
                return  # the server is gone
            if answer.status_code == 200:
                latest[i] = answer.json()["refresh_token"]

    def collect(device_code):
        while not stop.is_set():
            try:
                answer = device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=device_code)
            except requests.RequestException:
                return
            if answer.status_code == 200:
                collected[device_code] = answer.json()["refresh_token"]
                return
            time.sleep(0.05)

    threads = [threading.Thread(target=rotate, args=(i,)) for i in range(len(chains))]
    threads += [threading.Thread(target=collect, args=(c,)) for c in approved]
    for thread in threads:
        thread.start()
    # Kill once every device has had something delivered, while the rotations go on;
    # a loaded machine may take longer than usual to get there.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        len(collected) == len(approved) and all(old != new for old, new in zip(chains, latest, strict=False))
    ):
        time.sleep(0.05)
    time.sleep(0.2)
    server = live_server.processes[-1]
    os.kill(server.pid, signal.SIGKILL)
    server.wait(10)
    stop.set()
    for thread in threads:
        thread.join(20)
    rotations = sum(1 for old, new in zip(chains, latest, strict=False) if old != new)
    assert rotations == len(chains) and len(collected) == len(approved)  # the kill did land mid-traffic

    again = live_server.proxy(store)
    for token in latest + list(collected.values()):
        renewed = device_post(again, "/device/token", grant_type="refresh_token", refresh_token=token)
        assert renewed.status_code == 200, renewed.text
        assert renewed.json()["usage_points_id"] == PRM
