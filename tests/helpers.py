"""Small steps of the flow that many tests repeat, written as a device and a browser would do them."""

import hashlib
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PRM1, PRM2 = "11111111111111", "22222222222222"
# The control token of the simulator each live demo server printed at start-up, by base URL
# (filled in by conftest's live_server).
CONTROL_TOKENS: dict[str, str] = {}


def control_headers(base):
    """What POST /enedis/_control of the live demo server at `base` needs."""
    return {"Authorization": f"Bearer {CONTROL_TOKENS[base]}"}


def stopped_log(process, path=None) -> str:
    """Everything a server process logged (its `log`, or `path`), read once it has stopped: lines below
    WARNING wait up to 0.1 s before they are written, and SIGTERM has the server write them all as it
    exits, so a line missing then was never logged."""
    process.terminate()
    assert process.wait(10) == 0, "the server did not exit normally on SIGTERM"
    return Path(path or process.log).read_text()


def at_once(calls, timeout=60):
    """Runs every call on its own thread, all released at the same moment; their results."""
    barrier, results = threading.Barrier(len(calls)), []

    def run(call):
        barrier.wait()
        results.append(call())

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


def get_code(app, client_id="test-client", **extra):
    return app.post("/device/code", {"client_id": client_id, **extra}).json


def confirm(app, user_code, state_suffix=""):
    """Open the verification link, press the button; returns the consent URL's query."""
    link = f"/device?code={user_code}" + (f"&state={state_suffix}" if state_suffix else "")
    page = app.get(link)
    response = page.forms[0].submit()
    assert response.status_int == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def consent(app, user_code, usage_points=PRM1, **extra):
    """The whole browser side: confirm, then come back from Enedis with the usage points."""
    query = confirm(app, user_code)
    params = {"state": query["state"], "code": "enedis-code", **extra}
    if usage_points is not None:
        params["usage_point_id"] = usage_points
    return app.get("/auth/redirect", params, expect_errors=True)


def poll(app, device_code, client_id="test-client"):
    return app.post(
        "/device/token",
        {"grant_type": DEVICE_GRANT, "client_id": client_id, "device_code": device_code},
        expect_errors=True,
    )


def refresh(app, refresh_token, client_id="test-client", **extra):
    return app.post(
        "/device/token",
        {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": refresh_token, **extra},
        expect_errors=True,
    )


def tokens_for(app, usage_points=PRM1):
    code = get_code(app)
    consent(app, code["user_code"], usage_points)
    return poll(app, code["device_code"]).json


# --- the PHP server's cache (fixtures/php/cache.csv, a real psql export)

PHP_CSV = Path(__file__).parent / "fixtures" / "php" / "cache.csv"


def php_token(n):
    """The refresh tokens in fixtures/php/cache.csv: sha256("php refresh token N") in hex."""
    return hashlib.sha256(f"php refresh token {n}".encode()).hexdigest()
