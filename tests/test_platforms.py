"""addon/platforms.py without the package index: what it reads of the repository's files and of
the files pip hands it, and what it concludes. (Its pip calls run in .ci/run, not here.)"""

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("addon_platforms", REPO / "addon" / "platforms.py")
platforms = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(platforms)

AMD64 = {
    "cryptography": ("50.0.2", "wheel (abi3, musllinux_1_2_x86_64)"),
    "pymongo": ("4.20.1", platforms.SOURCE),
    "dnspython": ("2.9.2", "wheel (pure Python)"),
}
AARCH64 = {
    "cryptography": ("50.0.2", "wheel (abi3, musllinux_1_2_aarch64)"),
    "pymongo": ("4.20.1", platforms.SOURCE),
    "dnspython": ("2.9.2", "wheel (pure Python)"),
}


def test_it_reads_the_base_images_python_and_alpine_from_the_dockerfile():
    assert platforms.base_image((REPO / "addon" / "Dockerfile").read_text()) == ("3.13", "3.22")
    assert platforms.base_image("FROM ghcr.io/home-assistant/base-python:3.14-alpine3.23\n") == ("3.14", "3.23")
    with pytest.raises(ValueError, match="base-python"):
        platforms.base_image("FROM python:3.13-slim\n")


def test_an_alpine_pip_takes_musllinux_wheels_up_to_musl_1_2():
    assert platforms.musl_platforms("aarch64") == [
        "musllinux_1_2_aarch64",
        "musllinux_1_1_aarch64",
        "musllinux_1_0_aarch64",
    ]


@pytest.mark.parametrize(
    "filename, expected",
    [
        ("bottle-0.13.5-py2.py3-none-any.whl", ("bottle", "0.13.5", "wheel (pure Python)")),
        (
            "cryptography-50.0.2-cp311-abi3-musllinux_1_2_x86_64.whl",
            ("cryptography", "50.0.2", "wheel (abi3, musllinux_1_2_x86_64)"),
        ),
        (
            "charset_normalizer-3.5.3-cp313-cp313-musllinux_1_2_aarch64.whl",
            ("charset-normalizer", "3.5.3", "wheel (cp313, musllinux_1_2_aarch64)"),
        ),
        ("prometheus_client-0.26.0-1-py3-none-any.whl", ("prometheus-client", "0.26.0", "wheel (pure Python)")),
        ("pymongo-4.20.1.tar.gz", ("pymongo", "4.20.1", "source")),
    ],
)
def test_it_tells_a_wheel_from_a_source_distribution(filename, expected):
    assert platforms.distribution(filename) == expected


def test_the_table_has_a_row_a_package_and_a_column_an_architecture():
    text = platforms.table({"amd64": AMD64, "aarch64": AARCH64}, direct=["cryptography", "pymongo"])
    rows = text.splitlines()
    assert rows[0] == "| dependency | version | amd64 | aarch64 |"
    assert rows[2] == (
        "| cryptography | 50.0.2 | wheel (abi3, musllinux_1_2_x86_64) | wheel (abi3, musllinux_1_2_aarch64) |"
    )
    assert rows[3] == f"| pymongo | 4.20.1 | {platforms.SOURCE} | {platforms.SOURCE} |"
    assert rows[4].startswith("| dnspython (needed by another) | 2.9.2 |")


def test_the_image_gets_one_version_of_each_package_on_every_architecture():
    assert platforms.tested_versions({"amd64": AMD64, "aarch64": AARCH64}) == {
        "cryptography": "50.0.2",
        "dnspython": "2.9.2",
        "pymongo": "4.20.1",
    }
    with pytest.raises(ValueError, match="cryptography"):
        platforms.tested_versions({"amd64": AMD64, "aarch64": {**AARCH64, "cryptography": ("49.0", "wheel")}})


def test_a_constraints_file_that_no_longer_matches_is_named_stale():
    versions = {"cryptography": "50.0.2", "pymongo": "4.20.1"}
    text = platforms.constraints_text(versions, ["amd64", "aarch64"], "3.13")
    assert platforms.pins(text) == versions and "amd64 and aarch64" in text
    assert platforms.pin_problems(platforms.pins(text), versions) == []
    assert platforms.pin_problems({"cryptography": "49.0", "bottle": "0.13"}, versions) == [
        "pymongo 4.20.1 installs but is not pinned",
        "bottle is pinned but no longer installed",
        "cryptography resolved to 50.0.2, pinned 49.0",
    ]


def test_the_committed_constraints_pin_every_runtime_dependency_within_its_range():
    """A dependency added to pyproject.toml without `addon/platforms.py --update` fails here."""
    pinned = platforms.pins((REPO / "addon" / "constraints.txt").read_text())
    for line in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        name = platforms.normalize(requirement.name)
        assert name in pinned, f"{name} not in addon/constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (name, pinned[name])


def test_docs_give_the_tested_versions():
    """addon/DOCS.md's platform table is the script's output for the pinned set."""
    docs = (REPO / "addon" / "DOCS.md").read_text()
    rows = dict(re.findall(r"^\| ([a-z0-9-]+)(?: \(needed by another\))? \| (\d\S*) \|", docs, re.M))
    assert rows == platforms.pins((REPO / "addon" / "constraints.txt").read_text())
