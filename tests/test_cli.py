"""The operator's commands, run as `deviceflow ...` against a temporary store."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from helpers import PHP_CSV, PRM1, PRM2, get_code, php_token, refresh, tokens_for

from deviceflow import cli
from deviceflow.config import load
from deviceflow.store import SQLiteStore
from deviceflow.web import make_app


@pytest.fixture
def env(monkeypatch, tmp_path):
    """The configuration the commands read: environment only, in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    values = {
        "CLIENT_ID": "test-client",
        "DB_TYPE": "sqlite",
        "SQLITE_PATH": str(tmp_path / "cli.sqlite3"),
        "ENEDIS_AUTHORIZE_VERSION": "v1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("MONGODB_URI", "DB_ADDRESS", "FLOW"):
        monkeypatch.delenv(name, raising=False)
    return values


def run(capsys, *argv):
    """Exit code, standard output, standard error."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def server(env):
    """The server on the same store, as devices reach it."""
    from webtest import TestApp

    store = SQLiteStore(env["SQLITE_PATH"])
    yield TestApp(make_app(load(dotenv_path=None), store))
    store.close()


# --- import-php


def test_import_dry_run_prints_the_summary_and_writes_nothing(env, capsys, server):
    code, out, _ = run(capsys, "import-php", "--from-csv", str(PHP_CSV), "--dry-run")
    assert code == 0
    assert "dry run: nothing written" in out
    assert "refresh tokens read: 6" in out and "would be imported: 3" in out and "skipped: 3" in out
    assert "expired: 1" in out and "value is not a PHP string: 1" in out
    assert "no valid usage point (14 digits): 1" in out
    assert "other keys not carried over (codes, states, access tokens, rate limits): 6" in out
    assert refresh(server, php_token(1)).json["error"] == "invalid_grant"


def test_import_then_the_device_refreshes_and_a_re_run_changes_nothing(env, capsys, server):
    code, out, _ = run(capsys, "import-php", "--from-csv", str(PHP_CSV))
    assert code == 0 and "  imported: 3" in out
    answer = refresh(server, php_token(2), usage_points_id="22222222222222,33333333333333")
    assert answer.status_int == 200
    code, out, _ = run(capsys, "import-php", "--from-csv", str(PHP_CSV))
    assert "  imported: 0" in out and "already imported: 3" in out
    assert php_token(1) not in out


PHP_MONGODB = "mongodb://php:hunter2@127.0.0.1:27017/devicecode"


@pytest.fixture
def php_mongodb(monkeypatch):
    """The PHP server's MongoDB (mongomock) holding one refresh token; the URIs the tool connected to."""
    mongomock = pytest.importorskip("mongomock")
    client = mongomock.MongoClient()
    in_a_month = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=30)  # BSON dates: naive UTC
    client["devicecode"]["cache"].insert_one(
        {"key": f"refresh_token:{php_token(1)}", "value": PRM1, "expireAt": in_a_month}
    )
    connected = []
    monkeypatch.setattr(cli, "mongo_client", lambda uri: connected.append(uri) or client)
    return connected


def test_import_from_the_php_mongodb_uri_in_a_file(env, capsys, server, php_mongodb, tmp_path):
    uri_file = tmp_path / "php-mongodb"
    uri_file.write_text(PHP_MONGODB + "\n")
    code, out, _ = run(capsys, "import-php", "--from-mongodb-file", str(uri_file))
    assert code == 0 and "  imported: 1" in out
    assert php_mongodb == [PHP_MONGODB]
    assert "hunter2" not in out and "mongodb://php:***@127.0.0.1:27017/devicecode (devicecode.cache)" in out
    assert refresh(server, php_token(1)).status_int == 200


def test_import_from_the_php_mongodb_uri_on_standard_input(env, capsys, php_mongodb, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(PHP_MONGODB + "\n"))
    code, out, _ = run(capsys, "import-php", "--from-mongodb-file", "-", "--dry-run")
    assert code == 0 and "would be imported: 1" in out and php_mongodb == [PHP_MONGODB]


def test_import_from_the_configured_mongodb_as_in_the_php_env(env, capsys, php_mongodb, monkeypatch):
    """The PHP server's .env names its MongoDB with DB_*: `--from-mongodb` alone reads it (the store stays SQLite)."""
    for name, value in {
        "DB_ADDRESS": "127.0.0.1",
        "DB_USER": "php",
        "DB_PASSWORD": "hunter2",
        "DB_NAME": "devicecode",
    }.items():
        monkeypatch.setenv(name, value)
    code, out, _ = run(capsys, "import-php", "--from-mongodb", "--dry-run")
    assert code == 0 and "would be imported: 1" in out
    assert php_mongodb == [PHP_MONGODB] and "hunter2" not in out


def test_a_password_on_the_command_line_is_refused_before_anything_is_read(env, capsys, php_mongodb):
    """Issue 14, finding 8: `import-php --from-mongodb mongodb://user:password@...` put the password in
    `ps` and the shell history. Now the tool refuses it at once, says the safe ways, and connects nowhere."""
    code, out, err = run(capsys, "import-php", "--from-mongodb", PHP_MONGODB)
    assert code == 2 and php_mongodb == []
    assert "--from-mongodb-file" in err and "MONGODB_URI" in err and "nothing was read" in err
    assert "hunter2" not in out + err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["import-php", "--from-csv", "missing.csv"], "cannot read missing.csv"),
        (["import-php", "--from-csv", str(PHP_CSV), "--timezone", "Mars/Olympus"], "unknown time zone"),
        (["import-php", "--from-mongodb", "mongodb://127.0.0.1:27017"], "naming the PHP database"),
        (["import-php"], "one of the arguments --from-mongodb --from-mongodb-file --from-csv is required"),
        (["import-php", "--from-mongodb"], "none is configured"),
        (["import-php", "--from-mongodb-file", "missing-uri"], "cannot read missing-uri"),
        (["revoke", "--usage-point", "123"], "14-digit PRM"),
        (["revoke"], "one of the arguments --usage-point --refresh-token is required"),
    ],
)
def test_usage_errors_exit_2_with_one_line(env, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err
    assert "Traceback" not in err


def test_configuration_error_exits_2(env, capsys, monkeypatch):
    monkeypatch.delenv("CLIENT_ID")
    code, _, err = run(capsys, "stats")
    assert code == 2 and "configuration error: CLIENT_ID is required" in err


def test_unreachable_store_exits_1(env, capsys, monkeypatch, tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "not-a-dir" / "store.sqlite3"))
    code, _, err = run(capsys, "purge")
    assert code == 1 and "store at" in err and "is not available" in err


def test_unreachable_php_mongodb_exits_1_without_the_password(env, capsys, monkeypatch):
    from pymongo.errors import ServerSelectionTimeoutError

    def unreachable(uri):
        raise ServerSelectionTimeoutError("127.0.0.1:1: connection refused")

    monkeypatch.setattr(cli, "mongo_client", unreachable)
    monkeypatch.setattr("sys.stdin", io.StringIO("mongodb://php:hunter2@127.0.0.1:1/devicecode\n"))
    code, _, err = run(capsys, "import-php", "--from-mongodb-file", "-")
    assert code == 1 and "ServerSelectionTimeoutError" in err and "hunter2" not in err


# --- stats, revoke, purge


def test_stats_reads_the_configured_store(env, capsys, server):
    tokens_for(server, f"{PRM1};{PRM2}")
    get_code(server)
    run(capsys, "import-php", "--from-csv", str(PHP_CSV))
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert f"store: sqlite {env['SQLITE_PATH']}" in out
    assert "pending device flows: 1" in out
    assert "live authorizations: 4 (3 imported from the PHP server, 0 revoked not yet expired)" in out
    assert "live tokens: 4 refresh, 1 access" in out
    assert "usage points: 5" in out  # 1111..., 2222... (also in an imported one), 3333..., 4444..., 5555...
    assert "Enedis calls: 0 in the last hour, 0 in the last day" in out
    assert "budget waits: 0 in the last hour, 0 in the last day" in out


def test_revoke_by_usage_point_names_the_other_meters_that_lose_it(env, capsys, server):
    shared = tokens_for(server, f"{PRM1},{PRM2}")
    code, out, _ = run(capsys, "revoke", "--usage-point", PRM1)
    assert code == 0 and f"revoked 1 authorization(s) covering {PRM1}" in out and PRM2 in out
    assert refresh(server, shared["refresh_token"]).json["error"] == "invalid_grant"
    code, out, _ = run(capsys, "revoke", "--usage-point", PRM1)
    assert code == 1 and "no live authorization covers" in out


def test_revoke_by_refresh_token_read_from_stdin(env, capsys, server, monkeypatch):
    tokens = tokens_for(server, PRM1)
    monkeypatch.setattr("sys.stdin", io.StringIO(tokens["refresh_token"] + "\n"))
    code, out, _ = run(capsys, "revoke", "--refresh-token", "-")
    assert code == 0 and f"revoked the authorization covering {PRM1}" in out
    assert tokens["refresh_token"] not in out
    assert refresh(server, tokens["refresh_token"]).json["error"] == "invalid_grant"
    # `=`: one token in 64 starts with "-", which argparse would take for an option
    code, out, _ = run(capsys, "revoke", f"--refresh-token={tokens['refresh_token']}")
    assert code == 1 and "no live authorization has this refresh token" in out


def test_purge_deletes_expired_records(env, capsys):
    store = SQLiteStore(env["SQLITE_PATH"], clock=lambda: 0.0)
    store.put("flow", "old", {}, 10)
    store.put("flow", "live", {}, 10**12)
    store.close()
    code, out, _ = run(capsys, "purge")
    assert code == 0 and out == "purged 1 expired records\n"
    assert run(capsys, "purge")[1] == "purged 0 expired records\n"


def test_the_server_purges_expired_records_by_itself(env, caplog):
    """`deviceflow serve` runs purge_hourly: an add-on has no cron to run `deviceflow purge`."""
    import threading
    import time

    store = SQLiteStore(env["SQLITE_PATH"])
    store.put("flow", "live", {}, 10**6)
    store.put("flow", "old", {}, 0.01)
    time.sleep(0.05)
    caplog.set_level("INFO", logger="deviceflow")
    stop = threading.Event()
    thread = cli.purge_hourly(store, every=0.05, stop=stop)
    deadline = time.monotonic() + 5
    while "purged 1 expired records" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(5)
    assert "purged 1 expired records" in caplog.text
    reopened = SQLiteStore(env["SQLITE_PATH"])
    assert [key for key, _ in reopened.scan("flow")] == ["live"]
    assert reopened._read("SELECT COUNT(*) FROM records")[0][0] == 1  # gone from the file, not just hidden


# --- in the Home Assistant add-on image


def test_in_the_addon_image_the_operator_tools_read_the_addon_options(env, capsys, monkeypatch, tmp_path):
    """The image sets OPTIONS_PATH=/data/options.json: `deviceflow stats` finds the add-on's store."""
    for name in env:
        monkeypatch.delenv(name)
    options = tmp_path / "data" / "options.json"
    options.parent.mkdir()
    options.write_text('{"base_url": "https://enedis.example.org", "client_id": "enedis-app", "client_secret": "x"}')
    monkeypatch.setenv("OPTIONS_PATH", str(options))
    code, out, _ = run(capsys, "stats")
    assert code == 0 and f"store: sqlite {tmp_path / 'data' / 'deviceflow.sqlite3'}" in out
    options.write_text("{")
    code, _, err = run(capsys, "purge")
    assert code == 2
    assert err == f"deviceflow: configuration error: options file {options} is not valid JSON (line 1, column 2)\n"
