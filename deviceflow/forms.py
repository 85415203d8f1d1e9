"""What a request carries, read strictly: one value per name, UTF-8, no control characters, bounded sizes.

Bottle's own conveniences are avoided here: its form parser takes any body and keeps the last of repeated
parameters, and `remote_addr` believes any X-Forwarded-For (deviceflow.middleware.ClientAddress has already
settled REMOTE_ADDR).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import bottle

from deviceflow.errors import InvalidRequest
from deviceflow.middleware import ascii_only

MAX_BODY = 64 * 1024
MAX_VALUE = 4096
MAX_NAME = 256
CONTROL_CHARACTERS = re.compile("[\x00\r\n]")


def read_form(environ) -> dict[str, str]:
    """The urlencoded body of a request, strictly: one value per name,
    UTF-8, no control characters, at most 64 KiB."""
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidRequest("bad Content-Length") from None
    if length > MAX_BODY:
        raise InvalidRequest("request body over 64 KiB")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    if body and content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    return parse_pairs(body, "body")


def parse_pairs(raw: bytes | str, where: str) -> dict[str, str]:
    """`name=value&...` as application/x-www-form-urlencoded says (`+` is a space, %XX a byte of UTF-8);
    a name without `=` has an empty value. Parsed here rather than by `urllib.parse.parse_qsl`, which
    does the same at twice the cost, on the path of every poll."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        form: dict[str, str] = {}
        for piece in text.split("&"):
            if not piece:
                continue
            name, _, value = piece.partition("=")
            name, value = _unquote(name), _unquote(value)
            if name in form:
                raise InvalidRequest(f"parameter {ascii_only(name)} is repeated")
            if len(value) > MAX_VALUE or len(name) > MAX_NAME:
                raise InvalidRequest(f"parameter {ascii_only(name)} is too long")
            if CONTROL_CHARACTERS.search(name) or CONTROL_CHARACTERS.search(value):
                raise InvalidRequest(f"parameter {ascii_only(name)} holds control characters")
            form[name] = value
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest(f"the {where} is not valid UTF-8 form data") from None
    return form


def _unquote(text: str) -> str:
    return unquote_plus(text, errors="strict") if "%" in text or "+" in text else text


def query_params(environ) -> dict[str, str]:
    return parse_pairs(environ.get("QUERY_STRING", ""), "query string")


def raw_path(environ) -> str:
    """The request path as the client sent it. PATH_INFO is already decoded
    (waitress turns %2F into / and %2e into .), so the raw target is read
    from REQUEST_URI (waitress) or RAW_URI (gunicorn) when the server gives it."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw is None:
        return environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    return raw.split("?", 1)[0]


def bearer_token(header: str | None) -> str | None:
    scheme, _, token = (header or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def client_address() -> str:
    """The address of the client of the current request, as ClientAddress settled it."""
    return bottle.request.environ.get("REMOTE_ADDR", "") or "unknown"
