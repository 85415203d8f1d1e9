"""`serve --demo` is a sandbox: started in a production folder, it neither writes to
the production store nor mints tokens that the production server accepts."""

from pathlib import Path

import requests
from helpers import DEVICE_GRANT
from test_e2e import PRM, consent_in_browser, device_post

from deviceflow import cli

CLOSED = "http://127.0.0.1:9"  # nothing listens there: the production server reaches nothing


def production_folder(tmp_path):
    """A folder set up for production: its `.env` names the store, a client and the endpoints."""
    folder = tmp_path / "production"
    folder.mkdir()
    (folder / ".env").write_text(
        "\n".join(
            [
                "SQLITE_PATH=./prod.sqlite3",
                "CLIENT_ID=prod-client",
                "EXTERNAL_CLIENT_ID=deviceflow-demo",
                "CLIENT_SECRET=prod-secret",
                f"AUTHORIZATION_ENDPOINT={CLOSED}/dataconnect/v1/oauth2/authorize",
                f"TOKEN_ENDPOINT={CLOSED}/v1/oauth2/token",
                f"TOKEN_ENDPOINT_V3={CLOSED}/oauth2/v3/token",
                f"DATA_ENDPOINT={CLOSED}",
                "",
            ]
        )
    )
    return folder


def store_files(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.glob("prod.sqlite3*"))}


def stop(process):
    process.terminate()
    process.wait(10)


def test_a_demo_in_a_production_folder_leaves_the_production_store_alone(live_server, tmp_path):
    folder = production_folder(tmp_path)
    # The production server, with what its store holds after a little use.
    production = live_server(demo=False, workdir=folder, SQLITE_PATH=None)
    assert device_post(production, "/device/code").status_code == 200
    stop(live_server.processes[-1])
    before = store_files(folder)
    assert "prod.sqlite3" in before

    # A demo started in the same folder (same .env), through a whole flow.
    demo = live_server(workdir=folder)
    code = device_post(demo, "/device/code").json()
    consent_in_browser(demo, code["verification_uri_complete"])
    tokens = device_post(demo, "/device/token", grant_type=DEVICE_GRANT, device_code=code["device_code"]).json()
    assert tokens["usage_points_id"] == PRM
    demo_log = live_server.processes[-1].log
    stop(live_server.processes[-1])
    assert store_files(folder) == before  # byte for byte, -wal and -shm included
    assert "throwaway store" in demo_log.read_text()

    # The production server refuses the demo's tokens.
    production = live_server(demo=False, workdir=folder, SQLITE_PATH=None)
    refreshed = device_post(
        production, "/device/token", grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    data = requests.get(
        f"{production}/data/proxy/metering_data_dc/v5/daily_consumption",
        timeout=10,
        params={"usage_point_id": PRM, "start": "2026-01-01", "end": "2026-01-02"},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert data.status_code == 401 and data.json()["error"] == "invalid_token"


def test_a_demo_listens_on_loopback_unless_told_otherwise(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(production_folder(tmp_path))
    served = []
    monkeypatch.setattr(cli, "serve_wsgi", lambda app, host, port, threads, *limits: served.append((host, app)))
    monkeypatch.setattr(cli, "purge_hourly", lambda store: None)
    assert cli.main(["serve", "--demo", "--port", "8099"]) == 0
    assert cli.main(["serve", "--demo", "--port", "8099", "--host", "0.0.0.0"]) == 0
    assert [host for host, _ in served] == ["127.0.0.1", "0.0.0.0"]
    for _, app in served:
        config, store = app.config, app.store
        assert config.sqlite_path == ":memory:" and config.db_type == "sqlite"
        assert config.client_id == "deviceflow-demo" and not config.client_secret  # .env not read
        assert store.path != str(tmp_path / "production" / "prod.sqlite3")
        assert Path(store.path).parent.stat().st_mode & 0o777 == 0o700  # a private throwaway folder
    assert not (tmp_path / "production" / "prod.sqlite3").exists()
    # The simulator's control token is printed once per start, in the start-up lines.
    assert capsys.readouterr().err.count("simulator control token") == 2
