"""Configuration: one frozen object, built once at start-up from the environment.

The names are those of the PHP server (Device-Flow-Proxy-Server for Enedis), so
its `.env` works as is. A `.env` file in the working directory is read too, the
environment winning. Nothing else in the package reads `os.environ`.

Every setting is one row of `SETTINGS`: its name, parser, default, range, help
text and Home Assistant add-on option. `Config`, `KNOWN_NAMES`, `OPTION_NAMES`
and docs/configuration.md (`python -m deviceflow.config --markdown`) are derived
from that table.
"""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import json
import logging
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from dotenv import dotenv_values

log = logging.getLogger("deviceflow.config")

DEFAULT_AUTHORIZATION_ENDPOINT = "https://mon-compte-particulier.enedis.fr/dataconnect/v2/oauth2/authorize"
DEFAULT_TOKEN_ENDPOINT = "https://gw.prd.api.enedis.fr/v1/oauth2/token"
DEFAULT_TOKEN_ENDPOINT_V3 = "https://gw.ext.prod.api.enedis.fr/oauth2/v3/token"
DEFAULT_DATA_ENDPOINT = "https://gw.ext.prod.api.enedis.fr"
DEMO_CLIENT_ID = "deviceflow-demo"
# Where `--demo` mounts the simulated Enedis on the proxy's own port.
DEMO_PREFIX = "/enedis"
# A demo is a sandbox: its store is thrown away when it stops. Started in a
# production folder, it must neither write to the real store nor mint tokens
# the real server accepts, nor share its server key or cached Enedis token.
DEMO_STORE = ":memory:"
STORE_NAMES = ("DB_TYPE", "SQLITE_PATH", "MONGODB_URI", "DB_ADDRESS", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME")

ACCESS_TOKEN_LIFETIME = 12600
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
MARKDOWN_COMMAND = "python -m deviceflow.config --markdown > docs/configuration.md"


class ConfigError(Exception):
    """A missing or malformed setting; the message names the variable, never a secret."""


# --- parsers ------------------------------------------------------------------
# A parser turns the text of a set variable (stripped, maybe blank) into the
# value of its setting, or raises a ConfigError naming it; it returns TAKE_DEFAULT
# to take the default. Unset and blank mean the same, except where a blank
# is itself a value to check (an empty URL or choice is refused: the operator
# wrote the variable and meant something). The first line of its docstring is
# what the docs show in the "values" column ({low}, {high}, {choices} filled
# from the setting's range); its return annotation is the `Config` field's type.

TAKE_DEFAULT = object()


def text(setting: Setting, value: str) -> str:
    """text"""
    return value or TAKE_DEFAULT


def names(setting: Setting, value: str) -> tuple[str, ...]:
    """comma-separated list"""
    return tuple(filter(None, (item.strip() for item in value.split(","))))


def whole_number(setting: Setting, value: str) -> int:
    """{low} to {high}"""
    if value == "":
        return TAKE_DEFAULT
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{setting.name} must be a whole number, got {value!r}") from None
    low, high = setting.range
    if not low <= number <= high:
        raise ConfigError(f"{setting.name} must be between {low} and {high}, got {number}")
    return number


def number(setting: Setting, value: str) -> float:
    """{low} to {high}"""
    if value == "":
        return TAKE_DEFAULT
    try:
        parsed = float(value)
    except ValueError:
        raise ConfigError(f"{setting.name} must be a number, got {value!r}") from None
    low, high = setting.range
    if not (low <= parsed <= high) or math.isnan(parsed):
        raise ConfigError(f"{setting.name} must be between {low} and {high}, got {value}")
    return parsed


def url(setting: Setting, value: str) -> str:
    """http(s) URL"""
    value = value.rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{setting.name} must be an http(s) URL, got {value!r}")
    return value


def upstream_url(setting: Setting, value: str) -> str:
    """https URL (http for a loopback host only)

    An upstream endpoint: the client secret, codes and tokens travel to it, so
    http is taken only for a loopback host (a local simulator or test upstream)."""
    value = url(setting, value)
    parts = urlsplit(value)
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError(
            f"{setting.name} must be an https URL (the secret and tokens would travel in clear); "
            f"http is taken for a loopback host only, got {redact_uri(value)!r}"
        )
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8, ::1
    except ValueError:
        return False


def choice(setting: Setting, value: str) -> str:
    """{choices}

    Compared in the case of the choices (FLOW=device is DEVICE, LOG_LEVEL=debug is DEBUG)."""
    upper = all(c == c.upper() for c in setting.range)
    value = value.upper() if upper else value.lower()
    if value not in setting.range:
        raise ConfigError(
            f"{setting.name} must be one of {', '.join(c or '(empty)' for c in setting.range)}, got {value!r}"
        )
    return value


def flag(setting: Setting, value: str) -> bool:
    """`1` or `0` (also `true`/`false`, `yes`/`no`, `on`/`off`)"""
    value = value.lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{setting.name} must be 1 or 0, got {value!r}")


def php_boolean(setting: Setting, value: str) -> bool:
    """off: empty, `0`, `false`, `no`, `off`; on: any other text

    Read as the PHP server read it (any text but "" and "0" is true), and the
    words of `flag` for off, so that a PHP `.env` keeps its meaning and PKCE=0
    or PKCE=false is off."""
    return value.lower() not in ("", "0", "false", "no", "off")


def duration(setting: Setting, value: str) -> str:
    """ISO 8601 duration (`P3Y`, `P6M`, `P1Y6M`, `P30D`)"""
    if value == "":
        return TAKE_DEFAULT
    parse_duration(setting.name, value)
    return value


def version(setting: Setting, value: str) -> tuple[int, ...] | None:
    """`x`, `x.y` or `x.y.z`"""
    return parse_version(setting.name, value) if value else None


def networks(setting: Setting, value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """comma-separated IP addresses or CIDRs"""
    nets = []
    for item in filter(None, (p.strip() for p in value.split(","))):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{setting.name} must list IP addresses or CIDRs, got {item!r}") from None
    return tuple(nets)


def bearer_token(setting: Setting, value: str) -> str:
    """at least 16 printable characters, no spaces"""
    # A short token could be guessed by whoever can reach /metrics; the value itself is never printed.
    if value and (len(value) < 16 or any(c.isspace() or not c.isprintable() for c in value)):
        raise ConfigError(f"{setting.name} must be at least 16 printable characters without spaces")
    return value


def mongodb_uri(setting: Setting, value: str) -> str:
    """`mongodb://…` or `mongodb+srv://…`"""
    if value == "":
        return TAKE_DEFAULT
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError(f"{setting.name} must start with mongodb:// or mongodb+srv://")
    return value


_DURATION = re.compile(r"^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?$")


def parse_duration(name: str, value: str) -> int:
    """ISO 8601 date duration (P3Y, P6M, P1Y6M, P30D) in seconds, calendar-free."""
    match = _DURATION.match(value)
    if not match or not any(match.groups()):
        raise ConfigError(f"{name} must be an ISO 8601 duration such as P3Y or P6M, got {value!r}")
    years, months, weeks, days = (int(g or 0) for g in match.groups())
    return (years * 365 + months * 30 + weeks * 7 + days) * 86400


def parse_version(name: str, value: str) -> tuple[int, ...]:
    if not re.fullmatch(r"\d+(\.\d+){0,2}", value):
        raise ConfigError(f"{name} must look like 1.2.3, got {value!r}")
    return tuple(int(p) for p in value.split("."))


def _hidden(value: str) -> str:
    return "***" if value else ""


# Query parameters of a connection string whose value may be a credential:
# password, tlsCertificateKeyFilePassword, authMechanismProperties (it carries
# AWS_SESSION_TOKEN), a token, a key, a secret, a signature...
SECRET_PARAMETER = re.compile(
    r"pass|pwd|secret|token|key|credential|signature|^sig$|authmechanismproperties", re.IGNORECASE
)


def redact_uri(uri: str) -> str:
    """A connection string fit for logs: the password of its user information,
    every query parameter whose name suggests a secret and any fragment are
    replaced by ***. Read as text, not parsed, so that a malformed URI (an
    unencoded @ or [ in the password) is redacted too."""
    if not uri:
        return uri
    scheme, separator, rest = uri.partition("://")
    if not separator:
        scheme, rest = "", uri
    rest, hash_, _ = rest.partition("#")
    authority_and_path, question, query = rest.partition("?")
    if "@" in authority_and_path:
        # The user information ends at the last @ before the query: a password may hold / or @.
        userinfo, _, hosts = authority_and_path.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        authority_and_path = f"{user}{colon and ':***'}@{hosts}"
    pairs = re.split(r"([&;])", query) if question else []
    for index in range(0, len(pairs), 2):
        name, equals, value = pairs[index].partition("=")
        if equals and value and SECRET_PARAMETER.search(name):
            pairs[index] = f"{name}=***"
    return f"{scheme}{separator}{authority_and_path}{question}{''.join(pairs)}{hash_ and '#***'}"


# --- the table ----------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting: what the operator writes, how it is read, what it means."""

    name: str  # the environment variable, as the PHP server named it
    parse: Callable[[Setting, str], Any]
    default: Any  # a value, or a function of the reading (`_Reading`) when it depends on other settings
    help: str
    range: tuple = ()  # (low, high) of a number, or the choices
    option: str = ""  # the Home Assistant add-on option that sets it
    shown: str = ""  # the default in words, for the docs: required when `default` is a function
    field: str | None = ""  # the Config field: name.lower() when "", none for a part of another setting
    redact: Callable[[Any], Any] | None = None  # how repr shows a secret
    demo: Callable[[_Reading], Any] | None = None  # the value under --demo, whatever the environment says

    def __post_init__(self):
        if self.field == "":
            object.__setattr__(self, "field", self.name.lower())
        if callable(self.default) and not self.shown:
            raise TypeError(f"{self.name}: a derived default is shown in words")

    def read(self, reading: _Reading) -> Any:
        if reading.demo and self.demo is not None:
            return self.demo(reading)
        raw = reading.env.get(self.name)
        value = TAKE_DEFAULT if raw is None else self.parse(self, str(raw).strip())
        if value is not TAKE_DEFAULT:
            return value
        return self.default(reading) if callable(self.default) else self.default


class _Reading:
    """One pass over the table: the environment, the command line's --demo and
    --port, and the values read so far. A derived default asks for the settings
    it depends on by name (`reading["BASE_URL"]`); each is read once, on demand."""

    def __init__(self, env: dict, demo: bool = False, port: int | None = None):
        self.env, self.demo, self.port = env, demo, port
        self.values: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.values:
            self.values[name] = SETTING[name].read(self)
        return self.values[name]

    def text(self, name: str) -> str:
        """What the environment says, before any parsing ("" when unset)."""
        return str(self.env.get(name) or "").strip()


# Derived defaults: each in one place, next to the setting it belongs to.


def _base_url(reading: _Reading) -> str:
    return f"http://localhost:{reading.port or 8080}"


def _client_id(reading: _Reading) -> str:
    # Required unless --demo or FLOW=DEVICE: checked once all settings are read (`_check`).
    return DEMO_CLIENT_ID if reading.demo else ""


def _authorize_version(reading: _Reading) -> str:
    """v2 (the 2026 consent page), unless the configured page is a pre-2026 `/v1/` one, as in a
    PHP server's `.env`: its redirect URI is registered for v1 returns, which keep working."""
    return "v1" if "/v1/" in urlsplit(reading.text("AUTHORIZATION_ENDPOINT")).path else "v2"


def _authorization_endpoint(reading: _Reading) -> str:
    return DEFAULT_AUTHORIZATION_ENDPOINT.replace("/v2/", f"/{reading['ENEDIS_AUTHORIZE_VERSION']}/")


# Under --demo the browser reaches the simulator through BASE_URL; the proxy calls it on loopback.


def _demo_consent_page(reading: _Reading) -> str:
    version = reading["ENEDIS_AUTHORIZE_VERSION"]
    return f"{reading['BASE_URL']}{DEMO_PREFIX}/dataconnect/{version}/oauth2/authorize"


def _simulator(reading: _Reading) -> str:
    return f"http://127.0.0.1:{reading.port or urlsplit(reading['BASE_URL']).port or 8080}{DEMO_PREFIX}"


def _redirect_uri(reading: _Reading) -> str:
    return f"{reading['BASE_URL']}/auth/redirect"


def _mongodb_uri_of_php_settings(reading: _Reading) -> str:
    """The PHP server's way: DB_ADDRESS, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME."""
    host = reading["DB_ADDRESS"]
    if not host:
        return ""
    user, password = reading["DB_USER"], reading["DB_PASSWORD"]
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
    return f"mongodb://{auth}{host}:{reading['DB_PORT']}/{quote(reading['DB_NAME'], safe='')}"


def _db_type(reading: _Reading) -> str:
    return "mongodb" if reading["MONGODB_URI"] else "sqlite"


def _php_db(what: str) -> str:
    return f"the PHP server's way to name its MongoDB: {what}"


_UNTRUSTED = "[untrusted answers](data-proxy.md#what-upstream-answers-is-untrusted-input)"
_WHOLE_ANSWER = f"an answer must also be whole within connect + 2 × read (65 s by default: {_UNTRUSTED})"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "BASE_URL",
        url,
        _base_url,
        option="base_url",
        shown="`http://localhost:8080` (the port served)",
        help="public URL of the proxy (no trailing slash); every URL it shows is built from it, never from the "
        "`Host` header",
    ),
    Setting(
        "CLIENT_ID",
        text,
        _client_id,
        option="client_id",
        shown="— (required, except with `--demo`: `deviceflow-demo`, or `FLOW=DEVICE`)",
        help="Enedis client id; devices may present it",
    ),
    Setting(
        "EXTERNAL_CLIENT_ID",
        names,
        (),
        option="external_client_id",
        field="external_client_ids",
        help="extra comma-separated client ids devices may present instead of `CLIENT_ID`",
    ),
    Setting(
        "CLIENT_SECRET",
        text,
        "",
        option="client_secret",
        redact=_hidden,
        help="Enedis secret; when empty the device may send `client_secret` with `/device/code`",
    ),
    Setting(
        "FLOW",
        choice,
        "",
        range=("", "DEVICE"),
        option="flow",
        help="empty: client_credentials mode (tokens minted by the proxy); `DEVICE`: generic pass-through",
    ),
    Setting(
        "AUTHORIZATION_ENDPOINT",
        upstream_url,
        _authorization_endpoint,
        demo=_demo_consent_page,
        shown="Enedis consent page (v2, or v1 with `ENEDIS_AUTHORIZE_VERSION=v1`)",
        help="where the browser is sent",
    ),
    Setting(
        "ENEDIS_AUTHORIZE_VERSION",
        choice,
        _authorize_version,
        range=("v1", "v2"),
        option="enedis_authorize_version",
        shown="`v2` (`v1` when `AUTHORIZATION_ENDPOINT` is a `/v1/` page, as in a PHP server's `.env`)",
        help="`v2`: Enedis returns `autorisation_id`, checked with Enedis; `v1`: it returns `code` + "
        "`usage_point_id`, which Enedis cannot confirm (a WARNING at start-up). Only the configured form "
        "of return is accepted ([consent](protocol.md#consent-v2-and-v1))",
    ),
    Setting(
        "TOKEN_ENDPOINT",
        upstream_url,
        DEFAULT_TOKEN_ENDPOINT,
        demo=lambda reading: f"{_simulator(reading)}/v1/oauth2/token",
        help="authorization_code / refresh_token exchange (`FLOW=DEVICE`)",
    ),
    Setting(
        "TOKEN_ENDPOINT_V3",
        upstream_url,
        DEFAULT_TOKEN_ENDPOINT_V3,
        demo=lambda reading: f"{_simulator(reading)}/oauth2/v3/token",
        help="client_credentials token",
    ),
    Setting("DATA_ENDPOINT", upstream_url, DEFAULT_DATA_ENDPOINT, demo=_simulator, help="base of the Enedis data APIs"),
    Setting(
        "ENEDIS_API_MODE",
        choice,
        "auto",
        range=("auto", "new", "legacy"),
        option="enedis_api_mode",
        help="`legacy` (v5 as is), `new` (Data Connect 2026, translated), `auto` (2026 first, v5 on failure) "
        "([details](data-proxy.md#data-connect-2026-enedis_api_mode))",
    ),
    Setting(
        "REDIRECT_URI", url, _redirect_uri, shown="`BASE_URL/auth/redirect`", help="sent upstream as `redirect_uri`"
    ),
    Setting("DURATION", duration, "P3Y", help="consent duration asked of Enedis; also the refresh tokens' lifetime"),
    Setting("PKCE", php_boolean, False, shown="unset", help="on: S256 PKCE towards upstream (`FLOW=DEVICE`)"),
    Setting(
        "LIMIT_REQUESTS_PER_MINUTE",
        whole_number,
        12,
        range=(1, 600),
        help="polls allowed per device code per minute, counted by each instance; `interval` = ceil(60 / limit)",
    ),
    Setting(
        "CODE_LIFETIME", whole_number, 300, range=(30, 86400), help="seconds a device code / user code stays valid"
    ),
    Setting(
        "ENEDIS_MAX_CALLS_PER_SECOND",
        number,
        5.0,
        range=(0.1, 1000),
        help="outbound budget towards Enedis, shared by all instances on one store",
    ),
    Setting(
        "ENEDIS_MAX_CALLS_PER_HOUR",
        whole_number,
        1000,
        range=(1, 10**6),
        help="Enedis's quota of calls to one API within an hour, counted by the proxy for all instances on one "
        "store; past it 429 without calling Enedis ([the data proxy](data-proxy.md))",
    ),
    Setting(
        "DATA_CALLS_PER_MINUTE",
        whole_number,
        30,
        range=(1, 600),
        help="`/data/proxy` calls allowed per access token within any 60 s; past it 429 with `Retry-After`",
    ),
    Setting(
        "UPSTREAM_CONNECT_TIMEOUT",
        number,
        5.0,
        range=(0.1, 120),
        help=f"seconds to connect, on every upstream call; {_WHOLE_ANSWER}",
    ),
    Setting(
        "UPSTREAM_READ_TIMEOUT",
        number,
        30.0,
        range=(0.1, 600),
        help=f"seconds to wait for each read, on every upstream call; {_WHOLE_ANSWER}",
    ),
    Setting(
        "VERSION_MIN",
        version,
        None,
        help="refuse device requests whose `User-Agent` is not `Name/x.y.z` with at least this version "
        "(400 `version_mismatch`)",
    ),
    Setting(
        "DB_TYPE",
        choice,
        _db_type,
        range=("sqlite", "mongodb"),
        shown="`sqlite` (`mongodb` when `MONGODB_URI` or `DB_ADDRESS` is set)",
        help="`sqlite` (embedded) or `mongodb`",
    ),
    Setting(
        "SQLITE_PATH",
        text,
        "./data/deviceflow.sqlite3",
        help="the embedded store's file (in the add-on, `deviceflow.sqlite3` beside its options file)",
    ),
    Setting(
        "MONGODB_URI",
        mongodb_uri,
        _mongodb_uri_of_php_settings,
        option="mongodb_uri",
        redact=redact_uri,
        shown="empty (built from `DB_ADDRESS`… when that is set)",
        help="MongoDB connection string; when set, `DB_TYPE` defaults to `mongodb`",
    ),
    Setting(
        "DB_ADDRESS",
        text,
        "",
        field=None,
        help=_php_db("its host; when set and `MONGODB_URI` is not, `MONGODB_URI` is built from the `DB_*` settings"),
    ),
    Setting("DB_PORT", whole_number, 27017, range=(1, 65535), field=None, help=_php_db("its port")),
    Setting("DB_USER", text, "", field=None, help=_php_db("the user (empty: no authentication)")),
    Setting("DB_PASSWORD", text, "", field=None, help=_php_db("the user's password")),
    Setting(
        "DB_NAME",
        text,
        "",
        field=None,
        shown="the database of `MONGODB_URI`, else `deviceflow`",
        help=_php_db("the database"),
    ),
    Setting("TRUSTED_PROXIES", networks, (), help="addresses/CIDRs whose `X-Forwarded-For` / `-Proto` are believed"),
    Setting("THREADS", whole_number, 32, range=(1, 1024), help="waitress worker threads"),
    # 0 stands for "sized to the machine": serving.default_connection_limit counts the file descriptors
    # when the server starts, not when the configuration is read.
    Setting(
        "CONNECTION_LIMIT",
        whole_number,
        0,
        range=(10, 1_000_000),
        shown="sized to the machine",
        help="connections open at once; by default the process's file-descriptor limit less `THREADS` and 64, "
        "at most 4,096 (waitress's own default, 100, let 100 slow clients lock everyone out). Logged at "
        "start-up",
    ),
    Setting(
        "REQUEST_TIMEOUT",
        number,
        10.0,
        range=(1, 300),
        help="seconds a request may take to arrive whole (headers and body), from its first byte or from the "
        "connection; past it the connection is closed (a WARNING at most once a minute counts them). See "
        "[slow clients](security.md)",
    ),
    Setting(
        "LOG_LEVEL",
        choice,
        "INFO",
        range=LOG_LEVELS,
        option="log_level",
        help="the least severe messages logged, from `DEBUG` (all) to `CRITICAL`",
    ),
    Setting("OPERATOR_NAME", text, "", help="who runs this instance, shown in the pages' footer"),
    Setting("OPERATOR_CONTACT", text, "", help="how to reach who runs this instance, shown in the pages' footer"),
    Setting("METRICS", flag, False, help="`1`: serve `/metrics` (Prometheus text format) to anyone who can reach it"),
    Setting(
        "METRICS_TOKEN",
        bearer_token,
        "",
        redact=_hidden,
        help="serve `/metrics` only with `Authorization: Bearer <this>` (at least 16 characters; implies `METRICS`)",
    ),
)

SETTING = {setting.name: setting for setting in SETTINGS}
# Every name this server reads; anything else found in a .env (the PHP server's
# APP_ENV, APP_SECRET, ...) is reported once and ignored.
KNOWN_NAMES = frozenset(SETTING)


def _mongodb_db(reading: _Reading) -> str:
    uri = reading["MONGODB_URI"]
    return reading["DB_NAME"] or (urlsplit(uri).path.lstrip("/") if uri else "") or "deviceflow"


# Config fields that are not settings but follow from them (or from the command line).
DERIVED: tuple[tuple[str, str, Callable[[_Reading], Any]], ...] = (
    ("duration_seconds", "int", lambda reading: parse_duration("DURATION", reading["DURATION"])),
    ("mongodb_db", "str", _mongodb_db),
    ("demo", "bool", lambda reading: reading.demo),
)


def _read_all(reading: _Reading) -> dict[str, Any]:
    values = {setting.field: reading[setting.name] for setting in SETTINGS if setting.field}
    return values | {name: value(reading) for name, _, value in DERIVED}


def _check(values: dict[str, Any]) -> None:
    """What no setting can say alone."""
    if not values["client_id"] and values["flow"] != "DEVICE":
        raise ConfigError("CLIENT_ID is required (or start with --demo)")
    if values["db_type"] == "mongodb" and not values["mongodb_uri"]:
        raise ConfigError("DB_TYPE=mongodb needs MONGODB_URI (or DB_ADDRESS)")


class _ConfigMethods:
    """What `Config` adds to its fields (the table's settings and `DERIVED`)."""

    @property
    def interval(self) -> int:
        """Polling interval that keeps a device within the polling budget."""
        return max(1, math.ceil(60 / self.limit_requests_per_minute))

    @property
    def device_mode(self) -> bool:
        return self.flow == "DEVICE"

    @property
    def allowed_client_ids(self) -> frozenset[str]:
        return frozenset(filter(None, (self.client_id, *self.external_client_ids)))

    @property
    def timeouts(self) -> tuple[float, float]:
        return (self.upstream_connect_timeout, self.upstream_read_timeout)

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _REDACTED:
                value = _REDACTED[f.name](value)
            shown.append(f"{f.name}={value!r}")
        return f"Config({', '.join(shown)})"

    __str__ = __repr__


_REDACTED = {setting.field: setting.redact for setting in SETTINGS if setting.redact}
# The defaults are those of an empty environment (load() then asks for CLIENT_ID).
_DEFAULTS = _read_all(_Reading({}))
Config = dataclasses.make_dataclass(
    "Config",
    [
        (
            setting.field,
            inspect.signature(setting.parse).return_annotation,
            dataclasses.field(default=_DEFAULTS[setting.field]),
        )
        for setting in SETTINGS
        if setting.field
    ]
    + [(name, kind, dataclasses.field(default=_DEFAULTS[name])) for name, kind, _ in DERIVED],
    bases=(_ConfigMethods,),
    frozen=True,
    repr=False,
    namespace={"__module__": __name__, "__doc__": "The configuration: a field per setting of SETTINGS, and DERIVED."},
)


def load(
    environ: dict | None = None,
    dotenv_path: str | os.PathLike | None = ".env",
    demo: bool = False,
    port: int | None = None,
    options_path: str | os.PathLike | None = None,
) -> Config:
    """Build the configuration: add-on options first, then `.env`, the environment winning.

    `demo` points every Enedis endpoint at the built-in simulator mounted on this
    server, with a throwaway store: the store settings and `.env` (a production
    folder's) are not read; `port` (the one served) fixes the default BASE_URL in that case.
    `options_path` names a Home Assistant add-on options file (see `read_options`).
    """
    env: dict[str, str] = read_options(options_path) if options_path else {}
    from_options = set(env)
    dotenv: dict[str, str] = {}
    if demo and dotenv_path and Path(dotenv_path).is_file():
        log.info("demo: %s is not read (a demo keeps to itself)", dotenv_path)
    elif dotenv_path and Path(dotenv_path).is_file():
        dotenv = {k: v or "" for k, v in dotenv_values(dotenv_path).items()}
    ignored = sorted(k for k in dotenv if k not in KNOWN_NAMES)
    for layer in (dotenv, os.environ if environ is None else environ):
        env.update(layer)
        from_options -= set(layer)
    if ignored:
        log.info("ignoring settings this server does not use: %s", ", ".join(ignored))
    if demo:
        dropped = [name for name in STORE_NAMES if name in env and name not in from_options]
        for name in STORE_NAMES:
            env.pop(name, None)
        log.info(
            "demo: a throwaway store, removed when the demo stops%s",
            f" ({', '.join(dropped)} not used)" if dropped else "",
        )
        env["SQLITE_PATH"] = DEMO_STORE
    try:
        values = _read_all(_Reading(env, demo=demo, port=port))
        _check(values)
        return Config(**values)
    except ConfigError as error:
        raise _blame_option(error, from_options, options_path) from None


def startup_warnings(config: Config) -> list[str]:
    """What the operator must hear once at start-up."""
    warnings = []
    if config.enedis_authorize_version == "v1" and (not config.device_mode or config.client_secret):
        warnings.append(
            "ENEDIS_AUTHORIZE_VERSION=v1: the pre-2026 consent page returns the meter numbers in the browser's "
            "URL, which Enedis cannot confirm; whoever completes a flow may name any meter. Move to the v2 page "
            "(ENEDIS_AUTHORIZE_VERSION=v2, and its redirect URI registered at Enedis)"
        )
    if (
        config.device_mode
        and config.enedis_authorize_version == "v2"
        and "/dataconnect/v2/" in urlsplit(config.authorization_endpoint).path
    ):
        warnings.append(
            "FLOW=DEVICE with Enedis's v2 consent page: that page returns no authorization code, so pass-through "
            "flows cannot complete; point AUTHORIZATION_ENDPOINT at the OAuth server to pass through, or use "
            "client_credentials (links with state=-cg and a CLIENT_SECRET)"
        )
    return warnings


# --- Home Assistant add-on options ------------------------------------------
# The Supervisor writes the options a user set in the add-on's page to
# /data/options.json (optional ones left empty are absent). Each maps to one
# setting (its `option` in the table), so the add-on and a plain install share one parser.

OPTION_NAMES = {setting.option: setting.name for setting in SETTINGS if setting.option}
# Not a setting but how the add-on starts: run.sh adds `--demo` when it is true.
RUN_OPTIONS = ("demo",)
# The add-on names the modes; FLOW keeps the PHP server's values.
FLOW_OPTIONS = {"client_credentials": "", "device": "DEVICE"}
OPTIONS_STORE_NAME = "deviceflow.sqlite3"


def read_options(path: str | os.PathLike) -> dict[str, str]:
    """Settings (by their environment names) from an add-on options file.

    The embedded store defaults to a file beside it, i.e. /data/deviceflow.sqlite3
    in the add-on, on the volume the Supervisor keeps and backs up.
    """
    path = Path(path)
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"options file {path} not found") from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"options file {path} is not valid JSON (line {error.lineno}, column {error.colno})"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"options file {path} cannot be read ({type(error).__name__})") from None
    if not isinstance(options, dict):
        raise ConfigError(f"options file {path} must hold a JSON object")
    env = {"SQLITE_PATH": str(path.parent / OPTIONS_STORE_NAME)}
    for option, value in options.items():
        if option in RUN_OPTIONS:
            if not isinstance(value, bool):
                raise ConfigError(f"options file {path}: option {option} must be true or false")
            continue
        name = OPTION_NAMES.get(option)
        if name is None:
            raise ConfigError(
                f"options file {path}: unknown option {option!r} (known: {', '.join([*OPTION_NAMES, *RUN_OPTIONS])})"
            )
        if value is None:
            continue
        if not isinstance(value, str):
            # never echo the value: it may be the secret
            raise ConfigError(f"options file {path}: option {option} must be text")
        if option == "flow":
            if value not in FLOW_OPTIONS:
                raise ConfigError(
                    f"options file {path}: option flow must be one of {', '.join(FLOW_OPTIONS)}, got {value!r}"
                )
            value = FLOW_OPTIONS[value]
        env[name] = value
    return env


def _blame_option(error: ConfigError, from_options: set[str], options_path) -> ConfigError:
    """Name the add-on option behind a bad setting, so that the user knows what to fix."""
    named = re.match(r"[A-Z][A-Z0-9_]*", str(error))
    name = named.group(0) if named else ""
    if name not in from_options:
        return error
    option = next((o for o, n in OPTION_NAMES.items() if n == name), name)
    return ConfigError(f"{error} (option {option} in {options_path})")


# --- the configuration document -----------------------------------------------


def _shown(value: Any) -> str:
    if value in ("", (), None):
        return "empty"
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _number(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _values(setting: Setting) -> str:
    words = inspect.getdoc(setting.parse).splitlines()[0]
    if setting.parse is choice:
        return words.format(choices=", ".join(f"`{c}`" if c else "empty" for c in setting.range))
    if setting.range:
        low, high = setting.range
        return words.format(low=_number(low), high=_number(high))
    return words


def markdown() -> str:
    """docs/configuration.md: the table of settings, for people."""
    rows = []
    for setting in SETTINGS:
        default = setting.shown or _shown(setting.default)
        if setting.demo:
            default += " (with `--demo`: the simulator)"
        option = f"`{setting.option}`" if setting.option else ""
        rows.append(f"| `{setting.name}` | {default} | {_values(setting)} | {option} | {setting.help} |")
    flow_options = " or ".join(
        f"`{option}` ({f'`FLOW={value}`' if value else '`FLOW` empty'})" for option, value in FLOW_OPTIONS.items()
    )
    run_options = ", ".join(f"`{option}`" for option in RUN_OPTIONS)
    store_names = ", ".join(f"`{name}`" for name in STORE_NAMES)
    prose = [
        "deviceflow reads its settings from the environment, under the names the PHP server gave them, so that its "
        "`.env` works as is. A `.env` file in the working directory is read too, the environment winning. A name "
        "this server does not use (the PHP server's `APP_ENV`, `APP_SECRET`, ...) is reported once at start-up and "
        "ignored. A malformed value stops the server with one line naming the variable, never a secret.",
        "In the Home Assistant add-on, the options of the add-on's page come first, and `.env` and the environment "
        f"win over them. The add-on's `flow` option takes {flow_options}. Its {run_options} option is not a "
        "setting: it starts the server with `--demo`.",
        "With `--demo`, the Enedis endpoints are those of the simulator served on the proxy's own port, and the "
        f"store is thrown away when it stops: {store_names} and `.env` are not read.",
    ]
    return "\n".join(
        [
            "# Configuration",
            "",
            "<!-- Made from the table of settings in deviceflow/config.py (SETTINGS): edit it there, then run",
            f"     {MARKDOWN_COMMAND} -->",
            "",
            *(
                textwrap.fill(paragraph, 80, break_long_words=False, break_on_hyphens=False) + "\n"
                for paragraph in prose
            ),
            "| name | default | values | add-on option | meaning |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit(f"usage: {MARKDOWN_COMMAND}")
    sys.stdout.write(markdown())
