"""addon/check_release.py, the check before an image is published, and the workflow that runs it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "publish.yml"


@pytest.fixture
def root(tmp_path):
    """The files that state the version, copied: a test bumps some of them."""
    (tmp_path / "addon").mkdir()
    for name in ("pyproject.toml", "addon/config.json", "addon/CHANGELOG.md"):
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


def check(root, tag):
    return subprocess.run(
        [sys.executable, str(REPO / "addon" / "check_release.py"), tag, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def bump(root, version, files=("pyproject.toml", "addon/config.json", "addon/CHANGELOG.md")):
    old = json.loads((root / "addon" / "config.json").read_text())["version"]
    for name in files:
        path = root / name
        text = path.read_text()
        if name == "pyproject.toml":
            text = text.replace(f'version = "{old}"', f'version = "{version}"', 1)
        elif name == "addon/config.json":
            text = text.replace(f'"version": "{old}"', f'"version": "{version}"', 1)
        else:
            text = text.replace("# Changelog\n", f"# Changelog\n\n## {version}\n\n- Something new.\n", 1)
        path.write_text(text)


def test_a_tag_that_agrees_gives_the_version_and_the_image_of_each_arch(root):
    bump(root, "0.2.0")
    result = check(root, "v0.2.0")
    assert result.returncode == 0, result.stderr
    outputs = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert outputs["version"] == "0.2.0"
    config = json.loads((root / "addon" / "config.json").read_text())
    assert json.loads(outputs["images"]) == {
        arch: config["image"].replace("{arch}", arch) for arch in ("amd64", "aarch64")
    }


def test_the_repository_as_it_is_agrees_with_its_own_version():
    version = json.loads((REPO / "addon" / "config.json").read_text())["version"]
    assert check(REPO, f"v{version}").returncode == 0


@pytest.mark.parametrize("forgotten", ["pyproject.toml", "addon/config.json", "addon/CHANGELOG.md"])
def test_a_file_left_behind_stops_the_release_and_is_named(root, forgotten):
    bump(root, "0.2.0", [f for f in ("pyproject.toml", "addon/config.json", "addon/CHANGELOG.md") if f != forgotten])
    result = check(root, "v0.2.0")
    assert result.returncode == 1 and result.stdout == ""
    assert f"{forgotten} says '0.1.0', the tag v0.2.0 says '0.2.0'" in result.stderr
    assert sum("says" in line for line in result.stderr.splitlines()) == 1


@pytest.mark.parametrize("tag", ["0.1.0", "v0.1", "release-0.1.0", "v0.1.0 "])
def test_a_tag_that_is_not_v_and_a_version_is_refused(tag):
    result = check(REPO, tag)
    assert result.returncode == 1 and "is not v<version>" in result.stderr


def test_a_changelog_without_an_entry_is_refused(root):
    (root / "addon" / "CHANGELOG.md").write_text("# Changelog\n\nNothing yet.\n")
    result = check(root, "v0.1.0")
    assert result.returncode == 1 and "addon/CHANGELOG.md states no version" in result.stderr


def test_the_workflow_checks_the_tag_before_it_builds_every_arch_of_the_addon():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert trigger == {"push": {"tags": ["v*"]}}
    check_job, image_job = workflow["jobs"]["check"], workflow["jobs"]["image"]
    assert any("addon/check_release.py" in step.get("run", "") for step in check_job["steps"])
    assert image_job["needs"] == "check"
    built = {row["arch"]: row["platform"] for row in image_job["strategy"]["matrix"]["include"]}
    config = json.loads((REPO / "addon" / "config.json").read_text())
    assert built == {"amd64": "linux/amd64", "aarch64": "linux/arm64"} and set(built) == set(config["arch"])
    build = next(step["with"] for step in image_job["steps"] if "build-push-action" in step.get("uses", ""))
    assert (build["context"], build["file"], build["push"]) == (".", "addon/Dockerfile", True)
