"""Shared fixtures: a test configuration, a controllable clock, stores, the app."""

import pytest
from webtest import TestApp

from deviceflow import config as configuration
from deviceflow.store import MongoStore, SQLiteStore
from deviceflow.web import make_app

TEST_ENV = {"CLIENT_ID": "test-client", "EXTERNAL_CLIENT_ID": "domoticz", "CLIENT_SECRET": "s3cr3t-value"}


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
def app(make_web, config):
    return make_web(config)
