"""Shared fixtures: a test configuration, a controllable clock, stores, the app."""

import pytest
from helpers import CONTROL_TOKENS
from webtest import TestApp

from deviceflow import config as configuration
from deviceflow.store import MongoStore, SQLiteStore
from deviceflow.web import make_app

# Most tests drive the pre-2026 return (`code` + `usage_point_id` in the URL), which needs no Enedis
# look-up; the v2 return and the default are tested on their own (test_consent_v2, test_config).
TEST_ENV = {
    "CLIENT_ID": "test-client",
    "EXTERNAL_CLIENT_ID": "domoticz",
    "CLIENT_SECRET": "s3cr3t-value",
    "ENEDIS_AUTHORIZE_VERSION": "v1",
}


class Clock:
    """Time that tests move by hand."""

    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_config(tmp_path):
    def make(**env):
        values = {**TEST_ENV, "SQLITE_PATH": str(tmp_path / "store.sqlite3"), **env}
        return configuration.load({k: v for k, v in values.items() if v is not None}, dotenv_path=None)

    return make


@pytest.fixture
def config(make_config):
    return make_config()


@pytest.fixture
def sqlite_store(tmp_path, clock):
    store = SQLiteStore(str(tmp_path / "store.sqlite3"), clock=clock)
    yield store
    store.close()


@pytest.fixture
def mongo_store(clock):
    mongomock = pytest.importorskip("mongomock")
    return MongoStore(mongomock.MongoClient(), "deviceflow-test", clock=clock)


@pytest.fixture(params=["sqlite", "mongomock"])
def any_store(request):
    """The store contract runs on both implementations."""
    return request.getfixturevalue("sqlite_store" if request.param == "sqlite" else "mongo_store")


@pytest.fixture
def make_web(sqlite_store):
    def make(config, store=None, upstream=None):
        store = store or sqlite_store
        wsgi = make_app(config, store, upstream=upstream, clock=store.clock)
        return TestApp(wsgi, extra_environ={"REMOTE_ADDR": "192.0.2.10"})

    return make


@pytest.fixture
def make_proxy(make_web, make_config, sqlite_store, clock):
    """The server with its Enedis client (Enedis on `responses` or unreachable); each call is another
    instance on the same store."""
    from deviceflow.enedis import EnedisClient

    def make(**env):
        config = make_config(**env)
        return make_web(config, upstream=EnedisClient(config, sqlite_store, clock=clock, sleep=clock.advance))

    return make


@pytest.fixture
def app(make_web, config):
    return make_web(config)


@pytest.fixture
def enedis_mock():
    """Enedis as `responses`: any call not registered fails as unreachable."""
    import responses

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def processes():
    """Server processes a test starts (append them): stopped at teardown."""
    import subprocess

    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def live_server(tmp_path_factory, processes):
    """Start `deviceflow serve --demo` on 127.0.0.1 in a subprocess; a factory
    taking extra environment, returning the base URL. Stopped at teardown.
    `demo=False` serves the configured proxy instead (with SQLITE_PATH);
    `live_server.control_tokens[base]` is the simulator's control token a demo printed."""
    import os
    import re
    import socket
    import subprocess
    import sys
    import time as _time

    import requests

    started = processes

    def start(sqlite_path=None, port=None, demo=True, workdir=None, **env):
        workdir = workdir or tmp_path_factory.mktemp("live")  # no stray .env is picked up
        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        child_env = {k: v for k, v in os.environ.items() if k not in configuration.KNOWN_NAMES}
        if not demo or sqlite_path:
            child_env["SQLITE_PATH"] = str(sqlite_path or workdir / "store.sqlite3")
        child_env.update({"BASE_URL": f"http://127.0.0.1:{port}", "ENEDIS_AUTHORIZE_VERSION": "v1", **env})
        child_env = {k: v for k, v in child_env.items() if v is not None}
        demo_flag = ["--demo"] if demo else []
        process = subprocess.Popen(
            [sys.executable, "-m", "deviceflow", "serve", *demo_flag, "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "server.log", "wb"),
        )
        process.log = workdir / "server.log"  # for tests that read what the server logged
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = _time.monotonic() + 20
        while _time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    found = re.search(r"simulator control token (\S+)", (workdir / "server.log").read_text())
                    if found:
                        start.control_tokens[base] = found.group(1)
                    return base
            except requests.RequestException:
                pass
            if process.poll() is not None:
                break
            _time.sleep(0.1)
        raise RuntimeError(f"server did not start: {(workdir / 'server.log').read_text()[-2000:]}")

    def proxy(sqlite_path, **env):
        """The proxy itself (not a demo, which keeps no store) on `sqlite_path`, with
        Enedis played by the simulator of one demo server started for the test."""
        if not hasattr(start, "enedis"):
            start.enedis = start() + "/enedis"
        enedis = start.enedis
        return start(
            sqlite_path=sqlite_path,
            demo=False,
            **{
                "CLIENT_ID": configuration.DEMO_CLIENT_ID,
                "CLIENT_SECRET": "live-test-secret",
                "AUTHORIZATION_ENDPOINT": f"{enedis}/dataconnect/v1/oauth2/authorize",
                "TOKEN_ENDPOINT": f"{enedis}/v1/oauth2/token",
                "TOKEN_ENDPOINT_V3": f"{enedis}/oauth2/v3/token",
                "DATA_ENDPOINT": enedis,
                **env,
            },
        )

    start.processes = started
    start.control_tokens = CONTROL_TOKENS
    start.proxy = proxy
    return start
