"""What a copy of the store gives: no upstream token, and no Enedis token.

The sealing functions on their own first, then the store as someone holding a
copy of the SQLite file or of the MongoDB collection reads it, during a whole
FLOW=DEVICE flow and with the Enedis client's shared token.
"""

import json
import sqlite3
from contextlib import closing

import pytest
import responses
from helpers import PRM1, confirm, get_code, poll

from deviceflow import sealing
from deviceflow.enedis import EnedisClient
from deviceflow.store import SQLiteStore, digest

TOKEN_URL = "https://oauth.example.org/token"
ENEDIS_TOKEN_URL = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
# Long and unlike anything else in the store, so that finding them is finding them.
UPSTREAM_TOKENS = {
    "access_token": "upstream-access-7f3c9a1e5b",
    "refresh_token": "upstream-refresh-2d8e4b6a0c",
    "token_type": "Bearer",
    "expires_in": 3600,
    "scope": "openid",
    "id_token": "upstream-id-9b1f",
}
ENEDIS_TOKEN = "enedis-app-token-4a7d2c9e1f"
DEVICE_CODE = "a-device-code-of-forty-three-characters-xx"
AAD = b"flow key"


def raw_store(store, tmp_path) -> str:
    """Every record as read straight from the SQLite file or the MongoDB collection, not through the Store."""
    if isinstance(store, SQLiteStore):
        with closing(sqlite3.connect(tmp_path / "store.sqlite3")) as db:
            rows = db.execute("SELECT kind, key, value FROM records").fetchall()
    else:
        rows = list(store.client["deviceflow-test"]["records"].find({}))
    assert rows  # reading the wrong place would find nothing, and prove nothing
    return repr(rows)


@pytest.fixture
def upstream():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# --- the sealing functions


def test_a_sealed_value_opens_with_its_device_code_and_associated_data_only():
    sealed = sealing.seal_to(sealing.public_key_for(DEVICE_CODE), b"the token response", AAD)
    assert sealing.open_with(DEVICE_CODE, sealed, AAD) == b"the token response"
    assert b"token" not in sealed.encode() and json.loads(json.dumps(sealed)) == sealed
    # Sealed twice, it reads differently (a fresh ephemeral key each time).
    assert sealing.seal_to(sealing.public_key_for(DEVICE_CODE), b"the token response", AAD) != sealed
    with pytest.raises(sealing.CannotOpen):
        sealing.open_with(DEVICE_CODE + "y", sealed, AAD)
    with pytest.raises(sealing.CannotOpen):
        sealing.open_with(DEVICE_CODE, sealed, b"another flow key")


@pytest.mark.parametrize(
    "altered",
    [
        lambda s: s[:-4] + ("AAAA" if s[-4:] != "AAAA" else "BBBB"),  # the ciphertext's end
        lambda s: "B" + s[1:] if s[0] != "B" else "C" + s[1:],  # the ephemeral key
        lambda s: s[:20],  # cut short
        lambda s: "",
        lambda s: "not base64 at all!",
        lambda s: None,
    ],
)
def test_an_altered_sealed_value_does_not_open(altered):
    sealed = sealing.seal_to(sealing.public_key_for(DEVICE_CODE), b"the token response", AAD)
    with pytest.raises(sealing.CannotOpen):
        sealing.open_with(DEVICE_CODE, altered(sealed), AAD)


def test_an_encrypted_value_opens_with_the_same_secret_only():
    blob = sealing.encrypt("client-secret", b"the token")
    assert sealing.decrypt("client-secret", blob) == b"the token"
    assert b"token" not in blob.encode()
    for secret, value in [
        ("client-secret2", blob),
        ("client-secret", blob[:-4] + "AAAA"),
        ("client-secret", "x"),
        ("client-secret", ""),
    ]:
        with pytest.raises(sealing.CannotOpen):
            sealing.decrypt(secret, value)


# --- FLOW=DEVICE: between the callback and the poll, the store holds a sealed answer


def test_between_callback_and_poll_the_store_holds_no_upstream_token(
    make_web, make_config, any_store, upstream, tmp_path
):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    app = make_web(make_config(FLOW="DEVICE", TOKEN_ENDPOINT=TOKEN_URL), store=any_store)
    code = get_code(app)
    query = confirm(app, code["user_code"])
    page = app.get("/auth/redirect", {"state": query["state"], "code": "upstream-code", "usage_point_id": PRM1})
    assert 'id="done"' in page.text and len(upstream.calls) == 1

    stolen = raw_store(any_store, tmp_path)
    for token in ("upstream-access", "upstream-refresh", "upstream-id", code["device_code"]):
        assert token not in stolen

    answer = poll(app, code["device_code"])
    assert answer.status_int == 200
    assert answer.json == {**UPSTREAM_TOKENS, "usage_point_id": PRM1}
    assert "upstream-access" not in raw_store(any_store, tmp_path)
    assert poll(app, code["device_code"]).json["error"] == "invalid_grant"  # still delivered once


def test_the_sealed_answer_opens_with_no_other_device_code(make_web, make_config, upstream):
    upstream.post(TOKEN_URL, json=UPSTREAM_TOKENS)
    app = make_web(make_config(FLOW="DEVICE", TOKEN_ENDPOINT=TOKEN_URL))
    mine, other = get_code(app), get_code(app)
    query = confirm(app, mine["user_code"])
    app.get("/auth/redirect", {"state": query["state"], "code": "upstream-code"})

    key = digest(mine["device_code"])
    sealed = app.app.store.get("flow", key)["sealed"]
    with pytest.raises(sealing.CannotOpen):
        sealing.open_with(other["device_code"], sealed, key.encode())
    assert poll(app, other["device_code"]).json["error"] == "authorization_pending"
    assert poll(app, mine["device_code"]).json == UPSTREAM_TOKENS


# --- the Enedis client_credentials token


@pytest.fixture
def enedis_token(upstream):
    upstream.post(ENEDIS_TOKEN_URL, json={"access_token": ENEDIS_TOKEN, "token_type": "Bearer", "expires_in": 12600})
    upstream.post(ENEDIS_TOKEN_URL, json={"access_token": "enedis-second-token", "expires_in": 12600})
    return upstream


def test_the_enedis_token_is_not_in_the_store_yet_shared_by_instances_with_the_secret(
    make_config, any_store, enedis_token, clock, tmp_path
):
    config = make_config()
    assert EnedisClient(config, any_store, clock=clock).access_token() == ENEDIS_TOKEN
    assert "enedis-app-token" not in raw_store(any_store, tmp_path)

    assert EnedisClient(config, any_store, clock=clock).access_token() == ENEDIS_TOKEN
    assert len(enedis_token.calls) == 1


def test_an_instance_with_another_secret_fetches_its_own_token(make_config, sqlite_store, enedis_token, clock):
    assert EnedisClient(make_config(), sqlite_store, clock=clock).access_token() == ENEDIS_TOKEN
    rotated = make_config(CLIENT_SECRET="the-new-secret")
    assert EnedisClient(rotated, sqlite_store, clock=clock).access_token() == "enedis-second-token"
    assert len(enedis_token.calls) == 2
