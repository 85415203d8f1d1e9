"""What an operator hands the server, taken as an attack surface (issue 16,
findings 5 and 7): an `http://` upstream endpoint (the secret and the tokens
would travel in clear), connection strings whose credentials sit outside the
password (printed by `stats` and in error messages), and a PHP cache with
expiry dates in year 9999 and one-character tokens."""

from datetime import UTC, datetime, timedelta

import pytest
from helpers import PRM1, php_token, refresh

from deviceflow import config as configuration
from deviceflow import ops
from deviceflow.cli import main
from deviceflow.flow import DeviceFlow
from deviceflow.store import digest

ENDPOINTS = ("TOKEN_ENDPOINT", "TOKEN_ENDPOINT_V3", "DATA_ENDPOINT", "AUTHORIZATION_ENDPOINT")


# --- finding 5: upstream endpoints in clear


@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize(
    "url",
    [
        "http://gw.ext.prod.api.enedis.fr",
        "http://192.168.1.20:8080/enedis",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example/x",
        "http://[::ffff:10.0.0.1]/x",
        "HTTP://enedis.example",
    ],
)
def test_an_http_upstream_endpoint_is_refused(make_config, name, url):
    with pytest.raises(configuration.ConfigError, match=f"^{name} must be an https URL"):
        make_config(**{name: url})


@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/enedis",
        "http://127.8.9.10",
        "http://localhost:9000",
        "http://[::1]:9000/x",
        "https://enedis.example",
    ],
)
def test_https_or_a_loopback_upstream_is_taken(make_config, name, url):
    assert getattr(make_config(**{name: url}), name.lower()) == url


def test_an_http_endpoint_stops_every_command_with_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    for name in configuration.KNOWN_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLIENT_ID", "c")
    monkeypatch.setenv("CLIENT_SECRET", "the-secret-value")
    monkeypatch.setenv("DATA_ENDPOINT", "http://enedis.example")
    with pytest.raises(SystemExit) as stopped:
        main(["stats"])  # serve reads the configuration the same way, then would serve for ever
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "DATA_ENDPOINT must be an https URL" in err and "the-secret-value" not in err


def test_demo_mode_still_talks_to_its_simulator_over_loopback_http():
    config = configuration.load({"BASE_URL": "http://192.168.1.5:8080"}, dotenv_path=None, demo=True, port=8080)
    assert config.data_endpoint.startswith("http://127.0.0.1:8080/")
    assert config.authorization_endpoint.startswith("http://192.168.1.5:8080/")  # the browser's way in


# --- finding 7: redaction

SECRETS = [
    "hunter2",
    "p@ss/w:rd",
    "KeyFileP4ss",
    "FQoGZXIvYXdzEJr//session-token",
    "aws-secret",
    "sig-value",
    "frag-secret",
]


@pytest.mark.parametrize(
    "uri, kept",
    [
        ("mongodb://php:hunter2@db.example:27017/devicecode", "mongodb://php:***@db.example:27017/devicecode"),
        (
            "mongodb://php:p@ss/w:rd@db1.example,db2.example/devicecode?replicaSet=rs0",
            "mongodb://php:***@db1.example,db2.example/devicecode?replicaSet=rs0",
        ),
        (
            "mongodb://db.example/?tls=true&tlsCertificateKeyFile=/etc/c.pem&tlsCertificateKeyFilePassword=KeyFileP4ss",
            "mongodb://db.example/?tls=true&tlsCertificateKeyFile=***&tlsCertificateKeyFilePassword=***",
        ),
        (
            "mongodb+srv://AKIAEXAMPLE:aws-secret@cluster.example/?authMechanism=MONGODB-AWS"
            "&authMechanismProperties=AWS_SESSION_TOKEN:FQoGZXIvYXdzEJr//session-token",
            "mongodb+srv://AKIAEXAMPLE:***@cluster.example/?authMechanism=MONGODB-AWS&authMechanismProperties=***",
        ),
        (
            "mongodb://db.example/x?password=hunter2;appName=deviceflow",
            "mongodb://db.example/x?password=***;appName=deviceflow",
        ),
        ("mongodb://db.example/x?sig=sig-value&Token=aws-secret", "mongodb://db.example/x?sig=***&Token=***"),
        ("mongodb://u:hunter2@[::1/x", "mongodb://u:***@[::1/x"),  # malformed: urlsplit would raise
        ("mongodb://db.example/x#frag-secret", "mongodb://db.example/x#***"),
        ("mongodb://db.example:27017/devicecode", "mongodb://db.example:27017/devicecode"),
        ("mongodb://user@db.example/x?authSource=admin", "mongodb://user@db.example/x?authSource=admin"),
    ],
)
def test_redact_uri_hides_every_credential(uri, kept):
    shown = configuration.redact_uri(uri)
    assert shown == kept
    assert not any(secret in shown for secret in SECRETS)


def test_the_configuration_never_shows_a_credential_of_the_mongodb_uri(make_config):
    config = make_config(MONGODB_URI="mongodb://db.example/x?tlsCertificateKeyFilePassword=KeyFileP4ss")
    assert "KeyFileP4ss" not in repr(config) and "KeyFileP4ss" not in str(config)


def test_stats_on_an_unreachable_mongodb_does_not_print_its_credentials(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    for name in configuration.KNOWN_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLIENT_ID", "c")
    monkeypatch.setenv(
        "MONGODB_URI",
        "mongodb://127.0.0.1:1/x?tls=false&authMechanismProperties=AWS_SESSION_TOKEN:FQoGZXIvYXdzEJr//session-token",
    )
    with pytest.raises(SystemExit):
        main(["stats"])
    out, err = capsys.readouterr()
    assert "session-token" not in out + err and "authMechanismProperties=***" in err


# --- finding 7: import-php


@pytest.fixture
def flow(config, sqlite_store, clock):
    return DeviceFlow(config, sqlite_store, clock=clock)


def php_row(token, expires, points=PRM1):
    return ops.Row(f"refresh_token:{token}", points, expires)


def test_an_expiry_the_php_server_could_not_have_issued_is_capped_at_duration(flow, sqlite_store, clock):
    now = datetime.fromtimestamp(clock(), UTC)
    rows = [
        php_row(php_token(1), datetime(9999, 12, 31, tzinfo=UTC)),
        php_row(php_token(2), now + timedelta(days=4 * 365)),
        php_row(php_token(3), now + timedelta(days=30)),
    ]
    summary = ops.import_php(flow, rows)
    assert summary.imported == 3 and summary.capped == 2
    longest = clock() + flow.config.duration_seconds
    assert sqlite_store.get("refresh", digest(php_token(1)))["expires"] == longest
    assert sqlite_store.get("refresh", digest(php_token(2)))["expires"] == longest
    assert sqlite_store.get("refresh", digest(php_token(3)))["expires"] == (now + timedelta(days=30)).timestamp()
    clock.advance(flow.config.duration_seconds + 1)
    assert sqlite_store.get("refresh", digest(php_token(1))) is None


@pytest.mark.parametrize("token", ["a", "0123456789abcdef", "x" * (ops.MIN_TOKEN_LENGTH - 1)])
def test_a_token_too_short_to_be_a_php_one_is_refused(flow, make_web, config, sqlite_store, clock, token):
    later = datetime.fromtimestamp(clock(), UTC) + timedelta(days=30)
    summary = ops.import_php(flow, [php_row(token, later)])
    assert summary.imported == 0 and dict(summary.skipped) == {ops.BAD_TOKEN: 1}
    assert refresh(make_web(config, sqlite_store), token).json["error"] == "invalid_grant"


def test_a_php_sized_token_is_taken(flow, clock):
    later = datetime.fromtimestamp(clock(), UTC) + timedelta(days=30)
    rows = [php_row("f" * ops.MIN_TOKEN_LENGTH, later), php_row(php_token(1), later)]
    assert ops.import_php(flow, rows).imported == 2
