"""What a usage point is: the 14-digit number of a meter (PRM), in ASCII digits.

One definition for every module, so that no path accepts what another refuses
(`str.isdigit` and `\\d` would take Arabic-Indic or full-width digits too).
"""

from __future__ import annotations

import re

USAGE_POINT = re.compile(r"[0-9]{14}")


def is_usage_point(value) -> bool:
    return isinstance(value, str) and USAGE_POINT.fullmatch(value) is not None


def parse_usage_points(raw: str) -> list[str]:
    """One or several PRMs, `;` or `,` separated (as Enedis's v1 consent returns them), duplicates
    dropped; ValueError unless every one is a usage point."""
    points = [p.strip() for p in re.split(r"[;,]", raw or "") if p.strip()]
    if not points or not all(is_usage_point(p) for p in points):
        raise ValueError("usage_point_id must list 14-digit meter numbers")
    return list(dict.fromkeys(points))
