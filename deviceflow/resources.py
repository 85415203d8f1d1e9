"""Files served beside the code: the page templates, static files, the OpenAPI description."""

from __future__ import annotations

from pathlib import Path


def _resource_dir(name: str) -> Path:
    """views/, static/ and openapi.yaml sit beside the package in a wheel, at the repository root in a clone."""
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.exists():
            return candidate
    raise RuntimeError(f"{name} not found next to the deviceflow package")


VIEWS = _resource_dir("views")
STATIC = _resource_dir("static")
OPENAPI = _resource_dir("openapi.yaml")
