"""FLOW=DEVICE without CLIENT_SECRET: the client_secret a device lends at /device/code.

The attack: whoever reads the SQLite files (a backup, a stolen disk, the -wal
left behind) must find no byte of the secret, whatever became of its flow, and
nothing in the store must open it; the device still gets its tokens."""

import secrets
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses
from helpers import PRM1, confirm, get_code, poll

from deviceflow.store import digest

TOKEN_URL = "https://oauth.example.org/token"
UPSTREAM_TOKENS = {
    "access_token": "up-access",
    "refresh_token": "up-refresh",
    "token_type": "Bearer",
    "expires_in": 3600,
}
OUTCOMES = ["approved", "refused at consent", "refused by upstream", "expired", "abandoned", "-cg"]


@pytest.fixture
def upstream():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def lending(make_web, make_config, sqlite_store):
    """The generic proxy (no CLIENT_SECRET) on a SQLite file, and where that file is."""
    config = make_config(FLOW="DEVICE", TOKEN_ENDPOINT=TOKEN_URL, CLIENT_SECRET=None)
    return make_web(config, sqlite_store), sqlite_store


def raw_files(store):
    """Every file of the SQLite store, as the bytes on disk."""
    return {path.name: path.read_bytes() for path in sorted(Path(store.path).parent.glob(Path(store.path).name + "*"))}


def assert_nowhere(store, secret):
    files = raw_files(store)
    holding = [name for name, data in files.items() if secret.encode() in data]
    assert files and not holding, f"the secret is in clear in {holding}"


def lent_rows(store):
    """Lent-secret records in the file, expired or not."""
    with sqlite3.connect(store.path) as conn:
        return conn.execute("SELECT COUNT(*) FROM records WHERE kind = 'lent'").fetchone()[0]


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_a_lent_secret_is_never_in_the_store_files_and_is_erased_on_every_outcome(lending, upstream, clock, outcome):
    app, store = lending
    secret = "lent-" + secrets.token_hex(16)
    if outcome == "refused by upstream":
        upstream.post(TOKEN_URL, status=400, json={"error": "invalid_grant"})
    else:
        upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    code = get_code(app, client_id="test-client", client_secret=secret)
    key = digest(code["device_code"])
    assert_nowhere(store, secret)  # never written in clear, not even while the flow waits
    assert lent_rows(store) == 1

    if outcome == "expired":
        clock.advance(300 + 1)
        assert poll(app, code["device_code"]).json["error"] == "expired_token"
    elif outcome == "abandoned":  # never confirmed, never polled again
        clock.advance(300 + 3600)  # past the code's lifetime and the lent secret's grace
        store.purge()
    else:
        query = confirm(app, code["user_code"], state_suffix="-cg" if outcome == "-cg" else "")
        back = {"state": query["state"], "code": "upstream-code", "usage_point_id": PRM1}
        if outcome == "refused at consent":
            back = {"state": query["state"], "error": "access_denied"}
        app.get("/auth/redirect", back, expect_errors=True)
        answer = poll(app, code["device_code"])
        if outcome in ("approved", "-cg"):
            assert answer.status_int == 200 and answer.json["access_token"]
        else:
            assert answer.json["error"] == "access_denied"
            assert poll(app, code["device_code"]).json["error"] == "access_denied"  # not invalid_grant
        if outcome == "approved":
            assert answer.json == {**UPSTREAM_TOKENS, "usage_point_id": PRM1}
        exchanges = [call for call in upstream.calls if call.request.url == TOKEN_URL]
        if outcome in ("approved", "refused by upstream"):
            sent = {k: v[0] for k, v in parse_qs(exchanges[0].request.body).items()}
            assert sent["client_secret"] == secret and sent["code"] == "upstream-code"

    assert store.get("lent", key) is None and lent_rows(store) == 0
    flow = store.get("flow", key)
    assert flow is None or ("client_secret" not in flow and not flow.get("sealed_code"))
    assert_nowhere(store, secret)


def test_the_store_zeroes_what_it_deletes_and_purge_empties_the_wal(sqlite_store):
    store = sqlite_store
    marker = "gone-" + secrets.token_hex(16)
    assert store._read("PRAGMA secure_delete")[0][0] == 1
    store.put("flow", "k", {"note": marker}, 60)
    store.put("flow", "other", {"note": "kept"}, 3600)
    store.delete("flow", "k")
    store.purge()
    assert_nowhere(store, marker)
    assert store.get("flow", "other") == {"note": "kept"}
