"""The Home Assistant add-on folder: what the official linter and the Supervisor
check, and what the Python side accepts of it."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from deviceflow import __version__
from deviceflow.config import OPTION_NAMES, RUN_OPTIONS, ConfigError, load

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "addon"
SCHEMA_COPY = REPO / "tests" / "fixtures" / "ha-addon-config.schema.json"
SHARED_SCHEMA = REPO.parent / "shared" / "ha-addon" / "config.schema.json"
LANGUAGES = ("en", "fr")


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def linter_schema():
    """The add-on linter's schema: the shared copy when this clone has one beside it."""
    return read_json(SHARED_SCHEMA if SHARED_SCHEMA.is_file() else SCHEMA_COPY)


@pytest.fixture(scope="module")
def addon():
    return read_json(ADDON / "config.json")


def dockerfile_text():
    # one logical instruction per line
    return re.sub(r"\\\n\s*", " ", (ADDON / "Dockerfile").read_text(encoding="utf-8"))


def choices(kind):
    """`list(a|b)` in an add-on schema -> ['a', 'b']; None for other types."""
    match = re.fullmatch(r"list\((.+)\)\??", kind)
    return match.group(1).split("|") if match else None


def test_the_schema_copy_is_the_shared_one():
    if not SHARED_SCHEMA.is_file():
        pytest.skip("shared/ha-addon not beside this clone")
    assert SCHEMA_COPY.read_bytes() == SHARED_SCHEMA.read_bytes()


def test_config_json_passes_the_linter_schema(addon, linter_schema):
    validator = jsonschema.Draft7Validator(linter_schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(addon)]
    assert errors == []


def test_no_key_repeats_its_default_and_no_watchdog(addon, linter_schema):
    properties = linter_schema["properties"]
    repeated = [
        key for key, value in addon.items() if "default" in properties[key] and value == properties[key]["default"]
    ]
    assert repeated == []
    assert "watchdog" not in addon
    assert sorted(addon["arch"]) == ["aarch64", "amd64"]


def test_version_is_the_package_version(addon):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert addon["version"] == __version__ == pyproject["project"]["version"]
    assert f"ARG BUILD_VERSION={__version__}" in dockerfile_text()
    assert f"## {__version__}" in (ADDON / "CHANGELOG.md").read_text(encoding="utf-8")


def test_every_option_has_a_schema_entry_the_python_side_reads(addon):
    schema, options = addon["schema"], addon["options"]
    assert set(schema) == set(OPTION_NAMES) | set(RUN_OPTIONS)
    assert set(options) <= set(schema)
    # the Supervisor refuses to start an add-on whose defaults miss a required option
    assert {k for k, kind in schema.items() if not kind.endswith("?")} <= set(options)
    for option, value in options.items():
        allowed = choices(schema[option])
        assert allowed is None or value in allowed, option


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_option_and_port_has_a_translation(addon, language):
    translation = yaml.safe_load((ADDON / "translations" / f"{language}.yaml").read_text(encoding="utf-8"))
    configuration = translation["configuration"]
    assert set(configuration) == set(addon["schema"])
    for option, text in configuration.items():
        assert text["name"].strip() and text["description"].strip(), option
    assert set(translation["network"]) == set(addon["ports"]) == set(addon["ports_description"])


def test_the_default_options_and_every_choice_start_the_server(addon, tmp_path):
    """What a user can pick in the add-on's page is what deviceflow accepts."""
    path = tmp_path / "options.json"

    def loads(**changes):
        path.write_text(json.dumps({**addon["options"], "client_id": "enedis-app", **changes}))
        return load({}, dotenv_path=None, options_path=path)

    assert loads().sqlite_path == str(tmp_path / "deviceflow.sqlite3")
    for option, kind in addon["schema"].items():
        for choice in choices(kind) or ():
            loads(**{option: choice})


def test_options_that_carry_a_password_are_hidden_in_the_addon_page(addon):
    """The Supervisor shows `str` options in clear; a MongoDB connection string holds its password."""
    assert addon["schema"]["client_secret"] == "password"
    assert addon["schema"]["mongodb_uri"] == "password?"


def test_the_defaults_send_people_to_the_2026_consent_page(addon, tmp_path):
    path = tmp_path / "options.json"
    path.write_text(json.dumps({**addon["options"], "client_id": "enedis-app"}))
    config = load({}, dotenv_path=None, options_path=path)
    assert config.enedis_authorize_version == "v2"
    assert "/dataconnect/v2/oauth2/authorize" in config.authorization_endpoint


def test_demo_is_an_option_off_by_default_and_only_true_or_false(addon, tmp_path):
    assert (addon["schema"]["demo"], addon["options"]["demo"]) == ("bool", False)
    path = tmp_path / "options.json"
    path.write_text(json.dumps({**addon["options"], "client_id": "enedis-app", "demo": "yes"}))
    with pytest.raises(ConfigError, match="option demo must be true or false"):
        load({}, dotenv_path=None, options_path=path)


def test_only_the_addon_config_is_named_like_one():
    """The Supervisor takes any config.json/.yaml/.yml in the repository for an add-on."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    configs = [p for p in listed if Path(p).name in ("config.json", "config.yaml", "config.yml")]
    assert configs == ["addon/config.json"]


def test_the_repository_can_be_added_to_home_assistant(addon):
    repository = yaml.safe_load((REPO / "repository.yaml").read_text(encoding="utf-8"))
    assert repository["name"] and repository["url"] == addon["url"]
    assert (ADDON / "DOCS.md").is_file()


def test_dockerfile_builds_from_the_repository_root_with_a_health_check(addon):
    text = dockerfile_text()
    base = re.search(r"^FROM (\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"ghcr\.io/home-assistant/base-python:3\.1[1-9]-alpine3\.\d+", base), base
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), path
    port = int(next(iter(addon["ports"])).split("/")[0])
    assert f"EXPOSE {port}" in text
    healthcheck = re.search(r"^HEALTHCHECK .*CMD (\[.*\])$", text, re.M)
    assert healthcheck, "HEALTHCHECK in exec form"
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(json.loads(healthcheck.group(1)))
    assert re.search(r'^CMD \["/run.sh"\]$', text, re.M)
    for label in ("io.hass.name", 'io.hass.type="addon"', "io.hass.arch", "io.hass.version"):
        assert label in text
    assert addon["image"].endswith("{arch}-deviceflow")


def test_dockerignore_sends_what_the_image_copies():
    kept = {
        line[1:].rstrip("/")
        for line in (ADDON / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {
        p for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile_text(), re.M) for p in source.split()
    }
    assert copied <= kept


# --- linters (binaries shipped in PyPI wheels: the `lint` extra) ------------


def linter(name):
    for candidate in (Path(sys.executable).parent / name, shutil.which(name)):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    message = f"{name} not installed (pip install -e '.[lint]')"
    if os.environ.get("CI"):
        pytest.fail(message)  # .ci/run installs it: missing there is a broken CI, not a skip
    pytest.skip(message)


def run(*command, stdin=None):
    return subprocess.run(command, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=120)


def test_hadolint_passes_on_the_dockerfile():
    hadolint = linter("hadolint")
    result = run(hadolint, "--no-color", "addon/Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    # and it does fail a careless Dockerfile
    assert run(hadolint, "--no-color", "-", stdin="FROM alpine\nRUN pip install requests\n").returncode != 0


def test_shellcheck_passes_on_the_scripts():
    shellcheck = linter("shellcheck")
    result = run(shellcheck, "run.sh", ".ci/run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert run(shellcheck, "-s", "bash", "-", stdin="#!/bin/bash\nrm -rf $1/*\n").returncode != 0


def test_actionlint_passes_on_the_workflows():
    actionlint = linter("actionlint")
    shellcheck = f"-shellcheck={linter('shellcheck')}"  # the run: scripts too
    workflows = sorted(str(p.relative_to(REPO)) for p in (REPO / ".github" / "workflows").glob("*.y*ml"))
    assert workflows
    result = run(actionlint, "-no-color", shellcheck, *workflows)
    assert result.returncode == 0, result.stdout + result.stderr
    # and it does fail a workflow open to script injection
    careless = (
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        '      - run: echo "${{ github.event.head_commit.message }}"\n'
    )
    assert run(actionlint, "-no-color", "-", stdin=careless).returncode != 0
