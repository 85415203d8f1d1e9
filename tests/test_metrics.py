"""/metrics as Prometheus scrapes it, the counters the proxy feeds, and the access log."""

import logging
import sqlite3

import pytest
from helpers import PRM1, consent, get_code, poll, refresh, tokens_for
from prometheus_client.parser import text_string_to_metric_families

from deviceflow.metrics import BUDGET_WAITS, ENEDIS_CALLS, Metrics, recent

TOKEN = "scrape-token-0123456789"


def scrape(app, **headers):
    """The samples of /metrics as {(name, (label values...)): value}."""
    response = app.get("/metrics", headers=headers)
    assert response.content_type == "text/plain"
    return {
        (s.name, tuple(s.labels.values())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


@pytest.fixture
def metered(make_web, make_config):
    return make_web(make_config(METRICS="1"))


def test_counters_move_as_a_flow_runs(metered):
    code = get_code(metered)
    assert poll(metered, code["device_code"]).json["error"] == "authorization_pending"
    consent(metered, code["user_code"])
    tokens = poll(metered, code["device_code"]).json
    poll(metered, code["device_code"])  # already delivered
    refresh(metered, tokens["refresh_token"])
    refresh(metered, "never-issued")

    samples = scrape(metered)
    assert samples[("deviceflow_flows_total", ("started",))] == 1
    assert samples[("deviceflow_flows_total", ("approved",))] == 1
    assert samples[("deviceflow_flows_total", ("delivered",))] == 1
    assert samples[("deviceflow_polls_total", ("authorization_pending",))] == 1
    assert samples[("deviceflow_polls_total", ("tokens",))] == 1
    assert samples[("deviceflow_polls_total", ("invalid_grant",))] == 1
    assert samples[("deviceflow_refreshes_total", ("tokens",))] == 1
    assert samples[("deviceflow_refreshes_total", ("invalid_grant",))] == 1
    assert samples[("deviceflow_store_errors_total", ())] == 0


def test_refused_consent_counts_as_denied(metered):
    code = get_code(metered)
    consent(metered, code["user_code"], usage_points=None, error="access_denied")
    assert scrape(metered)[("deviceflow_flows_total", ("denied",))] == 1


def test_store_errors_are_counted(metered, sqlite_store, monkeypatch):
    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_store, "_conn", broken)  # every read
    monkeypatch.setattr(sqlite_store, "_connect", broken)  # the writer, once dropped
    monkeypatch.setattr(sqlite_store, "_writer", None)
    assert (
        metered.post("/device/code", {"client_id": "test-client"}, status=503).json["error"]
        == "temporarily_unavailable"
    )
    monkeypatch.undo()
    assert scrape(metered)[("deviceflow_store_errors_total", ())] >= 1


def test_metrics_are_off_unless_asked(app):
    app.get("/metrics", status=404)


def test_metrics_token_is_required_when_set(make_web, make_config):
    app = make_web(make_config(METRICS_TOKEN=TOKEN))
    refused = app.get("/metrics", status=401)
    assert refused.json["error"] == "invalid_token"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    app.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}, status=401)
    assert ("deviceflow_store_errors_total", ()) in scrape(app, Authorization=f"Bearer {TOKEN}")


def test_several_apps_count_apart(make_web, make_config):
    first, second = make_web(make_config(METRICS="1")), make_web(make_config(METRICS="1"))
    get_code(first)
    assert scrape(first)[("deviceflow_flows_total", ("started",))] == 1
    assert ("deviceflow_flows_total", ("started",)) not in scrape(second)


def test_enedis_calls_and_budget_waits_are_exposed_and_kept_per_minute(sqlite_store, clock):
    metrics = Metrics(sqlite_store, clock)
    metrics.enedis_call("data", 200)
    metrics.enedis_call("token", "timeout")
    metrics.budget_wait("refused")
    clock.advance(2 * 3600)
    metrics.enedis_call("data", 429)
    metrics.data_call(200, "legacy")

    text = metrics.exposition()[0].decode()
    assert 'deviceflow_enedis_calls_total{api="data",status="429"} 1.0' in text
    assert 'deviceflow_enedis_calls_total{api="token",status="timeout"} 1.0' in text
    assert 'deviceflow_enedis_budget_waits_total{outcome="refused"} 1.0' in text
    assert 'deviceflow_data_calls_total{source="legacy",status="200"} 1.0' in text
    assert recent(sqlite_store, ENEDIS_CALLS, 3600, clock()) == 1
    assert recent(sqlite_store, ENEDIS_CALLS, 86400, clock()) == 3
    assert recent(sqlite_store, BUDGET_WAITS, 86400, clock()) == 1
    clock.advance(86400 + 120)
    assert recent(sqlite_store, ENEDIS_CALLS, 86400, clock()) == 0


def test_counting_survives_a_store_that_is_down(mongo_store, clock):
    class Down:
        def __getattr__(self, name):
            from pymongo.errors import AutoReconnect

            def fail(*args, **kwargs):
                raise AutoReconnect("down")

            return fail

    mongo_store.col = Down()
    metrics = Metrics(mongo_store, clock)
    mongo_store.on_error = metrics.store_errors.inc
    metrics.enedis_call("data", 200)  # no exception
    assert "deviceflow_store_errors_total 1.0" in metrics.exposition()[0].decode()


def test_a_metrics_object_without_store_only_counts():
    metrics = Metrics()
    metrics.budget_wait()
    assert b'deviceflow_enedis_budget_waits_total{outcome="served"} 1.0' in metrics.exposition()[0]


# --- access log


def test_one_access_line_per_request_without_secrets(app, caplog):
    caplog.set_level(logging.INFO, logger="deviceflow.access")
    tokens = tokens_for(app, PRM1)
    refresh(app, tokens["refresh_token"])
    app.get("/nowhere", status=404)
    lines = [r.getMessage() for r in caplog.records if r.name == "deviceflow.access"]
    # code, confirmation page, form POST, return from Enedis, poll, refresh, 404
    assert len(lines) == 7
    assert lines[0].startswith("192.0.2.10 POST /device/code 200 ") and lines[0].endswith("ms")
    assert any(" GET /auth/redirect 200 " in line for line in lines)
    assert lines[-2].startswith("192.0.2.10 POST /device/token 200 ")
    assert lines[-1].startswith("192.0.2.10 GET - 404 ")
    everything = caplog.text
    for secret in (tokens["access_token"], tokens["refresh_token"], "enedis-code", "state=", "code="):
        assert secret not in everything


def test_pending_polls_are_one_access_line_a_minute(app, clock, caplog):
    caplog.set_level(logging.INFO, logger="deviceflow.access")
    code = get_code(app)
    for _ in range(14):
        poll(app, code["device_code"])
    lines = [r.getMessage() for r in caplog.records if r.name == "deviceflow.access"]
    assert len(lines) == 1 and " POST /device/code 200 " in lines[0]
    clock.advance(61)
    poll(app, code["device_code"])
    lines = [r.getMessage() for r in caplog.records if r.name == "deviceflow.access"]
    assert lines[1:] == ["POST /device/token answered 13 authorization_pending, 2 slow_down in the last 61 s"]
    poll(app, "no-such-code")  # any other answer keeps its own line
    assert caplog.records[-1].getMessage().startswith("192.0.2.10 POST /device/token 400 ")


def test_access_log_shows_the_client_behind_a_trusted_proxy(make_web, make_config, caplog):
    caplog.set_level(logging.INFO, logger="deviceflow.access")
    app = make_web(make_config(TRUSTED_PROXIES="192.0.2.10"))
    app.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    assert [r.getMessage().split(" ")[:3] for r in caplog.records if r.name == "deviceflow.access"] == [
        ["203.0.113.7", "GET", "/healthz"]
    ]


def test_an_app_counts_into_the_metrics_it_is_given(make_config, sqlite_store, clock):
    """So that the Enedis client and the routes share one registry."""
    from webtest import TestApp

    from deviceflow.web import make_app

    shared = Metrics(sqlite_store, clock)
    app = TestApp(make_app(make_config(METRICS="1"), sqlite_store, clock=clock, metrics=shared))
    shared.enedis_call("token", 200)
    get_code(app)
    samples = scrape(app)
    assert samples[("deviceflow_enedis_calls_total", ("token", "200"))] == 1
    assert samples[("deviceflow_flows_total", ("started",))] == 1
