#!/usr/bin/env python3
"""Shows that every runtime dependency of deviceflow installs in the add-on image, on each
architecture the add-on names, and pins the tested set for the image.

The image is Alpine (musl libc) with the Python of the Dockerfile's FROM line. For each `arch` of
addon/config.json, pip is asked for wheels only, as the image's pip would pick them:

    pip download --only-binary=:all: --platform musllinux_1_2_<machine> --python-version <X.Y> ...

first one dependency at a time (which have a wheel), then for the whole set with what they need in
turn. A dependency with no wheel for a platform (pymongo) is built from its source distribution
with the C compiler out of reach (CC names a program that does not exist, as in the image, which
has none), installed in a fresh venv and imported: it must fall back to pure Python.

    python3 addon/platforms.py           check that addon/constraints.txt installs everywhere
    python3 addon/platforms.py --update  resolve afresh within pyproject.toml's ranges and rewrite it

It prints a Markdown table (dependency x architecture: wheel or source) and exits 1 when something
does not install or the constraints file no longer matches. It needs the package index. pip is run
with the image's Python when it is on PATH (python3.13 for a 3.13 base), so that the dependencies'
markers are read for that version; otherwise with this Python, which it says.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONSTRAINTS = HERE / "constraints.txt"
# Home Assistant's architecture names -> the machine part of a wheel's platform tag
MACHINES = {"amd64": "x86_64", "aarch64": "aarch64"}
SOURCE = "source, pure Python (built without a compiler)"
HEADER = """\
# What the add-on image installs (addon/Dockerfile: pip install --constraint this file).
# Written by `python3 addon/platforms.py --update`, which checked that each of these installs
# on {arches} (musllinux, Python {python}); edit pyproject.toml, then run it again.
"""


# --- pure logic: what the files say ---------------------------------------------------------


def base_image(dockerfile: str) -> tuple[str, str]:
    """(Python version, Alpine version) of `FROM ghcr.io/home-assistant/base-python:3.13-alpine3.22`."""
    match = re.search(r"^FROM\s+\S*base-python:(\d+\.\d+)-alpine(\d+\.\d+)\s*$", dockerfile, re.M)
    if not match:
        raise ValueError("addon/Dockerfile: no `FROM ...base-python:<python>-alpine<version>` line")
    return match.group(1), match.group(2)


def musl_platforms(machine: str) -> list[str]:
    """Platform tags an Alpine pip accepts (musl 1.2 runs wheels built for musllinux 1.0 to 1.2)."""
    return [f"musllinux_1_{minor}_{machine}" for minor in (2, 1, 0)]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def runtime_requirements(pyproject: str) -> list[str]:
    return list(tomllib.loads(pyproject)["project"]["dependencies"])


def distribution(filename: str) -> tuple[str, str, str]:
    """(name, version, how it installs) of a file pip downloaded."""
    if filename.endswith(".whl"):
        name, version, *_, python, abi, platform = filename[:-4].split("-")
        how = "wheel (pure Python)" if (abi, platform) == ("none", "any") else f"wheel ({abi}, {platform})"
        return normalize(name), version, how
    stem = re.sub(r"\.(tar\.gz|zip)$", "", filename)
    name, version = stem.rsplit("-", 1)
    return normalize(name), version, "source"


def pins(text: str) -> dict[str, str]:
    return {normalize(m.group(1)): m.group(2) for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.M)}


def tested_versions(results: dict[str, dict[str, tuple[str, str]]]) -> dict[str, str]:
    """One version per package over every architecture (the image must not differ between them)."""
    versions: dict[str, set[str]] = {}
    for found in results.values():
        for name, (version, _) in found.items():
            versions.setdefault(name, set()).add(version)
    split = {name: sorted(v) for name, v in versions.items() if len(v) > 1}
    if split:
        raise ValueError(f"versions differ between architectures: {split}")
    return {name: v.pop() for name, v in sorted(versions.items())}


def constraints_text(versions: dict[str, str], arches: list[str], python: str) -> str:
    lines = [f"{name}=={version}" for name, version in sorted(versions.items())]
    return HEADER.format(arches=" and ".join(arches), python=python) + "\n".join(lines) + "\n"


def pin_problems(pinned: dict[str, str], versions: dict[str, str]) -> list[str]:
    """What differs between the constraints file and what was resolved with it."""
    problems = [
        f"{name} {version} installs but is not pinned" for name, version in versions.items() if name not in pinned
    ]
    problems += [f"{name} is pinned but no longer installed" for name in pinned if name not in versions]
    problems += [
        f"{name} resolved to {versions[name]}, pinned {version}"
        for name, version in pinned.items()
        if name in versions and versions[name] != version
    ]
    return problems


def table(results: dict[str, dict[str, tuple[str, str]]], direct: list[str]) -> str:
    """Markdown: one row a package (the direct dependencies first), one column an architecture."""
    arches = list(results)
    names = sorted({n for found in results.values() for n in found}, key=lambda n: (n not in direct, n))
    rows = ["| dependency | version | " + " | ".join(arches) + " |", "|---|---|" + "---|" * len(arches)]
    for name in names:
        version = next(found[name][0] for found in results.values() if name in found)
        label = name if name in direct else f"{name} (needed by another)"
        cells = [results[a][name][1] if name in results[a] else "not needed" for a in arches]
        rows.append(f"| {label} | {version} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --- what pip says ---------------------------------------------------------------------------


def image_python(version: str, given: str | None = None) -> tuple[str, bool]:
    """The base image's Python: the one given, else python<X.Y> on PATH or in pyenv, else this one."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = (
        [given]
        if given
        else [shutil.which(f"python{version}"), *sorted(map(str, pyenv.glob(f"{version}.*/bin/python{version}")))]
    )
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            ran = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
            ).stdout.strip()
            return candidate, ran == version
    return sys.executable, f"{sys.version_info[0]}.{sys.version_info[1]}" == version


def pip(python: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True, env=env)


def wheels_only(python, requirements, machine, version, destination, constraints, no_deps=False):
    platforms = [f"--platform={p}" for p in musl_platforms(machine)]
    args = [
        "download",
        "--quiet",
        "--only-binary=:all:",
        *platforms,
        f"--python-version={version}",
        "--implementation=cp",
        "--dest",
        str(destination),
    ]
    args += ["--no-deps"] if no_deps else []
    args += ["--constraint", str(constraints)] if constraints else []
    return pip(python, *args, *requirements)


def built_without_compiler(python, requirement, constraints, work: Path) -> tuple[str, str, list[str], list[str]]:
    """Build `requirement` from source with no compiler, install it in a fresh venv and import it.
    (name, version, its own requirements, its packages); RuntimeError when any of that fails."""
    name = requirement_name(requirement)
    wheels = work / "built"
    env = {**os.environ, "CC": str(work / "no-compiler"), "CXX": str(work / "no-compiler")}
    # --no-cache-dir: a wheel built earlier on this machine, with its compiler, must not stand in
    args = ["wheel", "--quiet", "--no-cache-dir", "--no-deps", f"--no-binary={name}", "--wheel-dir", str(wheels)]
    args += ["--constraint", str(constraints)] if constraints else []
    result = pip(python, *args, requirement, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{name}: no build from source without a compiler\n{result.stderr[-2000:]}")
    [wheel] = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        members = archive.namelist()
        metadata = archive.read(next(m for m in members if m.endswith(".dist-info/METADATA"))).decode()
    compiled = [m for m in members if m.endswith((".so", ".pyd"))]
    if compiled:
        raise RuntimeError(f"{name}: the build without a compiler still holds compiled code: {compiled}")
    packages = sorted({m.split("/")[0] for m in members if m.endswith("/__init__.py") and m.count("/") == 1})
    venv = work / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
    args = ["install", "--quiet", str(wheel)] + (["--constraint", str(constraints)] if constraints else [])
    installed = pip(str(venv / "bin" / "python"), *args)
    if installed.returncode != 0:
        raise RuntimeError(f"{name}: its source build does not install\n{installed.stderr[-2000:]}")
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import {', '.join(packages)}"], capture_output=True, text=True
    )
    if imported.returncode != 0:
        raise RuntimeError(f"{name}: its source build does not import\n{imported.stderr[-2000:]}")
    requires = [r.split(":", 1)[1].strip() for r in metadata.splitlines() if r.startswith("Requires-Dist:")]
    version = re.search(r"^Version: (\S+)", metadata, re.M).group(1)
    return name, version, [r for r in requires if "extra ==" not in r], packages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="resolve afresh and rewrite addon/constraints.txt")
    parser.add_argument("--python", help="the Python to run pip with (default: the base image's version, if found)")
    args = parser.parse_args(argv)

    python_version, alpine = base_image((HERE / "Dockerfile").read_text(encoding="utf-8"))
    named = json.loads((HERE / "config.json").read_text(encoding="utf-8"))["arch"]
    arches = [arch for arch in MACHINES if arch in named]
    problems: list[str] = [f"{arch}: not an architecture this script knows" for arch in named if arch not in MACHINES]
    direct = runtime_requirements((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    direct_names = [requirement_name(r) for r in direct]
    constraints = None if args.update else CONSTRAINTS
    python, same = image_python(python_version, args.python)
    print(
        f"Python {python_version} on Alpine {alpine} (musl), pip run by {python}"
        + ("" if same else f": markers are read for this Python, not {python_version}"),
        file=sys.stderr,
    )

    results: dict[str, dict[str, tuple[str, str]]] = {}
    built: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="deviceflow-platforms-") as tmp:
        work = Path(tmp)
        for arch in arches:
            machine = MACHINES[arch]
            found: dict[str, tuple[str, str]] = {}
            for_wheels = []
            for requirement in direct:
                name = requirement_name(requirement)
                probe = wheels_only(
                    python, [requirement], machine, python_version, work / arch / "probe", constraints, no_deps=True
                )
                if probe.returncode == 0:
                    for_wheels.append(requirement)
                    continue
                if name not in built:  # once: a build without compiled code is the same on every arch
                    try:
                        built[name] = built_without_compiler(python, requirement, constraints, work / name)
                    except RuntimeError as error:
                        built[name] = None
                        problems.append(str(error))
                if built[name] is None:
                    continue
                _, version, requires, _ = built[name]
                found[name] = (version, SOURCE)
                for_wheels += requires
            result = wheels_only(python, for_wheels, machine, python_version, work / arch / "all", constraints)
            if result.returncode != 0:
                problems.append(f"{arch}: {result.stderr.strip()[-2000:]}")
            for file in sorted((work / arch / "all").glob("*")) if (work / arch / "all").exists() else ():
                name, version, how = distribution(file.name)
                found[name] = (version, how)
            results[arch] = dict(sorted(found.items()))

    print(table(results, direct_names))
    try:
        versions = tested_versions(results)
    except ValueError as error:
        problems.append(str(error))
        versions = {}
    if problems:
        print("\n".join(["", "Does not install:", *problems]), file=sys.stderr)
        return 1
    if args.update:
        CONSTRAINTS.write_text(constraints_text(versions, arches, python_version), encoding="utf-8")
        print(f"\nwrote {CONSTRAINTS.relative_to(REPO)}", file=sys.stderr)
        return 0
    stale = pin_problems(pins(CONSTRAINTS.read_text(encoding="utf-8")), versions)
    if stale:
        print(
            "\n".join(["", "addon/constraints.txt is stale (python3 addon/platforms.py --update):", *stale]),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
