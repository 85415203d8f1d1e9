"""Attacks on what the confirmation page and /device/code rely on: the user code's record that carries its
flow (ended at settlement), one read per page, /device/code's single statement, writes counted by row count,
the pool of random values, the batched log writer and SIGTERM. Each test states a promise and tries to break it."""

import io
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import at_once

from deviceflow import randomness
from deviceflow.errors import InvalidGrant, PageError, StoreUnavailable
from deviceflow.flow import DeviceFlow
from deviceflow.flow.verification import GUESSES_PER_ADDRESS
from deviceflow.logwriter import BatchedStreamHandler
from deviceflow.store import SQLiteStore, digest

PRM = "11111111111111"
ADDRESS = "192.0.2.1"


@pytest.fixture
def flow(config, sqlite_store, clock):
    return DeviceFlow(config, sqlite_store, clock=clock)


def state_of(url):
    return parse_qs(urlsplit(url).query)["state"][0]


class FailingUserCodeEnd:
    """Makes store.update_if on user codes raise StoreUnavailable: the store went away (SQLITE_BUSY past the busy
    timeout, a disk full, MongoDB failing over) between the settlement's compare-and-set and the end of its code."""

    def __init__(self, store):
        self.real = store.update_if

    def __call__(self, kind, key, *args, **kwargs):
        if kind == "user":
            raise StoreUnavailable("the store is not available")
        return self.real(kind, key, *args, **kwargs)


# --- 1. the user code's record outlives its flow's settlement


def test_a_settled_flow_whose_code_could_not_be_ended_is_refused_at_the_button_press(
    flow, sqlite_store, monkeypatch, caplog
):
    start = flow.authorization.issue_codes("test-client")
    monkeypatch.setattr(sqlite_store, "update_if", FailingUserCodeEnd(sqlite_store))
    approved = flow.consent.settle_pending(digest(start["device_code"]), {"status": "approved", "usage_points": [PRM]})
    monkeypatch.undo()
    assert approved["status"] == "approved"  # the settlement stands
    assert "user code could not be ended" in caplog.text
    pending = flow.verification.find_pending(start["user_code"], ADDRESS)  # the record lingers: the form shows
    with pytest.raises(PageError) as refused:
        flow.consent.consent_url(pending, "browser-1")
    assert refused.value.reason == "unknown_code"
    assert sqlite_store.count("state") == 0  # no consent was started


def test_a_lingering_user_code_obtains_nothing_for_the_approved_flow(flow, sqlite_store, monkeypatch):
    """Whoever follows the form of a settled flow (the person, or someone who read the code over the person's
    shoulder) is refused before Enedis, and the tokens go to the device once."""
    start = flow.authorization.issue_codes("test-client")
    key = digest(start["device_code"])
    monkeypatch.setattr(sqlite_store, "update_if", FailingUserCodeEnd(sqlite_store))
    flow.consent.settle_pending(key, {"status": "approved", "usage_points": [PRM]})
    monkeypatch.undo()
    pending = flow.verification.find_pending(start["user_code"], "198.51.100.7")
    with pytest.raises(PageError):
        flow.consent.consent_url(pending, "attacker-browser")
    delivered = flow.device_code_grant.poll("test-client", start["device_code"])
    assert delivered["access_token"] and delivered["usage_points_id"] == PRM
    with pytest.raises(InvalidGrant):
        flow.device_code_grant.poll("test-client", start["device_code"])


def test_a_refused_lent_flows_secret_is_erased_even_when_ending_its_user_code_failed(
    make_config, sqlite_store, clock, monkeypatch
):
    config = make_config(FLOW="DEVICE", TOKEN_ENDPOINT="https://oauth.example.org/token", CLIENT_SECRET=None)
    flow = DeviceFlow(config, sqlite_store, clock=clock)
    start = flow.authorization.issue_codes("test-client", client_secret="lent-secret-value")
    key = digest(start["device_code"])
    assert sqlite_store.get("lent", key) is not None
    monkeypatch.setattr(sqlite_store, "update_if", FailingUserCodeEnd(sqlite_store))
    flow.consent.settle_pending(key, {"status": "denied"})
    monkeypatch.undo()
    assert sqlite_store.get("lent", key) is None


# --- 2. a user code drawn again while its previous flow is remembered


class SlowExchange:
    """FLOW=DEVICE's code exchange at the callback, taking as long as Enedis's token endpoint may take: meanwhile the
    flow's code expires and a new device is given the same user code (drawn again once the first one's record
    expired, as it may be: 1 chance in 20^8 per new flow)."""

    def __init__(self, flow, clock, monkeypatch, code):
        self.flow, self.clock, self.monkeypatch, self.code = flow, clock, monkeypatch, code
        self.second = None

    def exchange_code(self, code, client_id, secret, verifier):
        self.clock.advance(self.flow.config.code_lifetime)
        self.monkeypatch.setattr("deviceflow.flow.device_authorization.draw_user_code", lambda: self.code)
        self.second = self.flow.authorization.issue_codes("test-client")
        return {"access_token": "up-access", "refresh_token": "up-refresh", "token_type": "Bearer"}


def test_settling_a_flow_never_deletes_the_user_code_of_another_flow(make_config, sqlite_store, clock, monkeypatch):
    config = make_config(FLOW="DEVICE", TOKEN_ENDPOINT="https://oauth.example.org/token")
    flow = DeviceFlow(config, sqlite_store, clock=clock)
    first = flow.authorization.issue_codes("test-client")
    code = first["user_code"].replace("-", "")
    exchange = SlowExchange(flow, clock, monkeypatch, code)
    flow.consent.passthrough = exchange
    pending = flow.verification.find_pending(first["user_code"], ADDRESS)
    url = flow.consent.consent_url(pending, "browser-1")
    clock.advance(config.code_lifetime - 5)
    flow.consent.finish({"state": state_of(url), "code": "enedis-code"}, "browser-1")  # passed the expiry check
    second = exchange.second
    assert second["user_code"] == first["user_code"]
    # The second device's person types the code on its screen:
    found = flow.verification.find_pending(second["user_code"], "198.51.100.7")
    assert found.device_key == digest(second["device_code"])


# --- 3. guessing user codes


def test_past_the_limit_a_right_code_gets_the_same_wait_as_a_wrong_one(flow):
    start = flow.authorization.issue_codes("test-client")
    for _ in range(GUESSES_PER_ADDRESS):
        with pytest.raises(PageError):
            flow.verification.find_pending("BBBB-BBBB", ADDRESS)
    answers = []
    for typed in (start["user_code"], "BBBB-BBBC", "not a code", ""):
        with pytest.raises(PageError) as refused:
            flow.verification.find_pending(typed, ADDRESS)
        answers.append((refused.value.reason, refused.value.status, refused.value.retry_after))
    assert len(set(answers)) == 1 and answers[0][1] == 429


@pytest.mark.parametrize(
    "typed", ["", "x", "AAAA-AAAA", "BCDF-GHJ", "BCDF-GHJKL", "ßßßß", "\u200bBCDFGHJK", "B" * 5000]
)
def test_a_typed_code_that_is_no_code_counts_as_a_failed_guess(flow, sqlite_store, typed):
    with pytest.raises(PageError) as refused:
        flow.verification.find_pending(typed, ADDRESS)
    assert refused.value.reason == "unknown_code"
    assert sqlite_store.get("guess", ADDRESS) == 1 and sqlite_store.get("guess", "*") == 1


def test_concurrent_guesses_from_one_network_stay_within_its_limit(config, sqlite_store):
    """One address sends its guesses all at once (the server has 32+ threads): each reads the counters before
    any of them counts its failure."""
    flow = DeviceFlow(config, sqlite_store)

    def guess():
        try:
            flow.verification.find_pending("BBBB-BBBB", ADDRESS)
        except PageError as error:
            return error.status
        return 200

    answers = at_once([guess] * 48)
    tried = sum(1 for status in answers if status != 429)
    assert tried <= GUESSES_PER_ADDRESS, f"{tried} guesses went through from one address"


# --- 4. the store: add(also=...), rowcount, get_many


def test_add_with_its_records_has_one_winner_among_threads(sqlite_store):
    def attempt(n):
        return lambda: (
            n,
            sqlite_store.add("user", "BCDFGHJK", {"device": f"f{n}"}, 60, also=[("flow", f"f{n}", {"n": n}, 60)]),
        )

    results = at_once([attempt(n) for n in range(24)])
    winners = [n for n, won in results if won]
    assert len(winners) == 1
    assert sqlite_store.get("user", "BCDFGHJK") == {"device": f"f{winners[0]}"}
    assert [n for n in range(24) if sqlite_store.get("flow", f"f{n}")] == winners


def _adder(path, tag, count, queue):
    store = SQLiteStore(path)
    won = [
        i
        for i in range(count)
        if store.add(
            "user", f"U{i}", {"device": f"{tag}{i}"}, 60, also=[("flow", f"{tag}{i}", {"user_code": f"U{i}"}, 60)]
        )
    ]
    store.close()
    queue.put((tag, won))


def test_add_with_its_records_has_one_winner_between_two_processes(tmp_path):
    path, count = str(tmp_path / "shared.sqlite3"), 150
    SQLiteStore(path).close()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_adder, args=(path, tag, count, queue)) for tag in "ab"]
    for worker in workers:
        worker.start()
    won = dict(queue.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    store = SQLiteStore(path)
    try:
        for i in range(count):
            winners = [tag for tag in "ab" if i in won[tag]]
            assert len(winners) == 1, (i, winners)
            assert store.get("user", f"U{i}") == {"device": f"{winners[0]}{i}"}
            loser = "b" if winners[0] == "a" else "a"
            assert store.get("flow", f"{winners[0]}{i}") == {"user_code": f"U{i}"}
            assert store.get("flow", f"{loser}{i}") is None
    finally:
        store.close()


def _deliverer(path, tag, count, queue):
    store = SQLiteStore(path)
    won = [i for i in range(count) if store.update_if("flow", str(i), {"status": "approved"}, {"status": tag})]
    store.close()
    queue.put((tag, won))


def test_a_token_is_delivered_once_between_two_processes(tmp_path):
    """update_if now trusts cursor.rowcount: the approved -> delivered compare-and-set has one winner."""
    path, count = str(tmp_path / "shared.sqlite3"), 150
    store = SQLiteStore(path)
    for i in range(count):
        store.put("flow", str(i), {"status": "approved"}, 600)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_deliverer, args=(path, tag, count, queue)) for tag in ("a", "b")]
    for worker in workers:
        worker.start()
    won = dict(queue.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(30)
    try:
        for i in range(count):
            winners = [tag for tag in "ab" if i in won[tag]]
            assert len(winners) == 1, (i, winners)
            assert store.get("flow", str(i)) == {"status": winners[0]}
    finally:
        store.close()


def test_add_over_an_expired_code_writes_everything_and_over_a_live_one_nothing(sqlite_store, clock):
    sqlite_store.put("user", "C", {"device": "old"}, 10)
    sqlite_store.put("flow", "old", {"status": "pending"}, 100)
    assert not sqlite_store.add(
        "user", "C", {"device": "new"}, 10, also=[("flow", "new", {}, 60), ("lent", "new", {}, 60)]
    )
    assert sqlite_store.get_many([("flow", "new"), ("lent", "new")]) == {}
    clock.advance(10)
    assert sqlite_store.add("user", "C", {"device": "new"}, 10, also=[("flow", "new", {}, 60), ("lent", "new", {}, 60)])
    assert sqlite_store.get("user", "C") == {"device": "new"}
    assert sqlite_store.get("flow", "new") == {} and sqlite_store.get("lent", "new") == {}
    assert sqlite_store.get("flow", "old") == {"status": "pending"}


def test_update_if_has_one_winner_among_threads(sqlite_store):
    sqlite_store.put("flow", "k", {"status": "approved"}, 60)
    results = at_once(
        [lambda: sqlite_store.update_if("flow", "k", {"status": "approved"}, {"status": "delivered"})] * 24
    )
    assert sum(1 for r in results if r is not None) == 1


def test_purge_counts_what_it_deleted(sqlite_store, clock):
    for i in range(1234):
        sqlite_store.put("x", str(i), {}, 1)
    sqlite_store.put("x", "live", {}, 100)
    clock.advance(2)
    assert sqlite_store.purge() == 1234
    assert sqlite_store.purge() == 0


ODD_KEYS = ["it's", 'a "quoted" key', "back\\slash", "é€😀", "\x00nul", "line\nbreak", "k" * 20000, "", " "]


@pytest.mark.parametrize("key", ODD_KEYS, ids=range(len(ODD_KEYS)))
def test_get_many_finds_odd_keys_as_get_does(any_store, key):
    any_store.put("flow", key, {"v": key}, 60)
    any_store.incr("guess", key, 60)
    found = any_store.get_many([("flow", key), ("guess", key), ("flow", key), ("user", key)])
    assert found == {("flow", key): {"v": key}, ("guess", key): 1}


def test_get_many_gives_values_as_get_does(any_store):
    values = {
        "float": {"t": 1712345678.1234567, "x": 0.1 + 0.2, "tiny": 5e-324, "big": 1.7976931348623157e308},
        "int": {"n": 2**63 - 1, "m": -(2**63)},
        "text": {"s": "\u2028\u2029\ud7ff\U0010ffff", "esc": "</script>\\u0000"},
        "nested": {"a": [1, {"b": None, "c": True}], "e": {}},
    }
    for key, value in values.items():
        any_store.put("flow", key, value, 60)
    found = any_store.get_many([("flow", key) for key in values])
    for key in values:
        assert found[("flow", key)] == any_store.get("flow", key), key


def test_get_many_reads_many_pairs(sqlite_store):
    for i in range(600):
        sqlite_store.put("k", str(i), {"i": i}, 60)
    found = sqlite_store.get_many([("k", str(i)) for i in range(600)])
    assert len(found) == 600


# --- 5. randomness


def test_sizes_at_the_edges_mean_what_secrets_means():
    assert randomness.token_bytes(0) == b"" and randomness.token_hex(0) == "" and randomness.token_urlsafe(0) == ""
    for size in (1, randomness.BLOCK - 1, randomness.BLOCK, randomness.BLOCK + 1, 1 << 20):
        assert len(randomness.token_bytes(size)) == size
    with pytest.raises((TypeError, ValueError)):
        randomness.token_bytes(-1)
    with pytest.raises(TypeError):
        randomness.token_bytes(2.5)


def test_a_child_forked_while_a_thread_refills_the_pool_draws_fresh_bytes(monkeypatch):
    """The fork happens while another thread holds the pool's lock (inside the system read): the child must
    neither deadlock nor hand out the bytes the parent will."""
    inside, release = threading.Event(), threading.Event()
    real = os.urandom

    def slow(n):
        inside.set()
        release.wait(10)
        return real(n)

    randomness.empty_pool()
    monkeypatch.setattr(randomness, "system_randomness", slow)
    drawn = []
    holder = threading.Thread(target=lambda: drawn.append(randomness.token_bytes(32)))
    holder.start()
    assert inside.wait(10)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: draw with a deadline
        try:
            randomness.system_randomness = real
            timer = threading.Timer(5, lambda: os._exit(3))
            timer.start()
            value = randomness.token_bytes(64)
            os.write(write_end, value)
        finally:
            os._exit(0)
    os.close(write_end)
    release.set()
    holder.join(10)
    parent_next = randomness.token_bytes(4000)
    _, status = os.waitpid(pid, 0)
    child_value = os.read(read_end, 64)
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0, "the child deadlocked on the pool's lock"
    assert len(child_value) == 64
    assert child_value not in drawn[0] + parent_next and child_value[:16] not in drawn[0] + parent_next


def test_threads_drawing_while_the_pool_refills_never_get_the_same_bytes():
    randomness.empty_pool()
    sizes = [16, 24, 32, 48, 3, 4095, 1]
    out = []

    def draw(size):
        def run():
            return [randomness.token_bytes(size) for _ in range(300)]

        return run

    for batch in at_once([draw(size) for size in sizes * 3]):
        out.extend(piece for piece in batch if len(piece) >= 16)
    assert len(out) == len(set(out))


# --- 6. the log writer and SIGTERM


class BlockedStream(io.StringIO):
    """stderr when nobody reads it (a full pipe to a stalled log collector)."""

    def __init__(self):
        super().__init__()
        self.unblock = threading.Event()

    def write(self, text):
        self.unblock.wait(30)
        return super().write(text)


def test_a_flood_of_lines_holds_a_bounded_queue(monkeypatch):
    stream = BlockedStream()
    handler = BatchedStreamHandler(stream, flush_every=0.01, max_waiting=50)
    logger = logging.getLogger("review.flood")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        threads = [
            threading.Thread(target=lambda: [logger.info("line %d", i) for i in range(200)], daemon=True)
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        assert len(handler._waiting) <= 50 + 8 + 1
        stream.unblock.set()
        for thread in threads:
            thread.join(10)
        handler.flush()
        assert stream.getvalue().count("\n") == 8 * 200
    finally:
        stream.unblock.set()
        logger.removeHandler(handler)
        handler.close()


def test_sigterm_ends_the_server_promptly_despite_slow_clients(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items()}
    env.update(BASE_URL=f"http://127.0.0.1:{port}", ENEDIS_AUTHORIZE_VERSION="v1")
    process = subprocess.Popen(
        [sys.executable, "-m", "deviceflow", "serve", "--demo", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log_path, "wb"),
    )
    clients = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=1))
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)
        clients[0].sendall(b"GET /device?code=BBBB HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # a request never finished
        for _ in range(5):  # idle keep-alive connections and one reading nothing
            sock = socket.create_connection(("127.0.0.1", port), timeout=1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            clients.append(sock)
        clients[-1].sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
        took = time.monotonic() - started
    finally:
        for sock in clients:
            sock.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    logged = log_path.read_text()
    assert code == 0, logged[-2000:]
    assert took < 7, took
    assert "deviceflow stopped" in logged
    assert "Traceback" not in logged


# --- 7. no 500 on odd input at the confirmation page


@pytest.mark.parametrize(
    "query",
    [
        "code=" + "B" * 5000,
        "code=%C3%9F%C3%9F%C3%9F%C3%9F",
        "code=%00%00",
        "code=%ED%A0%80BCDFGHJ",
        "code=%FF%FE",
        "code=BCDF-GHJK&code=BCDF-GHJK",
        "code=%E2%80%8BBCDFGHJK",
        "user_code=BCDF%0AGHJK",
        "code=bcdf-ghjk&state=" + "x" * 3000,
    ],
)
def test_the_confirmation_page_never_answers_500(make_web, config, query):
    app = make_web(config)
    response = app.get("/device?" + query, expect_errors=True)
    assert response.status_int < 500, response.text[:500]
    assert "Traceback" not in response.text
    posted = app.post("/device", query + "&csrf=" + "0" * 64, expect_errors=True)
    assert posted.status_int < 500, posted.text[:500]


@pytest.mark.parametrize(
    "scope",
    ['a "quoted" \\ scope', "é€😀 \u2028\u2029", "</script><b>x</b>", "s" * 4000, '[1, {"a": 2}]', "null"],
    ids=range(6),
)
def test_any_scope_a_device_asks_for_goes_through_the_user_codes_record_unchanged(make_web, config, scope):
    """The scope now travels in the user code's record and comes back out of SQLite's json(): the page must
    show the form and the consent URL must carry the scope the device asked for, byte for byte."""
    app = make_web(config)
    start = app.post("/device/code", {"client_id": "test-client", "scope": scope}, expect_errors=True)
    assert start.status_int == 200, start.text
    page = app.get(f"/device?code={start.json['user_code']}")
    assert page.status_int == 200 and page.forms
    response = page.forms[0].submit()
    assert response.status_int == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["scope"] == [scope]
