"""Enedis's ways on the wire: how a request is read, and the body and headers of each kind of answer.

Every answer is a ``bottle.HTTPResponse``, never ``bottle.abort``: once the
simulator is mounted, its routes run inside the parent app, whose error
handlers would reshape an ``HTTPError`` but pass an ``HTTPResponse`` through.
A check that fails raises its answer: Bottle sends a raised ``HTTPResponse``
exactly as a returned one.

The kinds of error bodies:

* ``{"error", "error_description", "error_uri"}`` with the ADAM codes, on the
  v5 and measure APIs (:func:`v5_error`);
* ``{"error", "error_description"}`` on the token endpoints (:func:`oauth_error`);
* ``{"code", "message", "description"}`` from Enedis's API gateway (WSO2), for
  authentication, throttling and unknown resources (:func:`gateway_error`);
* ``{"code", "message"}`` for the 2026 APIs' technical errors (:func:`technical_error`).
"""

from __future__ import annotations

import json
import secrets

import bottle

ERROR_URI = "https://bluecoder.enedis.fr/api-doc/consulter-souscrire"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def request_arg(source: bottle.FormsDict, name: str) -> str | None:
    """A query or form parameter as text, stripped; None when absent."""
    # getunicode: bottle decodes raw values as latin-1 otherwise.
    value = source.getunicode(name)
    return value if value is None else value.strip()


def bearer_token() -> str | None:
    """The token of the request's ``Authorization: Bearer`` header; None for any other scheme or none."""
    scheme, _, token = (bottle.request.get_header("Authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison of secrets (any characters)."""
    return secrets.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def json_answer(status: int, obj, headers: dict | None = None) -> bottle.HTTPResponse:
    all_headers = {"Content-Type": "application/json;charset=UTF-8"}
    all_headers.update(headers or {})
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return bottle.HTTPResponse(body=body, status=status, headers=all_headers)


def html_answer(status: int, text: str, headers: dict | None = None) -> bottle.HTTPResponse:
    all_headers = {"Content-Type": "text/html; charset=utf-8"}
    all_headers.update(headers or {})
    return bottle.HTTPResponse(body=text.encode("utf-8"), status=status, headers=all_headers)


def redirect(location: str) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(status=302, headers={"Location": location})


def v5_error(status: int, error: str, description: str) -> bottle.HTTPResponse:
    return json_answer(status, {"error": error, "error_description": description, "error_uri": ERROR_URI})


def oauth_error(status: int, error: str, description: str) -> bottle.HTTPResponse:
    return json_answer(status, {"error": error, "error_description": description}, NO_STORE)


def technical_error() -> bottle.HTTPResponse:
    """What the 2026 APIs answer to anything outside their Swagger."""
    return json_answer(500, {"code": "500", "message": "Problème technique dans l'interrogation du SI coeur"})


def gateway_error(
    status: int, code: str, message: str, description: str, headers: dict | None = None
) -> bottle.HTTPResponse:
    """An answer of Enedis's API gateway (WSO2), as fixtures-2026/erreur_comptage_non_souscrit.json."""
    return json_answer(status, {"code": code, "message": message, "description": description}, headers)


def not_found() -> bottle.HTTPResponse:
    return gateway_error(
        404, "900906", "No matching resource found for given API Request", "The requested resource is not available."
    )


def forbidden() -> bottle.HTTPResponse:
    """An API the application has not subscribed to, as fixtures-2026/erreur_comptage_non_souscrit.json."""
    return gateway_error(
        403,
        "900908",
        "Resource forbidden ",
        "User is NOT authorized to access the Resource. API Subscription validation failed.",
    )


def unauthorized(missing: bool) -> bottle.HTTPResponse:
    """The gateway's 401: `missing` when no bearer token came at all, else for a token it does not honour."""
    headers = {"WWW-Authenticate": 'Bearer realm="Enedis simulator", error="invalid_token"'}
    if missing:
        return gateway_error(
            401,
            "900902",
            "Missing Credentials",
            "Invalid Credentials. Make sure your API invocation call has "
            "a header: 'Authorization : Bearer ACCESS_TOKEN'",
            headers,
        )
    return gateway_error(
        401,
        "900901",
        "Invalid Credentials",
        "Invalid Credentials. Make sure you have provided the correct security credentials",
        headers,
    )


def throttled(next_access_time: str | None) -> bottle.HTTPResponse:
    body = {"code": "900802", "message": "Message throttled out", "description": "You have exceeded your quota"}
    if next_access_time:
        body["description"] += f" .You can access API after {next_access_time}"
        body["nextAccessTime"] = next_access_time
    return json_answer(429, body)
