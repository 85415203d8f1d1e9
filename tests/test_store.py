"""The store contract: the same behaviour from SQLite and MongoDB (mongomock)."""

import os
import sqlite3

import pytest
from helpers import at_once

from deviceflow.errors import StoreUnavailable
from deviceflow.store import MongoStore, SQLiteStore, digest


def test_put_then_get_returns_the_value(any_store):
    any_store.put("flow", "k", {"status": "pending", "points": ["1", "2"]}, 60)
    assert any_store.get("flow", "k") == {"status": "pending", "points": ["1", "2"]}


def test_kinds_are_separate(any_store):
    any_store.put("flow", "k", {"a": 1}, 60)
    assert any_store.get("state", "k") is None


def test_expired_record_is_never_served_even_before_purge(any_store, clock):
    any_store.put("flow", "k", {"a": 1}, 10)
    clock.advance(10.5)
    assert any_store.get("flow", "k") is None
    assert any_store.take("flow", "k") is None
    assert any_store.update_if("flow", "k", {"a": 1}, {"a": 2}) is None
    assert any_store.count("flow") == 0


def test_put_overwrites_and_renews(any_store, clock):
    any_store.put("flow", "k", {"a": 1}, 10)
    any_store.put("flow", "k", {"a": 2}, 100)
    clock.advance(50)
    assert any_store.get("flow", "k") == {"a": 2}


def test_add_writes_only_when_no_live_record(any_store, clock):
    assert any_store.add("user", "ABCD", {"d": 1}, 10) is True
    assert any_store.add("user", "ABCD", {"d": 2}, 10) is False
    assert any_store.get("user", "ABCD") == {"d": 1}
    clock.advance(11)
    assert any_store.add("user", "ABCD", {"d": 3}, 10) is True
    assert any_store.get("user", "ABCD") == {"d": 3}


def test_add_writes_the_records_that_go_with_it_only_when_it_writes(any_store, clock):
    any_store.put("flow", "old", {"n": 0}, 60)
    assert any_store.add(
        "user", "ABCD", {"d": 1}, 10, also=[("flow", "f1", {"n": 1}, 60), ("flow", "old", {"n": 9}, 60)]
    )
    assert any_store.add("user", "ABCD", {"d": 2}, 10, also=[("flow", "f2", {"n": 2}, 60)]) is False
    assert any_store.get("flow", "f2") is None  # the code was taken: its flow is not written
    assert any_store.get("flow", "f1") == {"n": 1}
    assert any_store.get("flow", "old") == {"n": 9}  # written over, as put writes
    clock.advance(11)
    assert any_store.add("user", "ABCD", {"d": 3}, 10, also=[("flow", "f3", {"n": 3}, 60)])
    assert any_store.get_many([("user", "ABCD"), ("flow", "f3")]) == {
        ("user", "ABCD"): {"d": 3},
        ("flow", "f3"): {"n": 3},
    }
    clock.advance(50)
    assert any_store.get("flow", "f3") == {"n": 3}  # each record keeps its own lifetime
    assert any_store.get("user", "ABCD") is None


def test_take_gives_the_record_once(any_store):
    any_store.put("state", "s", {"device": "x"}, 60)
    assert any_store.take("state", "s") == {"device": "x"}
    assert any_store.take("state", "s") is None
    assert any_store.get("state", "s") is None


def test_update_if_is_compare_and_set_returning_the_old_value(any_store):
    any_store.put("flow", "k", {"status": "approved", "points": ["1"]}, 60)
    before = any_store.update_if("flow", "k", {"status": "approved"}, {"status": "delivered", "points": None})
    assert before == {"status": "approved", "points": ["1"]}
    assert any_store.get("flow", "k") == {"status": "delivered", "points": None}
    assert any_store.update_if("flow", "k", {"status": "approved"}, {"status": "delivered"}) is None


def test_update_if_expecting_none_matches_a_missing_field(any_store):
    any_store.put("refresh", "r", {"retired": False}, 60)
    assert any_store.update_if("refresh", "r", {"successor": None}, {"successor": "x"}) is not None
    assert any_store.get("refresh", "r")["successor"] == "x"


def test_update_if_can_renew_the_expiry(any_store, clock):
    any_store.put("flow", "k", {"a": 1}, 10)
    any_store.update_if("flow", "k", {}, {"a": 2}, ttl=100)
    clock.advance(50)
    assert any_store.get("flow", "k") == {"a": 2}


def test_incr_counts_within_a_window_then_starts_again(any_store, clock):
    assert [any_store.incr("poll", "d", 60) for _ in range(3)] == [1, 2, 3]
    clock.advance(59)
    assert any_store.incr("poll", "d", 60) == 4
    clock.advance(2)
    assert any_store.incr("poll", "d", 60) == 1


def test_delete_and_purge(any_store, clock):
    any_store.put("a", "1", {}, 10)
    any_store.put("a", "2", {}, 100)
    any_store.put("a", "3", {}, 100)
    any_store.delete("a", "3")
    clock.advance(20)
    assert any_store.purge() == 1
    assert any_store.count("a") == 1


def test_scan_lists_the_live_records_of_one_kind(any_store, clock):
    any_store.put("chain", "c1", {"usage_points": ["1"]}, 100)
    any_store.put("chain", "c:2", {"usage_points": ["2"]}, 100)
    any_store.put("chain", "old", {"usage_points": ["3"]}, 10)
    any_store.put("refresh", "r1", {"chain": "c1"}, 100)
    any_store.incr("chain", "n", 100)
    clock.advance(20)
    assert sorted(any_store.scan("chain")) == [
        ("c1", {"usage_points": ["1"]}),
        ("c:2", {"usage_points": ["2"]}),
        ("n", 1),
    ]
    assert list(any_store.scan("nothing")) == []


def test_get_many_gives_the_live_records_among_the_keys(any_store, clock):
    any_store.put("guess", "a", {"n": 1}, 60)
    any_store.put("guess", "b", {"n": 2}, 5)
    any_store.put("other", "c", {"n": 3}, 60)
    clock.advance(10)
    wanted = [("guess", "a"), ("guess", "b"), ("guess", "c"), ("other", "c"), ("other", "a"), ("guess", "missing")]
    assert any_store.get_many(wanted) == {("guess", "a"): {"n": 1}, ("other", "c"): {"n": 3}}
    assert any_store.get_many([]) == {}


def test_writes_in_a_batch_are_all_kept_and_keep_their_own_meaning(any_store):
    any_store.put("flow", "taken", {"n": 0}, 60)
    with any_store.batch():
        assert any_store.incr("count", "k", 60) == 1
        assert any_store.incr("count", "k", 60) == 2
        assert any_store.add("flow", "taken", {"n": 1}, 60) is False
        assert any_store.add("flow", "free", {"n": 2}, 60) is True
        with any_store.batch():  # a batch within a batch is part of it
            any_store.put("flow", "inner", {"n": 3}, 60)
    assert any_store.get_many([("flow", "taken"), ("flow", "free"), ("flow", "inner")]) == {
        ("flow", "taken"): {"n": 0},
        ("flow", "free"): {"n": 2},
        ("flow", "inner"): {"n": 3},
    }
    assert any_store.incr("count", "k", 60) == 3


def test_a_refusal_within_a_batch_keeps_what_was_written_before_it(any_store):
    # /device/code counts a request, then refuses it past the budget: the count must stay.
    with pytest.raises(LookupError):
        with any_store.batch():
            any_store.incr("asked", "net", 60)
            raise LookupError("past the budget")
    assert any_store.incr("asked", "net", 60) == 2


def test_ping_answers(any_store):
    any_store.ping()


def test_digest_is_sha256_hex():
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_only_one_of_many_threads_wins_a_take(tmp_path):
    store = SQLiteStore(str(tmp_path / "race.sqlite3"))
    store.put("flow", "k", {"status": "approved"}, 60)

    def grab():
        return store.update_if("flow", "k", {"status": "approved"}, {"status": "delivered"})

    wins = [taken for taken in at_once([grab] * 20) if taken is not None]
    assert len(wins) == 1


def test_threads_counting_at_once_each_get_their_own_count(tmp_path):
    # Polls of one server run on many threads; none may wait out SQLite's busy timeout (503).
    store = SQLiteStore(str(tmp_path / "count.sqlite3"), busy_timeout=0.01)

    def poll():
        return [store.incr("poll", "d", 60) for _ in range(20)]

    counts = [count for counts in at_once([poll] * 32) for count in counts]
    assert sorted(counts) == list(range(1, 641))


def test_purge_of_a_long_backlog_goes_in_batches_and_spares_live_records(tmp_path, clock):
    store = SQLiteStore(str(tmp_path / "backlog.sqlite3"), clock=clock)
    for n in range(1234):
        store.put("access", f"old-{n}", {}, 10)
    for n in range(3):
        store.put("refresh", f"live-{n}", {"n": n}, 10_000)
    clock.advance(60)
    assert store.purge(batch=100) == 1234
    assert [store.get("refresh", f"live-{n}") for n in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert store.purge(batch=100) == 0


def test_what_threads_write_is_read_back_at_once_here_and_by_another_process(tmp_path):
    # A device refreshing right after its previous refresh must find the new token,
    # whatever the other threads of the server are writing meanwhile.
    path = str(tmp_path / "busy.sqlite3")
    store, other_process = SQLiteStore(path), SQLiteStore(path)

    def write_then_read(thread):
        missed = []
        for n in range(150):
            store.put("refresh", f"{thread}-{n}", {"n": n}, 60)
            store.update_if("refresh", f"{thread}-{n}", {"n": n}, {"used": True})
            if store.get("refresh", f"{thread}-{n}") != {"n": n, "used": True}:
                missed.append(("here", n))
            if other_process.get("refresh", f"{thread}-{n}") is None:
                missed.append(("there", n))
        return missed

    assert [miss for misses in at_once([lambda t=t: write_then_read(t) for t in range(8)]) for miss in misses] == []


def test_a_batch_is_seen_by_another_process_whole_when_it_ends(tmp_path):
    path = str(tmp_path / "batch.sqlite3")
    here, there = SQLiteStore(path), SQLiteStore(path)
    with here.batch():
        here.put("user_code", "ABCD", {"device": "k"}, 60)
        here.put("flow", "k", {"status": "pending"}, 60)
        assert there.get("user_code", "ABCD") is None  # a user code never names a flow not yet written
    assert there.get("user_code", "ABCD") == {"device": "k"}
    assert there.get("flow", "k") == {"status": "pending"}


def test_a_store_error_within_a_batch_leaves_the_store_usable(tmp_path):
    store = SQLiteStore(str(tmp_path / "broken-batch.sqlite3"))
    with pytest.raises(StoreUnavailable):
        with store.batch():
            store.put("flow", "k", {"status": "pending"}, 60)
            store._write("INSERT INTO no_such_table VALUES (1)")
    store.put("flow", "after", {"status": "pending"}, 60)
    assert store.get("flow", "after") == {"status": "pending"}
    with store.batch():
        store.put("flow", "again", {"n": 1}, 60)
    assert SQLiteStore(store.path).get("flow", "again") == {"n": 1}


class _InterruptedWriter:
    """The writer connection, with an exception (a signal's KeyboardInterrupt) raised once at `at`:
    just after that statement ran, or when the batch asks whether a transaction is open."""

    def __init__(self, conn, at):
        self.conn, self.at = conn, at

    def execute(self, sql, args=()):
        cursor = self.conn.execute(sql, args)
        if sql == self.at:
            self.at = None
            raise KeyboardInterrupt
        return cursor

    @property
    def in_transaction(self):
        if self.at == "in_transaction":
            self.at = None
            raise KeyboardInterrupt
        return self.conn.in_transaction

    def close(self):
        self.conn.close()


@pytest.mark.parametrize("at", ["BEGIN IMMEDIATE", "in_transaction"])
def test_a_batch_interrupted_between_begin_and_commit_leaves_no_transaction_open(tmp_path, at):
    # Left open, the writer's transaction took every later write of the process, committed none of them,
    # and held the database's write lock: the other processes' writes failed after their busy timeout.
    path = str(tmp_path / "interrupted.sqlite3")
    store = SQLiteStore(path)
    store.put("flow", "before", {"n": 0}, 60)
    store._writer = _InterruptedWriter(store._writer, at)
    with pytest.raises(KeyboardInterrupt):
        with store.batch():
            store.put("flow", "in-batch", {"n": 1}, 60)
    store.put("flow", "after", {"n": 2}, 60)
    there = SQLiteStore(path, busy_timeout=0.2)
    assert there.get("flow", "after") == {"n": 2}
    there.put("flow", "there", {"n": 3}, 60)  # the write lock is free


def test_compare_and_set_sees_what_another_process_changed(tmp_path):
    path = str(tmp_path / "cas.sqlite3")
    here, there = SQLiteStore(path), SQLiteStore(path)
    here.put("flow", "k", {"status": "approved"}, 60)
    assert here.get("flow", "k") == {"status": "approved"}
    assert there.update_if("flow", "k", {"status": "approved"}, {"status": "delivered"}) == {"status": "approved"}
    assert here.update_if("flow", "k", {"status": "approved"}, {"status": "delivered"}) is None
    assert here.get("flow", "k") == {"status": "delivered"}


def test_sqlite_file_holds_values_and_survives_reopening(tmp_path):
    path = str(tmp_path / "s.sqlite3")
    SQLiteStore(path).put("refresh", digest("tok"), {"usage_points": ["1"]}, 600)
    again = SQLiteStore(path)
    assert again.get("refresh", digest("tok")) == {"usage_points": ["1"]}
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_sqlite_errors_become_store_unavailable_and_it_recovers(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(str(path))
    store.put("a", "1", {"x": 1}, 60)
    blocker = sqlite3.connect(str(path), timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    store.busy_timeout = 0.1
    store.close()  # the next call opens a connection with the short timeout
    failures = []
    store.on_error = lambda: failures.append(1)
    with pytest.raises(StoreUnavailable):
        store.put("a", "2", {"x": 2}, 60)
    assert failures == [1]
    blocker.rollback()
    blocker.close()
    store.put("a", "2", {"x": 2}, 60)
    assert store.get("a", "2") == {"x": 2}


class BrokenCollection:
    def __getattr__(self, name):
        from pymongo.errors import ServerSelectionTimeoutError

        def fail(*args, **kwargs):
            raise ServerSelectionTimeoutError("no server")

        return fail


def test_mongodb_errors_become_store_unavailable(mongo_store):
    mongo_store.col = BrokenCollection()
    with pytest.raises(StoreUnavailable):
        mongo_store.get("a", "1")
    with pytest.raises(StoreUnavailable):
        mongo_store.ping()
    with pytest.raises(StoreUnavailable):
        mongo_store.scan("chain")


def test_each_store_error_is_reported_to_the_hook(mongo_store):
    failures = []
    mongo_store.on_error = lambda: failures.append(1)
    mongo_store.col = BrokenCollection()
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            mongo_store.get("a", "1")
    assert len(failures) == 2


@pytest.mark.mongodb
def test_real_mongodb_contract_subset():
    uri = os.environ.get("MONGODB_URI")
    if not uri:
        pytest.skip("MONGODB_URI is not set: no real MongoDB to test against")
    store = MongoStore.from_uri(uri, "deviceflow-test")
    store.col.delete_many({})
    store.put("state", "s", {"device": "x"}, 60)
    assert store.take("state", "s") == {"device": "x"}
    assert store.take("state", "s") is None
    assert store.add("user", "U", {}, 60) is True
    assert store.add("user", "U", {}, 60) is False
    assert [store.incr("poll", "d", 60) for _ in range(2)] == [1, 2]
    store.put("flow", "k", {"status": "approved"}, 60)
    assert store.update_if("flow", "k", {"status": "approved"}, {"status": "delivered"}) == {"status": "approved"}
    assert store.update_if("flow", "k", {"status": "approved"}, {"status": "delivered"}) is None


# --- who else on the host can read the store


@pytest.fixture
def usual_umask():
    """The umask of most hosts and containers (022): files 0644 and folders 0755 unless the server says otherwise."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def modes(*paths):
    return [oct(os.stat(path).st_mode & 0o777) for path in paths]


def test_another_account_on_the_host_cannot_read_the_store(tmp_path, usual_umask):
    """Issue 14, finding 7: the SQLite store (CSRF key, user codes, states, meter
    numbers, a device's lent client_secret) was created 0644 in a 0755 folder."""
    path = tmp_path / "data" / "deviceflow.sqlite3"
    store = SQLiteStore(str(path))
    store.put("flow", "k", {"client_secret": "lent"}, 60)
    assert store.get("flow", "k")
    assert modes(path, f"{path}-wal", f"{path}-shm") == ["0o600"] * 3
    assert modes(path.parent) == ["0o700"]
    store.close()


def test_a_store_left_open_to_others_is_tightened_with_a_warning(tmp_path, usual_umask, caplog):
    path = tmp_path / "deviceflow.sqlite3"
    SQLiteStore(str(path)).close()
    os.chmod(tmp_path, 0o755)
    os.chmod(path, 0o644)
    (tmp_path / "deviceflow.sqlite3-wal").write_bytes(b"")  # left by a crash
    os.chmod(tmp_path / "deviceflow.sqlite3-wal", 0o666)
    with caplog.at_level("WARNING", logger="deviceflow.store"):
        store = SQLiteStore(str(path))
    store.put("flow", "k", {"a": 1}, 60)
    assert modes(path, f"{path}-wal", f"{path}-shm") == ["0o600"] * 3
    assert modes(tmp_path) == ["0o755"]  # the operator's own folder is left as it is
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2 and str(path) in warned[0] and f"{path}-wal" in warned[1]
    store.close()
