"""The flow module on its own: codes, life cycle, one-time delivery, rotation, versions."""

from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import at_once

from deviceflow.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    PageError,
    SlowDown,
    VersionMismatch,
)
from deviceflow.flow import DeviceFlow
from deviceflow.flow.clients import application_name, check_user_agent
from deviceflow.flow.device_authorization import USER_CODE_ALPHABET, draw_user_code, normalize_user_code
from deviceflow.store import SQLiteStore, digest
from deviceflow.usage_points import parse_usage_points

PRM = "11111111111111"


@pytest.fixture
def flow(config, any_store, clock):
    return DeviceFlow(config, any_store, clock=clock)


def approve(flow, device_code, points=(PRM,)):
    """What /auth/redirect does once Enedis sent the person back."""
    return flow.consent.settle_pending(digest(device_code), {"status": "approved", "usage_points": list(points)})


def test_user_codes_use_the_alphabet_and_are_unique(flow):
    codes = {flow.authorization.issue_codes("test-client")["user_code"] for _ in range(200)}
    assert len(codes) == 200
    assert all(set(c.replace("-", "")) <= set(USER_CODE_ALPHABET) for c in codes)
    assert set(USER_CODE_ALPHABET).isdisjoint("AEIOUY01")


def test_user_code_collisions_are_retried(flow, any_store, monkeypatch):
    taken = flow.authorization.issue_codes("test-client")["user_code"].replace("-", "")
    picks = iter([taken, "BCDFGHJK"])
    monkeypatch.setattr("deviceflow.flow.device_authorization.draw_user_code", lambda: next(picks))
    assert flow.authorization.issue_codes("test-client")["user_code"] == "BCDF-GHJK"


def test_user_code_letters_are_drawn_without_favouring_any():
    # 256 is not a multiple of the 20 letters: bytes 240-255 would make the first 16 letters likelier.
    reads = iter([bytes([240, 255, 0, 19, 20, 239, 250, 1, 2, 3, 4, 5, 6, 7, 8, 9]), bytes(range(16))])
    assert draw_user_code(lambda count: next(reads)) == "BZBZCDFG"
    # Reads with a single fair byte each: read again until the code is whole.
    mostly_unfair = iter([bytes([255] * 15 + [i]) for i in range(8)])
    assert draw_user_code(lambda count: next(mostly_unfair)) == "BCDFGHJK"


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("wdjb-mjht", "WDJBMJHT"),
        (" WDJB MJHT ", "WDJBMJHT"),
        ("WDJBMJHT", "WDJBMJHT"),
        ("WDJB-MJH", None),
        ("WDJA-MJHT", None),
        ("", None),
        ("WDJB-MJHT-X", None),
    ],
)
def test_normalize_user_code(typed, expected):
    assert normalize_user_code(typed) == expected


def test_usage_points_split_on_semicolon_and_comma():
    assert parse_usage_points("11111111111111;22222222222222,33333333333333") == [
        "11111111111111",
        "22222222222222",
        "33333333333333",
    ]
    assert parse_usage_points("11111111111111;11111111111111") == ["11111111111111"]
    for bad in ("", "1111", "11111111111111;x", "111111111111111"):
        with pytest.raises(ValueError):
            parse_usage_points(bad)


def test_life_cycle_pending_approved_delivered(flow):
    start = flow.authorization.issue_codes("test-client")
    with pytest.raises(AuthorizationPending):
        flow.device_code_grant.poll("test-client", start["device_code"])
    approve(flow, start["device_code"])
    tokens = flow.device_code_grant.poll("test-client", start["device_code"])
    assert tokens["usage_points_id"] == PRM
    assert flow.tokens.authenticate(tokens["access_token"])["usage_points"] == [PRM]
    with pytest.raises(InvalidGrant):
        flow.device_code_grant.poll("test-client", start["device_code"])


def test_denied_flow_answers_access_denied(flow):
    start = flow.authorization.issue_codes("test-client")
    flow.consent.settle_pending(digest(start["device_code"]), {"status": "denied"})
    with pytest.raises(AccessDenied):
        flow.device_code_grant.poll("test-client", start["device_code"])


def test_expiry_and_slow_down(flow, clock):
    start = flow.authorization.issue_codes("test-client")
    for _ in range(12):
        with pytest.raises(AuthorizationPending):
            flow.device_code_grant.poll("test-client", start["device_code"])
    with pytest.raises(SlowDown) as slow:
        flow.device_code_grant.poll("test-client", start["device_code"])
    assert slow.value.body()["interval"] == 5
    clock.advance(300)
    with pytest.raises(ExpiredToken):
        flow.device_code_grant.poll("test-client", start["device_code"])
    clock.advance(24 * 3600 + 1)
    with pytest.raises(InvalidGrant):
        flow.device_code_grant.poll("test-client", start["device_code"])


def test_pending_polls_read_the_store_once_and_slow_down_costs_nothing(flow, clock, monkeypatch):
    """A pending poll answers from the instance's view of pending flows: polling too fast reads the flow
    once, whatever the number of polls, and is answered slow_down past the budget."""
    start = flow.authorization.issue_codes("test-client")
    reads = []
    get = flow.store.get
    monkeypatch.setattr(flow.store, "get", lambda kind, key: reads.append(kind) or get(kind, key))
    answers = []
    for _ in range(40):
        with pytest.raises((AuthorizationPending, SlowDown)) as answer:
            flow.device_code_grant.poll("test-client", start["device_code"])
        answers.append(type(answer.value))
    assert answers == [AuthorizationPending] * 12 + [SlowDown] * 28
    assert reads == ["flow"]


def test_the_confirmation_page_reads_the_store_once(flow, monkeypatch):
    """The guessing counters and the user code are one read; the user code's record says what the page shows."""
    start = flow.authorization.issue_codes("test-client", scope="consumption", user_agent="DomoticzLinky/2.1")
    reads = []
    for name in ("get", "get_many", "scan"):
        method = getattr(flow.store, name)
        monkeypatch.setattr(flow.store, name, lambda *args, _m=method, _n=name: reads.append(_n) or _m(*args))
    pending = flow.verification.find_pending(start["user_code"], "192.0.2.1")
    assert reads == ["get_many"]
    assert (pending.client_id, pending.application) == ("test-client", "DomoticzLinky")
    assert pending.device_key == digest(start["device_code"])
    assert parse_qs(urlsplit(flow.consent.consent_url(pending, "browser")).query)["scope"] == ["consumption"]


@pytest.mark.parametrize("outcome", ["approved", "denied"])
def test_a_settled_flows_user_code_is_refused_as_unknown(flow, outcome):
    start = flow.authorization.issue_codes("test-client")
    flow.consent.settle_pending(digest(start["device_code"]), {"status": outcome})
    with pytest.raises(PageError) as refused:
        flow.verification.find_pending(start["user_code"], "192.0.2.1")
    assert refused.value.reason == "unknown_code"
    assert flow.store.get("guess", "192.0.2.1") == 1  # counted against guessing like any wrong code


def test_a_user_code_recorded_by_the_previous_version_still_finds_its_pending_flow(flow):
    """A flow started before an upgrade: its user code's record names only the flow."""
    start = flow.authorization.issue_codes("test-client", scope="consumption")
    code = start["user_code"].replace("-", "")
    flow.store.put("user", code, {"device": digest(start["device_code"])}, 300)
    pending = flow.verification.find_pending(start["user_code"], "192.0.2.1")
    assert (pending.client_id, pending.device_key) == ("test-client", digest(start["device_code"]))
    assert parse_qs(urlsplit(flow.consent.consent_url(pending, "browser")).query)["scope"] == ["consumption"]
    flow.store.put("user", code, {"device": digest(start["device_code"])}, 300)
    approve(flow, start["device_code"])
    flow.store.put("user", code, {"device": digest(start["device_code"])}, 300)  # a deletion lost in a crash
    with pytest.raises(PageError):
        flow.verification.find_pending(start["user_code"], "192.0.2.1")


def test_the_view_of_pending_flows_forgets_what_is_over(flow, clock):
    starts = [flow.authorization.issue_codes("test-client") for _ in range(3)]
    for start in starts:
        with pytest.raises(AuthorizationPending):
            flow.device_code_grant.poll("test-client", start["device_code"])
    clock.advance(61)
    with pytest.raises(AuthorizationPending):
        flow.device_code_grant.poll("test-client", starts[0]["device_code"])
    assert len(flow.pending._polls) == len(flow.pending._seen) == 1


def test_approval_after_expiry_is_refused(flow, clock):
    start = flow.authorization.issue_codes("test-client")
    clock.advance(301)
    with pytest.raises(PageError):
        flow.verification.find_pending(start["user_code"], "192.0.2.1")


def test_unknown_client_is_invalid_client(flow):
    with pytest.raises(InvalidClient):
        flow.authorization.issue_codes("intruder")


def test_thirty_threads_polling_one_approved_code_deliver_once(config, tmp_path):
    store = SQLiteStore(str(tmp_path / "race.sqlite3"))
    flow = DeviceFlow(config, store)
    start = flow.authorization.issue_codes("test-client")
    approve(flow, start["device_code"])

    def poller():
        try:
            return flow.device_code_grant.poll("test-client", start["device_code"])
        except InvalidGrant:
            return "refused"

    answers = at_once([poller] * 30)
    assert answers.count("refused") == 29 and len(answers) == 30


def test_refresh_token_survives_a_restart_on_the_same_file(config, tmp_path):
    path = str(tmp_path / "restart.sqlite3")
    first = DeviceFlow(config, SQLiteStore(path))
    start = first.authorization.issue_codes("test-client")
    approve(first, start["device_code"])
    tokens = first.device_code_grant.poll("test-client", start["device_code"])
    first.store.close()

    restarted = DeviceFlow(config, SQLiteStore(path))
    renewed = restarted.tokens.refresh("test-client", tokens["refresh_token"])
    assert renewed["usage_points_id"] == PRM


@pytest.mark.parametrize(
    "agent, ok",
    [
        ("DomoticzLinky/2.6.0", True),
        ("DomoticzLinky/2.5.0", True),
        ("DomoticzLinky/3", True),
        ("DomoticzLinky/2.4.99", False),
        ("DomoticzLinky/2.5.0 (Linux)", True),
        ("curl/8.0.1", True),
        ("python-requests", False),
        ("", False),
        (None, False),
        ("Linky/abc", False),
    ],
)
def test_version_min(make_config, agent, ok):
    config = make_config(VERSION_MIN="2.5.0")
    if ok:
        check_user_agent(config, agent)
    else:
        with pytest.raises(VersionMismatch):
            check_user_agent(config, agent)


def test_no_version_min_accepts_anything(config):
    check_user_agent(config, None)


@pytest.mark.parametrize(
    "agent, name",
    [
        ("DomoticzLinky/2.6.0", "DomoticzLinky"),
        ("<script>/1", ""),
        ("", ""),
        ("HomeAssistant/2026.11 aiohttp", "HomeAssistant"),
    ],
)
def test_application_name(agent, name):
    assert application_name(agent) == name


def test_the_view_of_pending_flows_takes_new_flows_while_it_sweeps(sqlite_store):
    """Polls remember flows while another poll sweeps the view: no poll fails for it."""
    import sys
    import threading

    from deviceflow.flow.device_code_grant import POLL_WINDOW, PendingView

    view = PendingView(sqlite_store)
    for n in range(200_000):
        view.remember(f"old-{n}", "test-client", 2e9, 0.0)
    stop, failures = threading.Event(), []

    def remember_new_flows():
        n = 0
        while not stop.is_set():
            view.remember(f"new-{n}", "test-client", 2e9, POLL_WINDOW * 2)
            n += 1

    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # hand the GIL over often, as 32 server threads do
    other = threading.Thread(target=remember_new_flows)
    other.start()
    try:
        for round_ in range(3):
            try:
                view.count("device", POLL_WINDOW * (round_ + 2))  # each round's first poll sweeps
            except RuntimeError as error:
                failures.append(error)
    finally:
        stop.set()
        other.join()
        sys.setswitchinterval(previous)
    assert failures == []


def test_a_running_instance_takes_up_the_csrf_key_the_store_holds_now(config, any_store, clock):
    # The key record lost (a MongoDB rollback of its first write, a store emptied or restored): an instance
    # started since writes a new one. One that had read the old key kept it for ever, and behind a load
    # balancer every form one of them served was refused by the other (403 bad_csrf) until a restart.
    from deviceflow.flow.records import SERVER_KEY, SERVER_META
    from deviceflow.flow.verification import Verification

    running = Verification(config, any_store, clock)
    running.csrf_token("browser", "BCDFGHJK")
    any_store.delete(SERVER_META, SERVER_KEY)
    started_since = Verification(config, any_store, clock)
    token = started_since.csrf_token("browser", "BCDFGHJK")
    clock.advance(60)
    running.check_csrf("browser", "BCDFGHJK", token)
    assert running.csrf_token("browser", "BCDFGHJK") == token
