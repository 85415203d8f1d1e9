"""The add-on image, built without a container engine: the build context that
addon/Dockerfile.dockerignore lets through, laid out by the Dockerfile's COPY
lines in a folder that stands for the image's root, its RUN line run with this
machine's Python in a fresh venv (standing for the image's Python), then its
CMD started with the ENV and WORKDIR it sets and an options file like the
Supervisor's. A file the image needs but never receives fails here as it
would fail `docker build`."""

import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from browser import Browser
from helpers import DEVICE_GRANT

REPO = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("addon_platforms", REPO / "addon" / "platforms.py")
platforms = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(platforms)
DOCKERFILE = REPO / "addon" / "Dockerfile"
DOCKERIGNORE = REPO / "addon" / "Dockerfile.dockerignore"
CONFIG = json.loads((REPO / "addon" / "config.json").read_text(encoding="utf-8"))

pytestmark = pytest.mark.e2e


# --- the Dockerfile and its .dockerignore, read as Docker reads them ----------


def instructions(text):
    """(KEYWORD, arguments) per instruction: continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", joined, re.M)]


def pattern_regex(pattern):
    """A .dockerignore pattern (Go's filepath.Match, plus `**`) as an anchored regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignore_rules(text):
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((exception, pattern, pattern_regex(pattern)))
    return rules


def ignored(rules, path):
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parents = ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 1)]
    excluded = False
    for exception, _, regex in rules:
        if exception != excluded:
            continue
        if regex.match(path) or any(regex.match(parent) for parent in parents):
            excluded = not exception
    return excluded


def may_hold_exceptions(rules, folder):
    """Whether a `!` pattern could let through something under an excluded folder."""
    parts = folder.split("/")
    for exception, pattern, _ in rules:
        if exception:
            segments = pattern.split("/")
            if all(re.search(r"[*?\[]", s) or s == p for s, p in zip(segments, parts)):
                return True
    return False


def build_context(destination):
    """The files `docker build -f addon/Dockerfile .` sends from the repository root."""
    rules = ignore_rules(DOCKERIGNORE.read_text(encoding="utf-8"))
    for folder, subfolders, files in os.walk(REPO):
        relative = Path(folder).relative_to(REPO).as_posix()
        prefix = "" if relative == "." else relative + "/"
        subfolders[:] = [
            d for d in subfolders if not ignored(rules, prefix + d) or may_hold_exceptions(rules, prefix + d)
        ]
        for name in files:
            if not ignored(rules, prefix + name):
                (destination / prefix).mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(folder) / name, destination / prefix / name)


def in_image(root, path):
    return root / path.lstrip("/")


def copy(context, root, arguments):
    """COPY [--chmod=MODE] SRC... DEST, with Docker's rules for folders."""
    words = shlex.split(arguments)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    *sources, destination = [w for w in words if not w.startswith("--")]
    target = in_image(root, destination)
    into_folder = destination.endswith("/") or len(sources) > 1
    for source in sources:
        found = context / source
        # docker build stops here too: a COPY source that the .dockerignore keeps out
        assert found.exists(), f"COPY {source}: not in the build context (addon/Dockerfile.dockerignore)"
        if found.is_dir():
            shutil.copytree(found, target, dirs_exist_ok=True)
            continue
        path = target / found.name if into_folder else target
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found, path)
        if "chmod" in flags:
            path.chmod(int(flags["chmod"], 8))


def image_path(root, command):
    """A shell command of the image with its absolute paths moved under `root`."""
    return re.sub(r"(?<![\w/.])/(?=[\w.])", lambda _: f"{root}/", command)


class Image:
    def __init__(self, root, venv, env, workdir, cmd):
        self.root, self.venv, self.env, self.workdir, self.cmd = root, venv, env, workdir, cmd


def build(work, edit_context=None):
    """The image, built in `work`: its root folder, the venv standing for its Python, its ENV,
    WORKDIR and CMD. `edit_context` may change the build context first (a later rebuild)."""
    context, root, venv = work / "context", work / "root", work / "python"
    context.mkdir()
    root.mkdir()
    build_context(context)
    if edit_context:
        edit_context(context)
    # the base image's Python version where this machine has it, else this one
    python, _ = platforms.image_python(platforms.base_image(DOCKERFILE.read_text(encoding="utf-8"))[0])
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    # the image's Python is first on its PATH; nothing of this test run's environment leaks in but
    # what pip needs to reach this machine's package index
    path = f"{venv / 'bin'}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin"
    env = {"PATH": path, "HOME": os.environ.get("HOME", str(work)), "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    workdir, cmd = root, None
    for keyword, arguments in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "COPY":
            copy(context, root, arguments)
        elif keyword == "RUN":
            result = subprocess.run(
                ["/bin/sh", "-c", image_path(root, arguments)],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, f"RUN {arguments}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        elif keyword == "ENV":
            for assignment in shlex.split(arguments):
                name, value = assignment.split("=", 1)
                env[name] = str(in_image(root, value)) if value.startswith("/") else value
        elif keyword == "WORKDIR":
            workdir = in_image(root, arguments)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "CMD":
            cmd = [str(in_image(root, c)) if c.startswith("/") else c for c in json.loads(arguments)]
    assert cmd, "the Dockerfile has a CMD"
    return Image(root, venv, env, workdir, cmd)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return build(tmp_path_factory.mktemp("image"))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(image, processes, options):
    """Start the image's CMD with the Supervisor's options file in its /data; the base URL.

    A container has its own network: here the server gets a free port on
    loopback instead (the only arguments added to the image's command).
    `options` may be a function of that base URL (the demo's public URL)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = Path(image.env["OPTIONS_PATH"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(options(base) if callable(options) else options), encoding="utf-8")
    log = image.root / f"log-{port}.txt"
    process = subprocess.Popen(
        [*image.cmd, "--host", "127.0.0.1", "--port", str(port)],
        cwd=image.workdir,
        env=image.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
    )
    processes.append(process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return base, log
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"the image's CMD did not serve: {log.read_text()[-3000:]}")


def supervisor_options(**changes):
    """What the Supervisor writes: every option with a value, the defaults for those not set."""
    return {**CONFIG["options"], **changes}


def test_the_image_builds_and_serves_with_the_addon_options(image, processes):
    options = supervisor_options(
        base_url="https://enedis.example.org",
        client_id="enedis-app",
        client_secret="s3cr3t-image",
        external_client_id="domoticz",
        enedis_api_mode="legacy",
    )
    base, log = start(image, processes, options)

    health = requests.get(f"{base}/healthz", timeout=5).json()
    assert (health["status"], health["flow"], health["authorize_version"], health["api_mode"]) == (
        "ok",
        "client_credentials",
        CONFIG["options"]["enedis_authorize_version"],
        "legacy",
    )
    assert (
        requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=5).json()["issuer"]
        == "https://enedis.example.org"
    )
    code = requests.post(f"{base}/device/code", data={"client_id": "domoticz"}, timeout=5)
    assert code.status_code == 200 and code.json()["verification_uri"] == "https://enedis.example.org/device"
    # what the installed package carries besides its code: pages, stylesheet, API description
    home = requests.get(f"{base}/", timeout=5)
    assert home.status_code == 200 and "<html" in home.text
    stylesheet = urlsplit(
        re.search(r'href="([^"]+\.css)"', home.text).group(1)
    ).path  # on this server, not the public URL
    assert requests.get(base + stylesheet, timeout=5).status_code == 200
    assert "openapi:" in requests.get(f"{base}/openapi.yaml", timeout=5).text
    # the store lives on the add-on's volume, beside the options
    assert (Path(image.env["OPTIONS_PATH"]).parent / "deviceflow.sqlite3").is_file()
    assert "s3cr3t-image" not in log.read_text()


def pinned(text):
    return {
        m.group(1).lower().replace("_", "-"): m.group(2) for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.M)
    }


def installed(image):
    freeze = subprocess.run(
        [str(image.venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude", "deviceflow"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return pinned(freeze)


def test_the_image_installs_the_tested_versions(image):
    """What addon/platforms.py tested on both architectures, pinned in addon/constraints.txt."""
    tested = pinned((REPO / "addon" / "constraints.txt").read_text(encoding="utf-8"))
    got = installed(image)
    assert got and {name: tested.get(name) for name in got} == got
    # and the package itself is installed, not left in the sources the RUN line removed
    assert not in_image(image.root, "/usr/src/deviceflow").exists()


def test_a_rebuild_installs_the_pinned_version_when_a_newer_one_is_out(tmp_path):
    """Pinned one release back, bottle stays there although the index serves a newer one."""
    older = "0.13.4"
    assert pinned((REPO / "addon" / "constraints.txt").read_text())["bottle"] != older

    def pin_older(context):
        path = context / "addon" / "constraints.txt"
        path.write_text(re.sub(r"^bottle==\S+$", f"bottle=={older}", path.read_text(), flags=re.M))

    assert installed(build(tmp_path, pin_older))["bottle"] == older


def test_the_demo_option_shows_the_whole_flow(image, processes):
    """`demo` on and nothing else filled in: a device gets tokens and data through the simulated Enedis."""
    # the person opens the links at the public URL: here the server's own address
    base, log = start(image, processes, lambda base: supervisor_options(demo=True, base_url=base))
    client = "deviceflow-demo"
    code = requests.post(f"{base}/device/code", data={"client_id": client}, timeout=5).json()
    assert code["verification_uri_complete"].startswith(f"{base}/device?code=")

    browser = Browser()
    assert "demo" in browser.open(code["verification_uri_complete"]).text.lower()
    browser.submit()
    assert "/enedis/dataconnect/" in browser.page.url  # the simulated consent page, on the add-on's port
    forms = browser.forms()
    points = [f.get("value") for f in forms[0]["fields"] if f.get("type") in ("checkbox", "radio")]
    done = browser.submit(checked=points[:1], button=("decision", "accept"))
    assert done.status_code == 200 and done.url.startswith(f"{base}/auth/redirect")

    tokens = requests.post(
        f"{base}/device/token",
        timeout=5,
        data={"grant_type": DEVICE_GRANT, "client_id": client, "device_code": code["device_code"]},
    )
    assert tokens.status_code == 200, tokens.text
    prm = tokens.json()["usage_points_id"]
    data = requests.get(
        f"{base}/data/proxy/metering_data_dc/v5/daily_consumption",
        timeout=10,
        params={"usage_point_id": prm, "start": "2026-11-01", "end": "2026-11-03"},
        headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
    )
    assert data.status_code == 200 and data.json()["meter_reading"]["usage_point_id"] == prm
    assert "DEMO" in log.read_text()
