"""openapi.yaml: the JSON endpoints described, served at /openapi.yaml, and a
bounded schemathesis run against a live demo server that fails on any 5xx
and on any answer the description does not allow."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from test_e2e_data_proxy import device_tokens

from deviceflow.enedis import V5_PATHS

SPEC = Path(__file__).resolve().parent.parent / "openapi.yaml"
# Per operation and phase; about 3,000 requests in all, under two minutes on the CI machine.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance"
)


def test_the_description_is_served_as_is(app):
    served = app.get("/openapi.yaml")
    assert served.content_type == "application/yaml"
    assert served.body == SPEC.read_bytes()


def test_every_json_route_of_the_app_is_described(app):
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert spec["openapi"].startswith("3.")
    described = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    routes = {
        (route.rule, route.method)
        for route in app.app.device_api.app.routes
        if route.rule.startswith(("/device/", "/.well-known/", "/healthz"))
    }
    routes |= {(path, "POST") for path in app.app.device_api.plain_routes}
    routes |= {(f"/data/proxy/{path}", "GET") for path in V5_PATHS}
    assert described == routes


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_description(live_server, tmp_path):
    # The outbound budget would only slow the run; the per-token and hourly limits would turn it into 429s.
    base = live_server(
        ENEDIS_MAX_CALLS_PER_SECOND="1000", DATA_CALLS_PER_MINUTE="600", ENEDIS_MAX_CALLS_PER_HOUR="1000000"
    )
    token = device_tokens(base)["access_token"]  # so that data requests reach the simulated Enedis
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base}/openapi.yaml",
        "--url",
        base,
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--header",
        f"Authorization: Bearer {token}",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-junit-path",
        str(tmp_path / "junit.xml"),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"}
    )
    summary = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert run.returncode == 0 and summary, run.stdout[-6000:] + run.stderr[-2000:]
    generated, passed = map(int, summary.groups())
    assert generated == passed and generated >= 10 * FUZZ_EXAMPLES, run.stdout[-3000:]
    print(f"schemathesis: {generated} test cases, {generated - passed} failures")
