#!/usr/bin/env python3
"""Checks that a release tag and the files that state the version agree, before the add-on
image is published (.github/workflows/publish.yml):

    python3 addon/check_release.py v0.2.0

The tag must be `v` followed by the version that pyproject.toml, addon/config.json and the newest
entry of addon/CHANGELOG.md (its first `## <version>` heading) all give. On success it prints, for
GitHub's step outputs, `version=<version>` and `images=<JSON: add-on arch -> image name>` (the
`image` of config.json with `{arch}` filled in); otherwise it names every file that disagrees and
exits 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def versions(root: Path) -> dict[str, str | None]:
    """The version each file states (None where it states none)."""
    found: dict[str, str | None] = {}
    try:
        found["pyproject.toml"] = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"].get(
            "version"
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        found["pyproject.toml"] = None
    try:
        found["addon/config.json"] = json.loads((root / "addon" / "config.json").read_text(encoding="utf-8")).get(
            "version"
        )
    except (OSError, ValueError):
        found["addon/config.json"] = None
    try:
        heading = re.search(r"^##\s+v?(\S+)", (root / "addon" / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
        found["addon/CHANGELOG.md"] = heading.group(1) if heading else None
    except OSError:
        found["addon/CHANGELOG.md"] = None
    return found


def problems(tag: str, found: dict[str, str | None]) -> list[str]:
    match = re.fullmatch(r"v(\d+\.\d+\.\d+(?:[.-]?[0-9A-Za-z.]+)?)", tag)
    if not match:
        return [f"tag {tag!r} is not v<version> (for example v0.2.0)"]
    version = match.group(1)
    return [
        f"{name} says {stated!r}, the tag {tag} says {version!r}" if stated else f"{name} states no version"
        for name, stated in found.items()
        if stated != version
    ]


def images(root: Path) -> dict[str, str]:
    config = json.loads((root / "addon" / "config.json").read_text(encoding="utf-8"))
    return {arch: config["image"].replace("{arch}", arch) for arch in config["arch"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tag", help="the pushed tag, e.g. v0.2.0 (GITHUB_REF_NAME)")
    parser.add_argument("--root", type=Path, default=REPO, help="repository root (default: this script's)")
    args = parser.parse_args(argv)
    wrong = problems(args.tag, versions(args.root))
    if wrong:
        print(f"{args.tag}: not released, the version does not agree:", *wrong, sep="\n  ", file=sys.stderr)
        return 1
    print(f"version={args.tag[1:]}")
    print(f"images={json.dumps(images(args.root), separators=(',', ':'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
