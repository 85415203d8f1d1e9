"""Consent integrity, tried as an attacker would: nobody obtains tokens for a
meter its owner did not consent to, whatever the return from Enedis says.
Each test is the attack's request sequence; it must end with no token minted
and, where it applies, no call to Enedis."""

import logging

import pytest
import responses
from helpers import PRM1, PRM2, confirm, control_headers, get_code, poll, stopped_log
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_consent_v2 import AUTORISATION_ID, SUBSCRIBED_URL, TOKEN_URL, searches, services, subscribed

from deviceflow.flow.consent import RETURNS_PER_ADDRESS, RETURNS_PER_ADDRESS_WINDOW, RETURNS_PER_STATE
from deviceflow.flow.verification import GUESSES_CEILING, GUESSES_GLOBAL, GUESSES_PER_ADDRESS

OTHER_ID = "518300042"  # another person's consent, learnt from a shared link or guessed
ARABIC_PRM = "\u0661" * 14  # fourteen Arabic-Indic digits: `\d` matches them, Enedis has no such meter


@pytest.fixture
def make_config(make_config):
    """ENEDIS_AUTHORIZE_VERSION left to its default (v2) unless a test names it."""
    return lambda **env: make_config(**{"ENEDIS_AUTHORIZE_VERSION": None, **env})


@pytest.fixture
def enedis(enedis_mock):
    enedis_mock.add(responses.POST, TOKEN_URL, json={"access_token": "enedis-token", "expires_in": "12600"})
    return enedis_mock


def start(app, suffix=""):
    code = get_code(app)
    return code, confirm(app, code["user_code"], suffix)["state"]


def back(app, state, **params):
    return app.get("/auth/redirect", {"state": state, **params}, expect_errors=True)


def minted(app, code):
    """What the device gets when it polls: a token would be an `access_token`."""
    return poll(app, code["device_code"]).json


def tokens_in_store(app):
    return app.app.store.count("access") + app.app.store.count("refresh")


# --- 1. a forged meter: the v1-style return names any PRM


def test_a_v1_style_return_names_no_meter_under_the_default_v2(make_proxy, enedis):
    app = make_proxy()
    code, state = start(app)
    page = back(app, state, code="anything", usage_point_id=PRM2)
    assert page.status_int == 400 and page.content_type == "text/html"
    assert "pas la forme attendue" in page.text
    assert minted(app, code)["error"] == "authorization_pending"
    assert tokens_in_store(app) == 0 and len(enedis.calls) == 0
    # The state is spent: coming back with a real-looking v2 return changes nothing.
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 400
    assert len(enedis.calls) == 0 and tokens_in_store(app) == 0


def test_a_v1_return_needs_its_code_and_spends_the_state_when_it_fails(make_proxy, enedis):
    app = make_proxy(ENEDIS_AUTHORIZE_VERSION="v1")
    code, state = start(app)
    assert back(app, state, usage_point_id=PRM2).status_int == 400  # no code: not what Enedis v1 sends
    assert back(app, state, code="anything", usage_point_id=PRM2).status_int == 400  # replayed: spent
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 400
    assert minted(app, code)["error"] == "authorization_pending" and tokens_in_store(app) == 0
    assert len(enedis.calls) == 0


def test_under_v1_a_v2_return_is_refused_too(make_proxy, enedis):
    app = make_proxy(ENEDIS_AUTHORIZE_VERSION="v1")
    subscribed(enedis, services(PRM1))
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 400
    assert minted(app, code)["error"] == "authorization_pending" and len(searches(enedis)) == 0


def test_non_ascii_digits_are_no_meter_number(make_proxy, enedis):
    app = make_proxy(ENEDIS_AUTHORIZE_VERSION="v1")
    code, state = start(app)
    assert back(app, state, code="anything", usage_point_id=ARABIC_PRM).status_int == 400
    assert minted(app, code)["error"] == "authorization_pending" and tokens_in_store(app) == 0


@pytest.mark.parametrize("secret", ["", "s3cr3t-value"])
def test_cg_in_pass_through_mode_mints_nothing_for_a_usage_point_id_alone(make_proxy, enedis, secret):
    """FLOW=DEVICE: `-cg` asks for client_credentials. Without a secret the mode cannot work, so the flow
    stays a pass-through one (a code is needed); with one, it follows the v2 rules."""
    app = make_proxy(FLOW="DEVICE", CLIENT_SECRET=secret)
    code, state = start(app, "-cg")
    assert state.endswith("-cg")
    page = back(app, state, usage_point_id=PRM2)
    assert page.status_int == 400
    assert "access_token" not in minted(app, code) and tokens_in_store(app) == 0
    assert len(enedis.calls) == 0


# --- 2. someone else's consent: an autorisation_id learnt or guessed


def test_an_older_consent_of_someone_else_is_not_redeemed(make_proxy, enedis, caplog):
    caplog.set_level(logging.INFO, logger="deviceflow")
    subscribed(enedis, services(PRM2, since="2026-10-05"))  # shared by its owner months ago
    app = make_proxy()
    code, state = start(app)
    page = back(app, state, autorisation_id=OTHER_ID)
    assert page.status_int == 403 and "retirez le partage" in page.text
    assert minted(app, code)["error"] == "authorization_pending" and tokens_in_store(app) == 0
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.getMessage()]
    assert "2026-10-05" in warning.getMessage() and OTHER_ID not in caplog.text


def test_a_share_from_the_day_before_the_flow_is_fresh(make_proxy, enedis, clock):
    """A person who shares just before midnight and confirms just after is not refused."""
    subscribed(enedis, services(PRM1, since="2027-01-14"))  # the test clock is 2027-01-15 in France
    app = make_proxy()
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 200
    assert minted(app, code)["usage_points_id"] == PRM1


def test_withdrawing_and_sharing_again_gives_a_fresh_share_under_the_same_id(make_proxy, enedis):
    subscribed(enedis, services(PRM1, since="2025-03-01"))
    app = make_proxy()
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 403
    enedis.replace(responses.POST, SUBSCRIBED_URL, json=services(PRM1, since="2027-01-15"))
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 200
    assert minted(app, code)["usage_points_id"] == PRM1


def test_only_the_fresh_services_of_an_id_are_redeemed(make_proxy, enedis):
    listed = services(PRM1)
    listed["serviceSouscrit"] += services(PRM2, since="2024-06-30")["serviceSouscrit"]
    subscribed(enedis, listed)
    app = make_proxy()
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 200
    assert minted(app, code)["usage_points_id"] == PRM1


def test_a_state_takes_no_other_id_after_its_first(make_proxy, enedis):
    """The first return failed (Enedis down): the next one may not bring another person's id."""
    subscribed(enedis, status=500, json={"code": "500"})
    app = make_proxy()
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 502
    asked = len(searches(enedis))
    enedis.replace(responses.POST, SUBSCRIBED_URL, json=services(PRM2))
    assert back(app, state, autorisation_id=OTHER_ID).status_int == 400
    assert len(searches(enedis)) == asked  # the other id was never looked up
    assert minted(app, code)["error"] == "authorization_pending" and tokens_in_store(app) == 0
    # The first id still completes the flow.
    enedis.replace(responses.POST, SUBSCRIBED_URL, json=services(PRM1))
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 200
    assert minted(app, code)["usage_points_id"] == PRM1


@pytest.mark.parametrize("other", [OTHER_ID, "\u0661\u0662\u0663", "417265119\u00e9"])
def test_another_id_on_a_bound_state_is_a_page_whatever_its_characters(make_proxy, enedis, other):
    subscribed(enedis, status=500, json={"code": "500"})
    app = make_proxy()
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 502
    page = back(app, state, autorisation_id=other)
    assert page.status_int == 400 and page.content_type == "text/html"
    assert minted(app, code)["error"] == "authorization_pending"


# --- 3. a state outlives no failure, and costs Enedis little


def test_a_state_takes_a_bounded_number_of_returns(make_proxy, enedis):
    subscribed(enedis, {"nbTotalServices": 0, "serviceSouscrit": []})  # never registered
    app = make_proxy()
    code, state = start(app)
    for _ in range(RETURNS_PER_STATE):
        assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 503
    asked = len(searches(enedis))
    enedis.replace(responses.POST, SUBSCRIBED_URL, json=services(PRM1))
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 400
    assert len(searches(enedis)) == asked and tokens_in_store(app) == 0
    assert minted(app, code)["error"] == "authorization_pending"


def test_consent_look_ups_never_wait_for_an_outbound_slot(make_proxy, enedis, clock, sqlite_store):
    subscribed(enedis, services(PRM1))
    app = make_proxy(ENEDIS_MAX_CALLS_PER_SECOND="1")
    enedis_client = app.app.flow.upstream
    enedis_client.access_token()  # the token is cached: what follows are look-ups only
    code, state = start(app)
    clock.advance(1)
    enedis_client.wait_for_slot()  # the data calls have spent this second
    calls_before, now = len(enedis.calls), clock()
    page = back(app, state, autorisation_id=AUTORISATION_ID)
    assert page.status_int == 429 and "rechargez cette page" in page.text and page.headers["Retry-After"]
    assert clock() == now and len(enedis.calls) == calls_before  # no wait, no call
    clock.advance(1)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 200


def test_consent_look_ups_share_the_data_calls_cap_of_threads(make_proxy, enedis):
    subscribed(enedis, services(PRM1))
    app = make_proxy(THREADS="8")
    cap = app.app.flow.upstream._data_calls
    while cap.acquire(blocking=False):  # every data-call thread busy on Enedis
        pass
    code, state = start(app)
    page = back(app, state, autorisation_id=AUTORISATION_ID)
    assert page.status_int == 429 and len(searches(enedis)) == 0


def test_returns_are_limited_per_network(make_proxy, enedis, clock):
    app = make_proxy(ENEDIS_AUTHORIZE_VERSION="v1")
    code = get_code(app)
    network = "2001:db8:1:2::{:x}"
    for i in range(RETURNS_PER_ADDRESS):  # each return spends its state: a new one each time
        state = confirm(app, code["user_code"])["state"]
        assert (
            app.get(
                "/auth/redirect",
                {"state": state, "code": "x"},
                extra_environ={"REMOTE_ADDR": network.format(i)},
                expect_errors=True,
            ).status_int
            == 400
        )
    state = confirm(app, code["user_code"])["state"]
    refused = app.get(
        "/auth/redirect",
        {"state": state, "code": "x", "usage_point_id": PRM1},
        extra_environ={"REMOTE_ADDR": network.format(0xFFFF)},
        expect_errors=True,
    )
    assert refused.status_int == 429 and int(refused.headers["Retry-After"]) == RETURNS_PER_ADDRESS_WINDOW
    # Another network is not concerned; the limit lifts after its window.
    assert back(app, state, code="x", usage_point_id=PRM1).status_int == 200
    assert minted(app, code)["usage_points_id"] == PRM1
    clock.advance(RETURNS_PER_ADDRESS_WINDOW + 1)
    other = get_code(app)
    state = confirm(app, other["user_code"])["state"]
    assert (
        app.get(
            "/auth/redirect",
            {"state": state, "code": "x", "usage_point_id": PRM1},
            extra_environ={"REMOTE_ADDR": network.format(1)},
        ).status_int
        == 200
    )


def test_returns_naming_no_flow_of_the_browser_do_not_spend_the_budget(make_proxy, enedis):
    """A neighbour behind the same address sends junk returns: the person's own return still goes through."""
    app = make_proxy(ENEDIS_AUTHORIZE_VERSION="v1")
    code, state = start(app)
    for _ in range(RETURNS_PER_ADDRESS * 2):
        assert app.get("/auth/redirect", expect_errors=True, headers={"Cookie": ""}).status_int == 400
        assert back(app, "not-a-state", code="x", usage_point_id=PRM2).status_int == 400
    assert back(app, state, code="x", usage_point_id=PRM1).status_int == 200


# --- 4. guessing limits that one host cannot turn against everyone


def guess(app, code, address):
    return app.get(f"/device?code={code}", expect_errors=True, extra_environ={"REMOTE_ADDR": address})


def test_one_ipv6_host_cannot_lock_code_entry_for_everyone(make_proxy):
    app = make_proxy()
    for i in range(310):  # 31 addresses of one /64, 10 wrong codes each
        guess(app, "BBBB-BBBB", f"2001:db8:aaaa:1::{i // 10 + 1:x}")
    assert guess(app, "BBBB-BBBB", "2001:db8:aaaa:1:ffff::1").status_int == 429  # the whole /64 waits
    code = get_code(app)["user_code"]
    page = guess(app, code, "198.51.100.23")
    assert page.status_int == 200 and page.forms[0]["csrf"].value


def test_a_distributed_guesser_is_bounded_and_others_still_get_in(make_proxy, caplog):
    app = make_proxy()
    code = get_code(app)["user_code"]
    addresses = [f"10.{i // 250}.{i % 250}.1" for i in range(GUESSES_CEILING + 100)]
    with caplog.at_level(logging.WARNING, logger="deviceflow.flow"):
        for address in addresses[:GUESSES_GLOBAL]:
            assert guess(app, "BBBB-BBBB", address).status_int == 400
        # Past the server-wide count: a site that failed waits, even with the right code...
        assert guess(app, code, addresses[0]).status_int == 429
        # ...and another address of a failed IPv6 site too.
        guess(app, "BBBB-BBBB", "2001:db8:bbbb:100::1")
        assert guess(app, code, "2001:db8:bbbb:1ff::1").status_int == 429
        # A person from a network that has not failed gets in.
        assert guess(app, code, "192.0.2.77").status_int == 200
        # Each new site of the guesser gets one guess, until the ceiling stops everybody.
        tried = sum(guess(app, "BBBB-BBBB", a).status_int == 400 for a in addresses[GUESSES_GLOBAL:]) + 1
        assert tried == GUESSES_CEILING - GUESSES_GLOBAL
        assert guess(app, code, "192.0.2.78").status_int == 429
    assert [r.getMessage().split()[0] for r in caplog.records] == [str(GUESSES_GLOBAL), f"{GUESSES_CEILING}"]


def test_ipv4_mapped_addresses_count_as_their_ipv4(make_proxy):
    app = make_proxy()
    for _ in range(GUESSES_PER_ADDRESS):
        guess(app, "BBBB-BBBB", "::ffff:203.0.113.9")
    assert guess(app, "BBBB-BBBB", "203.0.113.9").status_int == 429


# --- blind spots of the suite


def test_a_confirmation_token_from_another_browser_is_refused(make_proxy):
    """The CSRF token is tied to the browser that was shown the code, not only to the code."""
    app = make_proxy()
    code = get_code(app)
    victim_page = app.get(f"/device?code={code['user_code']}")
    stolen = victim_page.forms[0]["csrf"].value
    app.reset()  # another browser: no cookie
    attacker_page = app.get(f"/device?code={code['user_code']}")
    form = attacker_page.forms[0]
    form["csrf"] = stolen
    assert form.submit(expect_errors=True).status_int == 403


# --- 3, live: a flood of returns on one state while Enedis is slow


def test_a_flood_of_v2_returns_on_a_live_server_leaves_polls_fast(live_server):
    import statistics
    import threading
    import time

    import requests

    base = live_server(ENEDIS_AUTHORIZE_VERSION="v2", LOG_LEVEL="WARNING")
    device = {"client_id": "deviceflow-demo"}
    browser = requests.Session()
    code = requests.post(f"{base}/device/code", data=device, timeout=10).json()
    page = browser.get(code["verification_uri_complete"], timeout=10)
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    sent = browser.post(
        f"{base}/auth/verify_code",
        timeout=10,
        allow_redirects=False,
        data={"user_code": code["user_code"], "csrf": csrf},
    )
    state = sent.headers["Location"].split("state=", 1)[1].split("&", 1)[0]
    # Every Enedis data and consent API now takes half a second; the id was never shared, so each
    # look-up finds nothing and is asked again (the slowest return the proxy knows).
    assert (
        requests.post(
            f"{base}/enedis/_control", json={"delay": 0.5}, headers=control_headers(base), timeout=10
        ).status_code
        == 200
    )
    other = requests.post(f"{base}/device/code", data=device, timeout=10).json()

    pages, stop = [], threading.Event()

    def flood():
        pages.append(
            browser.get(
                f"{base}/auth/redirect", params={"state": state, "autorisation_id": "123456789"}, timeout=60
            ).status_code
        )

    latencies, answers = [], set()

    def poll_while_flooding():
        with requests.Session() as device_session:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    answer = device_session.post(
                        f"{base}/device/token",
                        timeout=10,
                        data={
                            **device,
                            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                            "device_code": other["device_code"],
                        },
                    ).json()["error"]
                except (requests.RequestException, ValueError, KeyError) as error:
                    answer = repr(error)
                latencies.append(time.perf_counter() - started)
                answers.add(answer)
                time.sleep(0.02)

    poller = threading.Thread(target=poll_while_flooding)
    poller.start()
    flooders = [threading.Thread(target=flood) for _ in range(36)]
    for thread in flooders:
        thread.start()
    for thread in flooders:
        thread.join(60)
    stop.set()
    poller.join(10)

    assert len(pages) == 36 and set(pages) <= {400, 429, 503}
    # At most RETURNS_PER_STATE returns reached Enedis, each with its few look-ups.
    searches_made = requests.get(f"{base}/enedis/_stats", timeout=10).json()["calls"]["subscribed_services"]
    assert searches_made <= RETURNS_PER_STATE * 4
    store_errors = [line for line in live_server.processes[-1].log.read_text().splitlines() if "store" in line]
    assert answers <= {"authorization_pending", "slow_down"}, (answers, store_errors[-5:])
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert len(latencies) > 50 and p99 < 0.05, (p99, statistics.median(latencies))
    assert (
        "access_token"
        not in requests.post(
            f"{base}/device/token",
            timeout=10,
            data={
                **device,
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "device_code": code["device_code"],
            },
        ).json()
    )


def test_a_server_taking_v1_returns_says_so_once_at_start_up(live_server):
    live_server(ENEDIS_AUTHORIZE_VERSION="v1")
    live_server(ENEDIS_AUTHORIZE_VERSION="v2")
    v1, v2 = live_server.processes
    # A WARNING is written at once, before the server answers: in the file while it runs.
    v1_log = v1.log.read_text()
    assert v1_log.count("WARNING") == 1 and "ENEDIS_AUTHORIZE_VERSION=v1" in v1_log and "cannot confirm" in v1_log
    assert "ENEDIS_AUTHORIZE_VERSION=v1" not in stopped_log(v2)


def test_a_fresh_share_redeemed_by_its_flow_is_refused_to_any_other(make_proxy, enedis, caplog):
    """The id of today's share leaks (a proxy's access log, a screenshot): whoever learns it gets nothing,
    since Enedis sends one share back to one flow, the person's own."""
    subscribed(enedis, services(PRM1))
    app = make_proxy()
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 200  # the owner
    assert minted(app, code)["usage_points_id"] == PRM1
    app.reset()  # the attacker: his own browser, his own device
    for _ in range(2):
        stolen_code, stolen_state = start(app)
        with caplog.at_level(logging.WARNING, logger="deviceflow.enedis"):
            page = back(app, stolen_state, autorisation_id=AUTORISATION_ID)
        assert page.status_int == 403 and "retirez le partage" in page.text
        assert minted(app, stolen_code)["error"] == "authorization_pending"
    assert tokens_in_store(app) == 2  # the owner's access and refresh tokens, nothing more
    assert "already redeemed by another flow" in caplog.text and AUTORISATION_ID not in caplog.text


def test_the_owner_reloading_after_a_lost_answer_still_completes(make_proxy, enedis):
    """The share is held by the flow, not by one request: the same flow coming back again is served."""
    subscribed(enedis, services(PRM1))
    app = make_proxy()
    code = get_code(app)
    first_state = confirm(app, code["user_code"])["state"]
    second_state = confirm(app, code["user_code"])["state"]  # the person pressed the button twice
    enedis_client = app.app.flow.upstream
    record = app.app.store.get("state", first_state)
    enedis_client.usage_points_for(AUTORISATION_ID, record["started"], flow_key=record["device"])
    assert back(app, second_state, autorisation_id=AUTORISATION_ID).status_int == 200
    assert minted(app, code)["usage_points_id"] == PRM1


@pytest.mark.parametrize("forged", ["é" * 64, "\u0661" * 64, "0" * 64])
def test_a_forged_confirmation_token_is_refused_with_a_page_whatever_its_characters(make_proxy, forged):
    app = make_proxy()
    code = get_code(app)
    form = app.get(f"/device?code={code['user_code']}").forms[0]
    form["csrf"] = forged
    page = form.submit(expect_errors=True)
    assert page.status_int == 403 and page.content_type == "text/html"
    assert "Location" not in page.headers


# --- any text, in a real flow's forms and returns, is a page and never a 500

TEXT = st.text(max_size=40).filter(lambda t: "\x00" not in t)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    csrf=TEXT,
    user_code=TEXT,
    version=st.sampled_from(["v1", "v2"]),
    ids=st.lists(TEXT, min_size=1, max_size=3),
    code=TEXT,
    usage_point_id=TEXT,
)
def test_any_text_in_a_real_flow_is_a_page_never_a_500(
    make_proxy, enedis_mock, clock, csrf, user_code, version, ids, code, usage_point_id
):
    clock.advance(3600)  # examples share the store: each starts with the limits' windows over
    enedis_mock.add(responses.POST, TOKEN_URL, json={"access_token": "t", "expires_in": "12600"})
    enedis_mock.add(responses.POST, SUBSCRIBED_URL, status=500, json={"code": "500"})
    app = make_proxy(ENEDIS_AUTHORIZE_VERSION=version)
    device_code = get_code(app)
    app.get(f"/device?code={device_code['user_code']}")  # the browser is shown the code (and its cookie)
    answer = app.post("/device", {"user_code": user_code or device_code["user_code"], "csrf": csrf}, expect_errors=True)
    assert answer.status_int != 500, answer.text
    state = confirm(app, device_code["user_code"])["state"]
    for autorisation_id in [AUTORISATION_ID, *ids]:
        page = back(app, state, autorisation_id=autorisation_id, code=code, usage_point_id=usage_point_id)
        assert page.status_int != 500 and page.content_type == "text/html", page.text  # 502: Enedis failing


def test_a_service_added_to_a_redeemed_share_does_not_free_the_redeemed_one(make_proxy, enedis):
    subscribed(enedis, services(PRM1))
    app = make_proxy()
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 200
    assert minted(app, code)["usage_points_id"] == PRM1
    enedis.upsert(responses.POST, SUBSCRIBED_URL, json=services(PRM1, PRM2))  # the listing grows
    app.reset()
    stolen_code, stolen_state = start(app)
    assert back(app, stolen_state, autorisation_id=AUTORISATION_ID).status_int == 403
    assert minted(app, stolen_code)["error"] == "authorization_pending"


def test_a_short_duration_does_not_free_a_redeemed_share_while_it_is_fresh(make_proxy, enedis, clock):
    subscribed(enedis, services(PRM1))
    app = make_proxy(DURATION="P1D")
    code, state = start(app)
    assert back(app, state, autorisation_id=AUTORISATION_ID).status_int == 200
    clock.advance(86400 + 60)  # the share still counts as fresh for a flow started now
    app.reset()
    stolen_code, stolen_state = start(app)
    assert back(app, stolen_state, autorisation_id=AUTORISATION_ID).status_int == 403
    assert minted(app, stolen_code)["error"] == "authorization_pending"
