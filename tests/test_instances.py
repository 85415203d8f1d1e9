"""Several instances on one store: a flow started on one completes on another,
and tokens are still delivered once, however many pollers race for them."""

import os
from collections import Counter

import pytest
from browser import Browser
from helpers import DEVICE_GRANT, PRM1, at_once, confirm, consent, get_code, poll
from test_e2e import PRM, device_post
from webtest import TestApp

from deviceflow.store import MongoStore
from deviceflow.web import make_app

RACERS = 30


@pytest.fixture
def two_instances(live_server, tmp_path):
    """Two server processes on one SQLite file, and the codes a device asked of the first."""
    store = tmp_path / "shared.sqlite3"
    a, b = live_server.proxy(store), live_server.proxy(store)
    return a, b, device_post(a, "/device/code").json()


def test_two_processes_on_one_sqlite_file_deliver_once(two_instances):
    a, b, code = two_instances
    # The person opens the link on instance B (same store; one simulated Enedis for both).
    browser = Browser()
    browser.open(f"{b}/device?code={code['user_code']}")
    browser.submit()
    done = browser.submit(checked=(PRM,), button=("decision", "accept"))
    assert done.status_code == 200 and done.url.startswith(f"{b}/auth/redirect")

    def poller(base):
        return lambda: device_post(base, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"])

    answers = at_once([poller(a if i % 2 else b) for i in range(RACERS)])
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 1, 400: RACERS - 1}, statuses
    assert {answer.json()["error"] for answer in answers if answer.status_code == 400} == {"invalid_grant"}
    winner = next(answer.json() for answer in answers if answer.status_code == 200)

    # The token is good on both instances.
    renewed = device_post(a, "/device/token", grant_type="refresh_token", refresh_token=winner["refresh_token"])
    assert renewed.status_code == 200
    again = device_post(b, "/device/token", grant_type="refresh_token", refresh_token=renewed.json()["refresh_token"])
    assert again.status_code == 200 and again.json()["usage_points_id"] == PRM


def test_a_confirmation_form_from_one_instance_is_accepted_by_the_other(two_instances):
    """The CSRF key is shared through the store: a load balancer may send the button press elsewhere."""
    a, b, code = two_instances
    browser = Browser()
    browser.open(f"{a}/device?code={code['user_code']}")
    form = {field["name"]: field.get("value", "") for field in browser.forms()[0]["fields"] if field.get("name")}
    answer = browser.session.post(f"{b}/device", data=form, allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and "/enedis/dataconnect/" in answer.headers["Location"]


def mongo_instances(client, config, clock):
    """Two application instances, each with its own MongoStore object, on one database."""
    return [
        TestApp(
            make_app(config, MongoStore(client, "deviceflow-instances", clock=clock), clock=clock),
            extra_environ={"REMOTE_ADDR": "192.0.2.10"},
        )
        for _ in range(2)
    ]


def test_two_instances_on_one_mongodb_share_a_flow(config, clock):
    mongomock = pytest.importorskip("mongomock")
    a, b = mongo_instances(mongomock.MongoClient(), config, clock)
    code = a.post("/device/code", {"client_id": "test-client"}).json
    query = confirm(b, code["user_code"])
    b.get("/auth/redirect", {"state": query["state"], "code": "c", "usage_point_id": PRM1}, status=200)
    assert poll(a, code["device_code"]).status_int == 200
    assert poll(b, code["device_code"]).json["error"] == "invalid_grant"


@pytest.mark.mongodb
def test_thirty_pollers_on_two_instances_of_a_real_mongodb_get_one_delivery(config, clock):
    """mongomock does not make find_one_and_update atomic between threads; a real server does."""
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        pytest.skip("MONGODB_URI is not set: no real MongoDB to race against")
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=3000)
    client["deviceflow-instances"]["records"].delete_many({})
    a, b = mongo_instances(client, config, clock)
    code = a.post("/device/code", {"client_id": "test-client"}).json
    query = confirm(b, code["user_code"])
    b.get("/auth/redirect", {"state": query["state"], "code": "c", "usage_point_id": PRM1}, status=200)
    answers = at_once([(lambda app=a if i % 2 else b: poll(app, code["device_code"])) for i in range(RACERS)])
    assert Counter(answer.status_int for answer in answers) == {200: 1, 400: RACERS - 1}


def test_the_polling_budget_is_per_instance(make_web, config, clock):
    """Polls are counted in each instance's memory: a device alternating between two instances polls twice
    LIMIT_REQUESTS_PER_MINUTE (12) times within a minute before it hears slow_down, then from both."""
    a, b = make_web(config), make_web(config)
    code = get_code(a)
    answers = [poll(a if n % 2 else b, code["device_code"]).json["error"] for n in range(26)]
    assert answers == ["authorization_pending"] * 24 + ["slow_down"] * 2
    clock.advance(61)
    assert poll(a, code["device_code"]).json["error"] == "authorization_pending"


def test_a_pending_answer_lags_an_approval_on_another_instance_by_at_most_a_second(make_web, config, clock):
    """Each instance remembers the flows it read as pending; an approval on another instance reaches it
    at its next look at the flows settled lately (at most a second, less than the interval, apart)."""
    a, b = make_web(config), make_web(config)
    code = get_code(a)
    assert poll(a, code["device_code"]).json["error"] == "authorization_pending"
    assert consent(b, code["user_code"]).status_int == 200
    assert poll(a, code["device_code"]).json["error"] == "authorization_pending"  # read before the approval
    clock.advance(1)
    assert config.interval > 1
    delivered = poll(a, code["device_code"])
    assert delivered.status_int == 200 and delivered.json["access_token"]
    assert poll(b, code["device_code"]).json["error"] == "invalid_grant"


def test_a_code_approved_on_one_instance_is_refused_at_once_by_the_others_page(make_web, config):
    a, b = make_web(config), make_web(config)
    code = get_code(a)
    assert "csrf" in b.get("/device", {"code": code["user_code"]}).text
    assert consent(a, code["user_code"]).status_int == 200
    page = b.get("/device", {"code": code["user_code"]}, status=400)
    assert "csrf" not in page.text


def test_an_approval_on_the_same_instance_is_seen_at_once(app, clock):
    code = get_code(app)
    assert poll(app, code["device_code"]).json["error"] == "authorization_pending"
    assert consent(app, code["user_code"]).status_int == 200
    assert poll(app, code["device_code"]).status_int == 200


def test_a_view_that_has_not_read_the_settled_flows_lately_trusts_none(make_web, config, clock):
    """While one thread reads the settled flows, another that finds them not read for a second reads the
    store rather than answer from what it knew: a pending answer never lags a settlement by more."""
    a, b = make_web(config), make_web(config)
    code = get_code(a)
    assert poll(a, code["device_code"]).json["error"] == "authorization_pending"
    assert consent(b, code["user_code"]).status_int == 200
    clock.advance(10)
    view = a.app.flow.pending
    assert view._refreshing.acquire()  # another thread is reading the settled flows
    try:
        assert poll(a, code["device_code"]).status_int == 200
    finally:
        view._refreshing.release()
