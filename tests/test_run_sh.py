"""run.sh, both ways: inside the add-on image (run.sh alone at /, the package
installed) and from a clone, configured by a Home Assistant options file."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers import stopped_log

from deviceflow import config as configuration

REPO = Path(__file__).resolve().parents[1]
OPTIONS = {
    "base_url": "https://enedis.example.org",
    "client_id": "enedis-app",
    "client_secret": "s3cr3t-opt",
    "flow": "client_credentials",
    "enedis_authorize_version": "v2",
    "log_level": "info",
}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**extra):
    """This machine's environment without any deviceflow setting, the installed
    `deviceflow` script first on PATH (as in the image)."""
    env = {k: v for k, v in os.environ.items() if k not in configuration.KNOWN_NAMES and k != "OPTIONS_PATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@pytest.fixture
def data_dir(tmp_path):
    """Stands for the add-on's /data: the options file the Supervisor writes."""
    data = tmp_path / "data"
    data.mkdir()

    def write(text=None, **changes):
        path = data / "options.json"
        path.write_text(text if text is not None else json.dumps({**OPTIONS, **changes}))
        return path

    write.path = data
    return write


@pytest.fixture
def image_run_sh(tmp_path):
    """run.sh as the Dockerfile lays it out: alone, with no pyproject.toml beside it."""
    root = tmp_path / "image"
    root.mkdir()
    shutil.copy2(REPO / "run.sh", root / "run.sh")
    return root / "run.sh"


@pytest.fixture
def clone_run_sh(tmp_path):
    """A clone whose .venv is already installed (its stamp newer than pyproject.toml),
    so that run.sh goes straight to serving, through this test run's Python."""
    clone = tmp_path / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    shutil.copy2(REPO / "run.sh", clone / "run.sh")
    shutil.copy2(REPO / "pyproject.toml", clone / "pyproject.toml")
    os.utime(clone / "pyproject.toml", (0, 0))
    python = clone / ".venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (clone / ".venv" / ".deviceflow-installed").touch()
    return clone / "run.sh"


def serve(processes, run_sh, options_path, cwd):
    port = free_port()
    log = cwd / "server.log"
    process = subprocess.Popen(
        ["bash", str(run_sh), "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=clean_env(OPTIONS_PATH=str(options_path)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
    )
    processes.append(process)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return base
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError(f"run.sh did not serve: {log.read_text()[-2000:]}")


def test_in_the_image_run_sh_serves_with_the_addon_options(processes, image_run_sh, data_dir, tmp_path):
    base = serve(processes, image_run_sh, data_dir(), cwd=tmp_path)
    health = requests.get(f"{base}/healthz", timeout=5).json()
    assert (health["status"], health["flow"], health["authorize_version"]) == ("ok", "client_credentials", "v2")
    metadata = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=5).json()
    assert metadata["issuer"] == "https://enedis.example.org"
    assert metadata["device_authorization_endpoint"] == "https://enedis.example.org/device/code"

    code = requests.post(f"{base}/device/code", data={"client_id": "enedis-app"}, timeout=5)
    assert code.status_code == 200
    assert code.json()["verification_uri"] == "https://enedis.example.org/device"
    assert requests.post(f"{base}/device/code", data={"client_id": "someone"}, timeout=5).status_code == 401
    # the embedded store is on the add-on's volume, beside the options
    assert (data_dir.path / "deviceflow.sqlite3").is_file()
    assert "s3cr3t-opt" not in stopped_log(processes[-1], tmp_path / "server.log")


def test_from_a_clone_run_sh_serves_with_an_options_file(processes, clone_run_sh, data_dir, tmp_path):
    base = serve(processes, clone_run_sh, data_dir(flow="device", enedis_api_mode="legacy"), cwd=tmp_path)
    health = requests.get(f"{base}/healthz", timeout=5).json()
    assert (health["flow"], health["api_mode"]) == ("device", "legacy")
    assert (
        requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=5).json()["issuer"]
        == "https://enedis.example.org"
    )


def run_to_exit(run_sh, cwd, **env):
    return subprocess.run(
        ["bash", str(run_sh), "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=cwd,
        env=clean_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"client_id": "enedis-app", ', "is not valid JSON"),
        ('{"client_id": "enedis-app", "flow": "implicit"}', "option flow must be one of"),
        (
            '{"client_id": "enedis-app", "client_secret": "s3cr3t-opt", "base_url": "enedis.example.org"}',
            "(option base_url in ",
        ),
    ],
)
def test_a_malformed_options_file_gives_one_clear_line(image_run_sh, data_dir, tmp_path, text, expected):
    path = data_dir(text)
    result = run_to_exit(image_run_sh, tmp_path, OPTIONS_PATH=str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("deviceflow: configuration error: ")
    assert str(path) in lines[0] and expected in lines[0] and "s3cr3t-opt" not in lines[0]


def test_in_the_image_the_options_default_to_data_options_json(image_run_sh, tmp_path):
    if Path("/data/options.json").exists():
        pytest.skip("this machine has a /data/options.json")
    result = run_to_exit(image_run_sh, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "deviceflow: configuration error: options file /data/options.json not found"


@pytest.mark.parametrize(
    "options, demo",
    [
        ({**OPTIONS, "demo": True}, True),
        ({**OPTIONS, "demo": False}, False),
        (OPTIONS, False),
        ('{"demo": true', False),
    ],
)
def test_in_the_image_run_sh_starts_the_demo_when_the_option_says_so(image_run_sh, data_dir, tmp_path, options, demo):
    """The command the image runs, seen by a stand-in `deviceflow` that writes down its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "deviceflow"
    fake.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$ARGS_FILE"\n')
    fake.chmod(0o755)
    path = data_dir(options if isinstance(options, str) else json.dumps(options))
    env = clean_env(OPTIONS_PATH=str(path), ARGS_FILE=str(tmp_path / "args"))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        ["bash", str(image_run_sh)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")  # a broken file is deviceflow's to report
    args = (tmp_path / "args").read_text().split()
    assert args[0] == "serve" and ("--demo" in args) == demo
    # a container listens on every interface of its own, in demo mode too (which keeps to loopback by itself)
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--options") + 1] == str(path)
