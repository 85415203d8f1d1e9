"""The pool of random bytes (deviceflow.randomness): what `secrets` would give, each byte once, and the server's
random values drawn from it rather than from a system call each."""

import base64
import math
import os
import secrets
import string
import sys
import threading

import pytest
from helpers import confirm, get_code, poll

from deviceflow import randomness, sealing
from deviceflow.flow import DeviceFlow
from deviceflow.flow.records import ACCESS_TOKEN, SERVER_KEY, SERVER_META, STATE
from deviceflow.pages import BROWSER_COOKIE
from deviceflow.store import digest

BLOCK = randomness.BLOCK


def counting(start: int, size: int) -> bytes:
    """Bytes `start` to `start + size` of a stream of 4-byte big-endian counters: every aligned slice differs,
    and sorting aligned slices puts them back in the stream's order."""
    first, last = start // 4, (start + size + 3) // 4
    stream = b"".join(i.to_bytes(4, "big") for i in range(first, last))
    return stream[start % 4 : start % 4 + size]


class System:
    """os.urandom as the pool sees it: each read's size, and every byte it gave, in order."""

    def __init__(self, source):
        self.source = source
        self.reads: list[int] = []
        self.given = bytearray()

    def __call__(self, size: int) -> bytes:
        data = self.source(len(self.given), size)
        self.reads.append(size)
        self.given += data
        return data


def pool_on(monkeypatch, source) -> System:
    system = System(source)
    monkeypatch.setattr(randomness, "system_randomness", system)
    randomness.empty_pool()
    return system


@pytest.fixture
def counted(monkeypatch):
    """The pool empty and reading the counting stream."""
    yield pool_on(monkeypatch, counting)
    randomness.empty_pool()  # no test after this one gets predictable bytes


@pytest.fixture
def recorded(monkeypatch):
    """The pool empty and reading the system's randomness, every byte of it recorded."""
    yield pool_on(monkeypatch, lambda start, size: os.urandom(size))
    randomness.empty_pool()


def unpadded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


URLSAFE = set(string.ascii_letters + string.digits + "-_")


@pytest.mark.parametrize("nbytes", [*range(101), None, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK])
def test_tokens_have_the_length_and_alphabet_of_secrets(nbytes):
    expected = 32 if nbytes is None else nbytes
    raw = randomness.token_bytes(nbytes)
    assert isinstance(raw, bytes) and len(raw) == len(secrets.token_bytes(nbytes)) == expected
    hexed = randomness.token_hex(nbytes)
    assert len(hexed) == len(secrets.token_hex(nbytes)) and set(hexed) <= set("0123456789abcdef")
    assert len(bytes.fromhex(hexed)) == expected
    urlsafe = randomness.token_urlsafe(nbytes)
    assert len(urlsafe) == len(secrets.token_urlsafe(nbytes)) and set(urlsafe) <= URLSAFE
    assert len(unpadded(urlsafe)) == expected


def test_a_negative_size_is_refused_as_secrets_refuses_it():
    for token in (randomness.token_bytes, randomness.token_hex, randomness.token_urlsafe):
        with pytest.raises(ValueError):
            token(-1)


def test_every_byte_read_goes_out_once_in_order(counted):
    sizes = [size for _ in range(3) for size in range(101)]  # 15,150 bytes: across three block boundaries
    tokens = [randomness.token_bytes(size) for size in sizes]
    handed_out = sum(sizes)
    assert b"".join(tokens) == counted.given[:handed_out]
    assert counted.reads == [BLOCK] * math.ceil(handed_out / BLOCK)


def test_threads_never_share_a_byte(counted):
    threads, draws, size = 16, 2_000, 24  # 24 does not divide a block: tokens straddle block boundaries
    barrier = threading.Barrier(threads)
    drawn: list[list[bytes]] = [[] for _ in range(threads)]

    def draw(mine):
        barrier.wait()
        for _ in range(draws):
            mine.append(randomness.token_bytes(size))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads taking turns as often as they can, within the pool's lock too
    try:
        workers = [threading.Thread(target=draw, args=(mine,)) for mine in drawn]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    every = [token for mine in drawn for token in mine]
    assert len(every) == threads * draws and len(set(every)) == len(every)
    assert all(mine == sorted(mine) for mine in drawn)  # each thread got later bytes each time
    handed_out = threads * draws * size
    # Together, exactly the bytes read, in order, none skipped; the rest of the last block waits in the pool.
    assert b"".join(sorted(every)) == counted.given[:handed_out]
    assert counted.reads == [BLOCK] * math.ceil(handed_out / BLOCK)


def test_the_system_is_read_in_blocks(counted):
    for _ in range(1_000):
        randomness.token_urlsafe(32)
    assert len(counted.reads) <= math.ceil(32_000 / BLOCK) + 1


def test_a_request_bigger_than_a_block_is_read_apart(counted):
    first = randomness.token_bytes(8)
    big = randomness.token_bytes(BLOCK + 1)
    assert counted.reads == [BLOCK, BLOCK + 1] and big == counted.given[BLOCK:]
    # The pool goes on where it was.
    assert first + randomness.token_bytes(8) == counted.given[:16]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this system")
def test_a_forked_child_does_not_hand_out_the_parents_next_bytes():
    randomness.empty_pool()
    randomness.token_bytes(1)  # the pool now holds the rest of a block, which the child inherits
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first token, and out without running anything of pytest's
        try:
            os.write(write_end, randomness.token_bytes(32))
        finally:
            os._exit(0)
    os.close(write_end)
    child = b""
    while chunk := os.read(read_end, 64):
        child += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != randomness.token_bytes(32)


# --- the server's random values come from the pool


def test_a_device_code_and_its_user_code_come_from_the_pool(monkeypatch, config, sqlite_store, clock):
    # Every byte 5: the user code's letters are all the alphabet's sixth, the device code is 32 fives.
    pool_on(monkeypatch, lambda start, size: bytes([5]) * size)
    try:
        codes = DeviceFlow(config, sqlite_store, clock=clock).authorization.issue_codes("test-client")
    finally:
        randomness.empty_pool()
    assert codes["user_code"] == "HHHH-HHHH"
    assert unpadded(codes["device_code"]) == bytes([5]) * 32


def test_the_pages_consent_and_tokens_come_from_the_pool(recorded, make_web, config):
    app = make_web(config)
    code = get_code(app)
    query = confirm(app, code["user_code"])
    app.get("/auth/redirect", {"state": query["state"], "code": "enedis-code", "usage_point_id": "11111111111111"})
    tokens = poll(app, code["device_code"]).json
    store = app.app.store
    drawn = {
        "device code": unpadded(code["device_code"]),
        "browser id": unpadded(app.cookies[BROWSER_COOKIE]),
        "CSRF key": bytes.fromhex(store.get(SERVER_META, SERVER_KEY)["key"]),
        "state": unpadded(query["state"]),
        "access token": unpadded(tokens["access_token"]),
        "refresh token": unpadded(tokens["refresh_token"]),
        "token chain": bytes.fromhex(store.get(ACCESS_TOKEN, digest(tokens["access_token"]))["chain"]),
    }
    assert [name for name, value in drawn.items() if value not in recorded.given] == []


def test_the_pkce_verifier_comes_from_the_pool(recorded, make_web, make_config):
    app = make_web(make_config(FLOW="DEVICE", TOKEN_ENDPOINT="https://oauth.example.org/token", PKCE="1"))
    query = confirm(app, get_code(app)["user_code"])
    verifier = app.app.store.get(STATE, query["state"])["verifier"]
    assert unpadded(verifier) in recorded.given


def test_sealing_nonces_come_from_the_pool(recorded):
    encrypted = base64.b64decode(sealing.encrypt("a secret", b"data"))
    sealed = base64.b64decode(sealing.seal_to(sealing.public_key_for("a device code"), b"data", b"aad"))
    assert encrypted[: sealing.NONCE_SIZE] in recorded.given
    assert sealed[sealing.KEY_SIZE : sealing.KEY_SIZE + sealing.NONCE_SIZE] in recorded.given
