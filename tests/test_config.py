"""Configuration: the PHP server's names and defaults, validation, secrets kept out of sight."""

import dataclasses
import difflib
import json
import logging
from pathlib import Path

import pytest

from deviceflow import config as configuration
from deviceflow.config import SETTINGS, ConfigError, load

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_spec():
    c = load({"CLIENT_ID": "abc"}, dotenv_path=None)
    assert c.base_url == "http://localhost:8080"
    assert c.authorization_endpoint == "https://mon-compte-particulier.enedis.fr/dataconnect/v2/oauth2/authorize"
    assert c.token_endpoint == "https://gw.prd.api.enedis.fr/v1/oauth2/token"
    assert c.token_endpoint_v3 == "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
    assert c.data_endpoint == "https://gw.ext.prod.api.enedis.fr"
    assert c.redirect_uri == "http://localhost:8080/auth/redirect"
    assert (c.enedis_api_mode, c.enedis_authorize_version, c.duration) == ("auto", "v2", "P3Y")
    assert (c.limit_requests_per_minute, c.interval, c.code_lifetime) == (12, 5, 300)
    assert (c.enedis_max_calls_per_second, c.timeouts, c.threads) == (5.0, (5.0, 30.0), 32)
    assert (c.db_type, c.sqlite_path, c.log_level) == ("sqlite", "./data/deviceflow.sqlite3", "INFO")
    assert c.flow == "" and not c.pkce and c.version_min is None


def test_client_id_is_required_except_in_demo():
    with pytest.raises(ConfigError, match="CLIENT_ID"):
        load({}, dotenv_path=None)
    demo = load({}, dotenv_path=None, demo=True, port=9090)
    assert demo.client_id == "deviceflow-demo"
    assert demo.base_url == "http://localhost:9090"
    assert demo.authorization_endpoint == "http://localhost:9090/enedis/dataconnect/v2/oauth2/authorize"
    assert demo.token_endpoint_v3 == "http://127.0.0.1:9090/enedis/oauth2/v3/token"
    assert demo.data_endpoint == "http://127.0.0.1:9090/enedis"


@pytest.mark.parametrize(
    "name, value",
    [
        ("BASE_URL", "localhost:8080"),
        ("LIMIT_REQUESTS_PER_MINUTE", "often"),
        ("LIMIT_REQUESTS_PER_MINUTE", "0"),
        ("CODE_LIFETIME", "-5"),
        ("ENEDIS_API_MODE", "fast"),
        ("ENEDIS_AUTHORIZE_VERSION", "v3"),
        ("FLOW", "IMPLICIT"),
        ("DURATION", "3 years"),
        ("VERSION_MIN", "two"),
        ("DB_TYPE", "postgres"),
        ("TRUSTED_PROXIES", "10.0.0.0/33"),
        ("THREADS", "many"),
        ("LOG_LEVEL", "LOUD"),
        ("UPSTREAM_READ_TIMEOUT", "nan"),
        ("DATA_ENDPOINT", "ftp://x"),
        ("MONGODB_URI", "postgres://x"),
        ("CONNECTION_LIMIT", "5"),
        ("CONNECTION_LIMIT", "lots"),
        ("REQUEST_TIMEOUT", "0"),
        ("REQUEST_TIMEOUT", "nan"),
    ],
)
def test_a_malformed_value_names_its_variable(name, value):
    with pytest.raises(ConfigError) as error:
        load({"CLIENT_ID": "abc", name: value}, dotenv_path=None)
    assert name in str(error.value)


def test_secret_never_in_repr_or_error():
    c = load(
        {"CLIENT_ID": "abc", "CLIENT_SECRET": "topsecret", "MONGODB_URI": "mongodb://user:dbpass@db.example:27017/app"},
        dotenv_path=None,
    )
    assert "topsecret" not in repr(c) and "dbpass" not in repr(c) and "dbpass" not in str(c)
    with pytest.raises(ConfigError) as error:
        load({"CLIENT_ID": "abc", "CLIENT_SECRET": "topsecret", "CODE_LIFETIME": "x"}, dotenv_path=None)
    assert "topsecret" not in str(error.value)


def test_dotenv_is_read_and_the_environment_wins(tmp_path, caplog):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "CLIENT_ID=from-file\nBASE_URL=https://proxy.example.org/\nAPP_SECRET=php-only\nLIMIT_REQUESTS_PER_MINUTE=6\n"
    )
    with caplog.at_level(logging.INFO, logger="deviceflow.config"):
        c = load({"CLIENT_ID": "from-env"}, dotenv_path=env_file)
    assert c.client_id == "from-env"
    assert c.base_url == "https://proxy.example.org"
    assert c.interval == 10
    assert "APP_SECRET" in caplog.text and "php-only" not in caplog.text


def test_php_mongodb_settings_build_the_uri():
    c = load(
        {
            "CLIENT_ID": "abc",
            "DB_ADDRESS": "mongo.local",
            "DB_PORT": "27018",
            "DB_USER": "u",
            "DB_PASSWORD": "p@ss",
            "DB_NAME": "proxy",
        },
        dotenv_path=None,
    )
    assert c.db_type == "mongodb"
    assert c.mongodb_uri == "mongodb://u:p%40ss@mongo.local:27018/proxy"
    assert c.mongodb_db == "proxy"


def test_durations_and_lists():
    c = load(
        {
            "CLIENT_ID": "a",
            "DURATION": "P1Y6M",
            "EXTERNAL_CLIENT_ID": "x, y",
            "TRUSTED_PROXIES": "10.0.0.1,192.168.0.0/16",
            "FLOW": "device",
            "PKCE": "1",
            "VERSION_MIN": "2.5",
        },
        dotenv_path=None,
    )
    assert c.duration_seconds == (365 + 180) * 86400
    assert c.allowed_client_ids == {"a", "x", "y"}
    assert len(c.trusted_proxies) == 2 and c.device_mode and c.pkce and c.version_min == (2, 5)


def test_authorize_v1_changes_the_default_consent_page():
    c = load({"CLIENT_ID": "a", "ENEDIS_AUTHORIZE_VERSION": "v1"}, dotenv_path=None)
    assert c.authorization_endpoint.endswith("/dataconnect/v1/oauth2/authorize")


V1_PAGE = "https://mon-compte-particulier.enedis.fr/dataconnect/v1/oauth2/authorize"


def test_a_php_env_naming_the_v1_page_starts_as_v1_with_one_warning():
    """A PHP server's .env names the pre-2026 page and no version: it keeps working, and the operator hears
    that v1 returns cannot be checked with Enedis."""
    php = load({"CLIENT_ID": "a", "CLIENT_SECRET": "s", "AUTHORIZATION_ENDPOINT": V1_PAGE}, dotenv_path=None)
    assert (php.enedis_authorize_version, php.authorization_endpoint) == ("v1", V1_PAGE)
    [warning] = configuration.startup_warnings(php)
    assert "cannot confirm" in warning and "ENEDIS_AUTHORIZE_VERSION=v2" in warning
    # The version named wins over the page's path; v2 has nothing to warn about.
    v2 = load({"CLIENT_ID": "a", "AUTHORIZATION_ENDPOINT": V1_PAGE, "ENEDIS_AUTHORIZE_VERSION": "v2"}, dotenv_path=None)
    assert v2.enedis_authorize_version == "v2" and configuration.startup_warnings(v2) == []
    assert configuration.startup_warnings(load({"CLIENT_ID": "a"}, dotenv_path=None)) == []
    # FLOW=DEVICE exchanges codes upstream; only its client_credentials variant (a configured secret) takes v1 returns.
    device = {"FLOW": "DEVICE", "ENEDIS_AUTHORIZE_VERSION": "v1"}
    assert configuration.startup_warnings(load(device, dotenv_path=None)) == []
    assert len(configuration.startup_warnings(load({**device, "CLIENT_SECRET": "s"}, dotenv_path=None))) == 1


def test_config_is_frozen():
    c = load({"CLIENT_ID": "a"}, dotenv_path=None)
    with pytest.raises(Exception):
        c.client_id = "b"
    assert configuration.KNOWN_NAMES >= {"BASE_URL", "CLIENT_SECRET", "THREADS"}


# The PHP server's .env.example, as an operator would have filled it in for MongoDB.
PHP_DOTENV = """BASE_URL=https://example.com/appli
#LIMIT_REQUESTS_PER_MINUTE=12
REDIRECT_URI=https://example.com/appli/Auth
#VERSION_MIN=
#AUTHORIZATION_ENDPOINT=https://mon-compte-particulier.enedis.fr/dataconnect/v1/oauth2/authorize
#TOKEN_ENDPOINT=https://gw.prd.api.enedis.fr/v1/oauth2/token
#TOKEN_ENDPOINT_V3=https://ext.prod.api.enedis.fr/oauth2/v3/token
#DATA_ENDPOINT=https://ext.prod.api.enedis.fr
DISABLE_DATA_ENPOINT_AUTH=true
#PKCE=
#FLOW=
CLIENT_ID=clientid
CLIENT_SECRET=clientsecret
#DURATION=P3Y
DB_ADDRESS=db.example.com
#DB_PORT=5432
DB_USER=dbuser
DB_PASSWORD=passwordexample1234
DB_NAME=db_base

#Postgresql if unset
DB_TYPE="mongodb"

#TRUSTED_PROXIES=
##Examples
##TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8

###> symfony/framework-bundle ###
APP_ENV=prod
APP_SECRET=1234567891234567894f16123
###< symfony/framework-bundle ###
"""


def test_the_php_servers_dotenv_works_as_is(tmp_path, caplog, mongo_store):
    from webtest import TestApp

    from deviceflow.web import make_app

    env_file = tmp_path / ".env"
    env_file.write_text(PHP_DOTENV)
    with caplog.at_level(logging.INFO, logger="deviceflow.config"):
        c = load({}, dotenv_path=env_file)
    ignored = [r.getMessage() for r in caplog.records if r.name == "deviceflow.config"]
    assert len(ignored) == 1 and all(k in ignored[0] for k in ("APP_ENV", "APP_SECRET", "DISABLE_DATA_ENPOINT_AUTH"))
    for value in ("1234567891234567894f16123", "clientsecret", "passwordexample1234"):
        assert value not in caplog.text
    assert (c.base_url, c.redirect_uri, c.client_id, c.client_secret) == (
        "https://example.com/appli",
        "https://example.com/appli/Auth",
        "clientid",
        "clientsecret",
    )
    assert (c.db_type, c.mongodb_db) == ("mongodb", "db_base")
    assert c.mongodb_uri == "mongodb://dbuser:passwordexample1234@db.example.com:27017/db_base"
    assert not c.device_mode and c.interval == 5

    # The app builds and serves with it (the store is mongomock: no network here).
    app = TestApp(make_app(c, mongo_store, clock=mongo_store.clock), extra_environ={"wsgi.url_scheme": "https"})
    code = app.post("/device/code", {"client_id": "clientid"}).json
    assert code["verification_uri"] == "https://example.com/appli/device"
    form = app.get(code["verification_uri_complete"].replace(c.base_url, "")).forms[0]
    assert form.action == "https://example.com/appli/auth/verify_code"  # behind the operator's /appli prefix
    consent = app.post("/auth/verify_code", dict(form.submit_fields()))
    assert "redirect_uri=https%3A%2F%2Fexample.com%2Fappli%2FAuth" in consent.headers["Location"]
    assert app.get("/healthz").json["store"] == "mongodb"


def test_metrics_are_off_by_default_and_the_token_is_never_shown():
    assert load({"CLIENT_ID": "abc"}, dotenv_path=None).metrics is False
    c = load({"CLIENT_ID": "abc", "METRICS": "1", "METRICS_TOKEN": "scrape-token-0123456789"}, dotenv_path=None)
    assert c.metrics is True and c.metrics_token == "scrape-token-0123456789"
    assert "scrape-token" not in repr(c) and "metrics_token='***'" in repr(c)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("METRICS", "maybe", "METRICS must be 1 or 0"),
        ("METRICS_TOKEN", "short", "METRICS_TOKEN must be at least 16"),
        ("METRICS_TOKEN", "sixteen chars with spaces", "METRICS_TOKEN must be at least 16"),
    ],
)
def test_bad_metrics_settings_are_refused_without_echoing_the_token(name, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        load({"CLIENT_ID": "abc", name: value}, dotenv_path=None)
    assert name != "METRICS_TOKEN" or value not in str(error.value)


# --- Home Assistant add-on options (/data/options.json) ---------------------

ADDON_OPTIONS = {
    "base_url": "https://enedis.example.org",
    "client_id": "enedis-app",
    "client_secret": "s3cr3t-opt",
    "flow": "client_credentials",
    "enedis_authorize_version": "v2",
    "enedis_api_mode": "new",
    "log_level": "debug",
}


@pytest.fixture
def options_file(tmp_path):
    """Write an options file as the Supervisor would, in a folder standing for /data."""

    def write(text=None, **options):
        path = tmp_path / "data" / "options.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text if text is not None else json.dumps({**ADDON_OPTIONS, **options}))
        return path

    return write


def test_addon_options_map_to_the_spec_settings(options_file):
    path = options_file(external_client_id="domoticz-linky, other")
    c = load({}, dotenv_path=None, options_path=path)
    assert (c.base_url, c.client_id, c.client_secret) == ("https://enedis.example.org", "enedis-app", "s3cr3t-opt")
    assert c.allowed_client_ids == {"enedis-app", "domoticz-linky", "other"}
    assert c.flow == "" and not c.device_mode
    assert c.authorization_endpoint.endswith("/dataconnect/v2/oauth2/authorize") and c.enedis_api_mode == "new"
    assert c.log_level == "DEBUG"
    assert c.redirect_uri == "https://enedis.example.org/auth/redirect"
    # the embedded store lives beside the options file: /data/deviceflow.sqlite3 in the add-on
    assert (c.db_type, c.sqlite_path) == ("sqlite", str(path.parent / "deviceflow.sqlite3"))


def test_addon_device_mode_and_mongodb(options_file):
    path = options_file(flow="device", mongodb_uri="mongodb://db.local:27017/enedis")
    c = load({}, dotenv_path=None, options_path=path)
    assert c.flow == "DEVICE" and c.device_mode
    assert (c.db_type, c.mongodb_db) == ("mongodb", "enedis")


def test_dotenv_and_environment_win_over_addon_options(options_file, tmp_path):
    path = options_file(flow="device")
    env_file = tmp_path / ".env"
    env_file.write_text("CLIENT_ID=from-dotenv\nSQLITE_PATH=/tmp/elsewhere.sqlite3\n")
    c = load({"BASE_URL": "https://from-env.example.org", "FLOW": ""}, dotenv_path=env_file, options_path=path)
    assert (c.base_url, c.client_id, c.flow) == ("https://from-env.example.org", "from-dotenv", "")
    assert c.sqlite_path == "/tmp/elsewhere.sqlite3"
    assert c.client_secret == "s3cr3t-opt"


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"base_url": "https://x.example.org",', "is not valid JSON (line 1"),
        ('["client_id"]', "must hold a JSON object"),
        ('{"client_id": "a", "clientid": "b"}', "unknown option 'clientid'"),
        ('{"client_id": "a", "flow": "implicit"}', "option flow must be one of client_credentials, device"),
        ('{"client_id": "a", "client_secret": 12345678}', "option client_secret must be text"),
    ],
)
def test_a_malformed_options_file_names_the_file_and_the_option(options_file, text, expected):
    path = options_file(text)
    with pytest.raises(ConfigError) as error:
        load({}, dotenv_path=None, options_path=path)
    assert str(path) in str(error.value) and expected in str(error.value)
    assert "12345678" not in str(error.value)


def test_a_bad_option_value_names_the_option_unless_the_environment_overrides_it(options_file):
    path = options_file(base_url="homeassistant.local:8080", client_secret="s3cr3t-opt")
    with pytest.raises(ConfigError) as error:
        load({}, dotenv_path=None, options_path=path)
    message = str(error.value)
    assert message.startswith("BASE_URL must be an http(s) URL") and f"(option base_url in {path})" in message
    assert "s3cr3t-opt" not in message
    assert (
        load({"BASE_URL": "http://192.0.2.5:8080"}, dotenv_path=None, options_path=path).base_url
        == "http://192.0.2.5:8080"
    )


def test_a_missing_options_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="options file .*nowhere.json not found"):
        load({}, dotenv_path=None, options_path=tmp_path / "nowhere.json")


def test_pass_through_towards_enedis_v2_page_is_warned_about():
    """Enedis's v2 page returns no authorization code: a FLOW=DEVICE server pointed at it cannot complete."""
    [warning] = configuration.startup_warnings(load({"FLOW": "DEVICE"}, dotenv_path=None))
    assert "returns no authorization code" in warning
    generic = load({"FLOW": "DEVICE", "AUTHORIZATION_ENDPOINT": "https://auth.example.com/authorize"}, dotenv_path=None)
    assert configuration.startup_warnings(generic) == []


@pytest.mark.parametrize(
    "value, on",
    [
        ("", False),
        ("0", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
        ("1", True),
        ("true", True),
        ("yes", True),
        ("S256", True),
    ],
)
def test_pkce_is_read_as_the_php_server_read_it(value, on):
    """A PHP boolean: "" and "0" are false there; the words a flag takes for off are off too."""
    assert load({"CLIENT_ID": "a", "PKCE": value}, dotenv_path=None).pkce is on
    assert load({"CLIENT_ID": "a"}, dotenv_path=None).pkce is False


# --- the table of settings


def test_the_configuration_document_is_the_table():
    path = REPO / "docs" / "configuration.md"
    written = path.read_text(encoding="utf-8") if path.is_file() else ""
    made = configuration.markdown()
    if written != made:
        diff = "".join(
            list(
                difflib.unified_diff(
                    written.splitlines(True), made.splitlines(True), "docs/configuration.md", "the table"
                )
            )[:40]
        )
        pytest.fail(
            f"docs/configuration.md is not what SETTINGS says; regenerate it with\n"
            f"    {configuration.MARKDOWN_COMMAND}\n{diff}"
        )


def test_every_addon_option_is_a_setting_of_the_table():
    addon = json.loads((REPO / "addon" / "config.json").read_text(encoding="utf-8"))
    by_option = {setting.option: setting.name for setting in SETTINGS if setting.option}
    assert set(addon["schema"]) - set(configuration.RUN_OPTIONS) == set(by_option)
    assert configuration.OPTION_NAMES == by_option
    assert set(configuration.RUN_OPTIONS).isdisjoint(by_option)


def test_the_known_names_and_the_config_fields_are_the_tables():
    assert configuration.KNOWN_NAMES == {setting.name for setting in SETTINGS}
    assert len(SETTINGS) == len(configuration.KNOWN_NAMES)  # no name twice
    fields = [f.name for f in dataclasses.fields(configuration.Config)]
    derived = [name for name, _, _ in configuration.DERIVED]
    assert fields == [setting.field for setting in SETTINGS if setting.field] + derived
    assert all(setting.help.strip() for setting in SETTINGS)


def test_the_defaults_in_the_table_are_those_of_an_empty_environment():
    config = load({"CLIENT_ID": "a"}, dotenv_path=None)
    for setting in SETTINGS:
        if setting.field and not callable(setting.default):
            assert getattr(config, setting.field) == setting.default, setting.name
    # Config() is the configuration of an empty environment, but for the CLIENT_ID that load() requires.
    assert configuration.Config() == dataclasses.replace(config, client_id="")


def test_a_default_outside_its_range_is_told_in_words():
    for setting in SETTINGS:
        if setting.range and isinstance(setting.default, (int, float)) and not callable(setting.default):
            low, high = setting.range
            assert low <= setting.default <= high or setting.shown, setting.name


def test_a_blank_number_path_or_duration_is_its_default_a_blank_url_or_choice_is_refused():
    config = load(
        {
            "CLIENT_ID": "a",
            "THREADS": "",
            "REQUEST_TIMEOUT": " ",
            "DURATION": "",
            "SQLITE_PATH": "",
            "MONGODB_URI": "",
            "DB_ADDRESS": "db.example",
        },
        dotenv_path=None,
    )
    assert (config.threads, config.request_timeout, config.duration) == (32, 10.0, "P3Y")
    assert config.sqlite_path == "./data/deviceflow.sqlite3" and config.mongodb_uri == "mongodb://db.example:27017/"
    for name in ("BASE_URL", "REDIRECT_URI", "DATA_ENDPOINT", "LOG_LEVEL", "ENEDIS_API_MODE", "DB_TYPE"):
        with pytest.raises(ConfigError, match=f"^{name} must"):
            load({"CLIENT_ID": "a", name: ""}, dotenv_path=None)


def test_the_php_mongodb_port_is_read_only_when_the_uri_is_built_from_it():
    with pytest.raises(ConfigError, match="^DB_PORT must be a whole number"):
        load({"CLIENT_ID": "a", "DB_ADDRESS": "db.example", "DB_PORT": "x"}, dotenv_path=None)
    assert (
        load(
            {"CLIENT_ID": "a", "MONGODB_URI": "mongodb://db.example/x", "DB_ADDRESS": "db.example", "DB_PORT": "x"},
            dotenv_path=None,
        ).mongodb_uri
        == "mongodb://db.example/x"
    )
