"""Configuration: one frozen object, built once at start-up from the environment.

The names are those of the PHP server (Device-Flow-Proxy-Server for Enedis), so
its `.env` works as is. A `.env` file in the working directory is read too, the
environment winning. Nothing else in the package reads `os.environ`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
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
# A demo is a sandbox: its store lives in memory and dies with it. Started in a
# production folder, it must neither write to the real store nor mint tokens
# the real server accepts, nor share its server key or cached Enedis token.
DEMO_STORE = ":memory:"
STORE_NAMES = ("DB_TYPE", "SQLITE_PATH", "MONGODB_URI", "DB_ADDRESS", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME")

ACCESS_TOKEN_LIFETIME = 12600
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

# Every name this server reads; anything else found in a .env (the PHP server's
# APP_ENV, APP_SECRET, ...) is reported once and ignored.
KNOWN_NAMES = frozenset({
    "BASE_URL", "CLIENT_ID", "EXTERNAL_CLIENT_ID", "CLIENT_SECRET", "FLOW",
    "AUTHORIZATION_ENDPOINT", "ENEDIS_AUTHORIZE_VERSION", "TOKEN_ENDPOINT",
    "TOKEN_ENDPOINT_V3", "DATA_ENDPOINT", "ENEDIS_API_MODE", "REDIRECT_URI",
    "DURATION", "PKCE", "LIMIT_REQUESTS_PER_MINUTE", "CODE_LIFETIME",
    "ENEDIS_MAX_CALLS_PER_SECOND", "UPSTREAM_CONNECT_TIMEOUT",
    "UPSTREAM_READ_TIMEOUT", "VERSION_MIN", "DB_TYPE", "SQLITE_PATH",
    "MONGODB_URI", "DB_ADDRESS", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME",
    "TRUSTED_PROXIES", "THREADS", "LOG_LEVEL", "OPERATOR_NAME", "OPERATOR_CONTACT",
    "METRICS", "METRICS_TOKEN", "CONNECTION_LIMIT", "REQUEST_TIMEOUT",
    "ENEDIS_MAX_CALLS_PER_HOUR", "DATA_CALLS_PER_MINUTE",
})


class ConfigError(Exception):
    """A missing or malformed setting; the message names the variable, never a secret."""


@dataclass(frozen=True)
class Config:
    base_url: str = "http://localhost:8080"
    client_id: str = ""
    external_client_ids: tuple[str, ...] = ()
    client_secret: str = field(default="", repr=False)
    flow: str = ""  # "" (client_credentials) or "DEVICE"
    authorization_endpoint: str = DEFAULT_AUTHORIZATION_ENDPOINT
    enedis_authorize_version: str = "v2"
    token_endpoint: str = DEFAULT_TOKEN_ENDPOINT
    token_endpoint_v3: str = DEFAULT_TOKEN_ENDPOINT_V3
    data_endpoint: str = DEFAULT_DATA_ENDPOINT
    enedis_api_mode: str = "auto"
    redirect_uri: str = ""
    duration: str = "P3Y"
    duration_seconds: int = 3 * 365 * 86400
    pkce: bool = False
    limit_requests_per_minute: int = 12
    code_lifetime: int = 300
    enedis_max_calls_per_second: float = 5.0
    enedis_max_calls_per_hour: int = 1000  # Enedis's quota, per API
    data_calls_per_minute: int = 30  # per access token, within any 60 s
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 30.0
    version_min: tuple[int, ...] | None = None
    db_type: str = "sqlite"
    sqlite_path: str = "./data/deviceflow.sqlite3"
    mongodb_uri: str = field(default="", repr=False)
    mongodb_db: str = "deviceflow"
    trusted_proxies: tuple = ()
    threads: int = 32
    connection_limit: int = 0  # 0: sized to the process's file descriptors when serving
    request_timeout: float = 10.0
    log_level: str = "INFO"
    operator_name: str = ""
    operator_contact: str = ""
    metrics: bool = False
    metrics_token: str = field(default="", repr=False)
    demo: bool = False

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
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("client_secret", "metrics_token"):
                value = "***" if value else ""
            elif f.name == "mongodb_uri":
                value = redact_uri(value)
            shown.append(f"{f.name}={value!r}")
        return f"Config({', '.join(shown)})"

    __str__ = __repr__


# Query parameters of a connection string whose value may be a credential:
# password, tlsCertificateKeyFilePassword, authMechanismProperties (it carries
# AWS_SESSION_TOKEN), a token, a key, a secret, a signature...
SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key|credential|signature|^sig$|authmechanismproperties",
                              re.IGNORECASE)


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


def load(environ: dict | None = None, dotenv_path: str | os.PathLike | None = ".env",
         demo: bool = False, port: int | None = None,
         options_path: str | os.PathLike | None = None) -> Config:
    """Build the configuration: add-on options first, then `.env`, the environment winning.

    `demo` points every Enedis endpoint at the built-in simulator mounted on this
    server, with a store in memory: the store settings and `.env` (a production
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
        log.info("demo: store in memory, forgotten when the demo stops%s",
                 f" ({', '.join(dropped)} not used)" if dropped else "")
        env["SQLITE_PATH"] = DEMO_STORE
    try:
        return _parse(env, demo=demo, port=port)
    except ConfigError as error:
        raise _blame_option(error, from_options, options_path) from None


def _get(env, name, default=""):
    value = env.get(name)
    return default if value is None else str(value).strip()


def _int(env, name, default, low=1, high=10**9):
    raw = _get(env, name)
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(env, name, default, low=0.001, high=3600.0):
    raw = _get(env, name)
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not (low <= value <= high) or math.isnan(value):
        raise ConfigError(f"{name} must be between {low} and {high}, got {raw}")
    return value


def _url(env, name, default):
    value = _get(env, name, default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


def _upstream_url(env, name, default):
    """An upstream endpoint: https, since the client secret, codes and tokens
    travel to it; http only to a loopback host (a local simulator or test upstream)."""
    value = _url(env, name, default)
    parts = urlsplit(value)
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError(f"{name} must be an https URL (the secret and tokens would travel in clear); "
                          f"http is taken for a loopback host only, got {redact_uri(value)!r}")
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8, ::1
    except ValueError:
        return False


def _choice(env, name, default, choices, upper=False):
    value = _get(env, name, default)
    value = value.upper() if upper else value.lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(c or '(empty)' for c in choices)}, got {value!r}")
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


def _networks(env, name):
    nets = []
    for item in filter(None, (p.strip() for p in _get(env, name).split(","))):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name} must list IP addresses or CIDRs, got {item!r}") from None
    return tuple(nets)


def _flag(env, name) -> bool:
    value = _get(env, name).lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {value!r}")


def _metrics_token(env) -> str:
    token = _get(env, "METRICS_TOKEN")
    # A short token could be guessed by whoever can reach /metrics; the value itself is never printed.
    if token and (len(token) < 16 or any(c.isspace() or not c.isprintable() for c in token)):
        raise ConfigError("METRICS_TOKEN must be at least 16 printable characters without spaces")
    return token


def _mongodb_uri(env) -> tuple[str, str]:
    uri = _get(env, "MONGODB_URI")
    db_name = _get(env, "DB_NAME")
    if not uri and _get(env, "DB_ADDRESS"):
        # The PHP server's way: DB_ADDRESS, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME.
        host = _get(env, "DB_ADDRESS")
        port = _int(env, "DB_PORT", 27017, 1, 65535)
        user, password = _get(env, "DB_USER"), _get(env, "DB_PASSWORD")
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user else ""
        uri = f"mongodb://{auth}{host}:{port}/{quote(db_name, safe='')}"
    if uri and not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("MONGODB_URI must start with mongodb:// or mongodb+srv://")
    if not db_name and uri:
        path = urlsplit(uri).path.lstrip("/")
        db_name = path or "deviceflow"
    return uri, db_name or "deviceflow"


def _implied_authorize_version(env) -> str:
    """v2 (the 2026 consent page), unless the configured page is a pre-2026 `/v1/` one, as in a
    PHP server's `.env`: its redirect URI is registered for v1 returns, which keep working."""
    return "v1" if "/v1/" in urlsplit(_get(env, "AUTHORIZATION_ENDPOINT")).path else "v2"


def startup_warnings(config: Config) -> list[str]:
    """What the operator must hear once at start-up."""
    warnings = []
    if config.enedis_authorize_version == "v1" and (not config.device_mode or config.client_secret):
        warnings.append(
            "ENEDIS_AUTHORIZE_VERSION=v1: the pre-2026 consent page returns the meter numbers in the browser's "
            "URL, which Enedis cannot confirm; whoever completes a flow may name any meter. Move to the v2 page "
            "(ENEDIS_AUTHORIZE_VERSION=v2, and its redirect URI registered at Enedis)")
    if (config.device_mode and config.enedis_authorize_version == "v2"
            and "/dataconnect/v2/" in urlsplit(config.authorization_endpoint).path):
        warnings.append(
            "FLOW=DEVICE with Enedis's v2 consent page: that page returns no authorization code, so pass-through "
            "flows cannot complete; point AUTHORIZATION_ENDPOINT at the OAuth server to pass through, or use "
            "client_credentials (links with state=-cg and a CLIENT_SECRET)")
    return warnings


def _parse(env: dict, demo: bool, port: int | None) -> Config:
    default_base = f"http://localhost:{port or 8080}"
    base_url = _url(env, "BASE_URL", default_base)
    flow = _choice(env, "FLOW", "", ("", "DEVICE"), upper=True)
    client_id = _get(env, "CLIENT_ID")
    if not client_id and demo:
        client_id = DEMO_CLIENT_ID
    if not client_id and flow != "DEVICE":
        raise ConfigError("CLIENT_ID is required (or start with --demo)")

    authorize_version = _choice(env, "ENEDIS_AUTHORIZE_VERSION", _implied_authorize_version(env), ("v1", "v2"))
    if demo:
        # The browser reaches the simulator through BASE_URL; the proxy calls it on loopback.
        internal = f"http://127.0.0.1:{port or urlsplit(base_url).port or 8080}{DEMO_PREFIX}"
        authorization_endpoint = f"{base_url}{DEMO_PREFIX}/dataconnect/{authorize_version}/oauth2/authorize"
        token_endpoint = f"{internal}/v1/oauth2/token"
        token_endpoint_v3 = f"{internal}/oauth2/v3/token"
        data_endpoint = internal
    else:
        default_authorize = DEFAULT_AUTHORIZATION_ENDPOINT.replace("/v2/", f"/{authorize_version}/")
        authorization_endpoint = _upstream_url(env, "AUTHORIZATION_ENDPOINT", default_authorize)
        token_endpoint = _upstream_url(env, "TOKEN_ENDPOINT", DEFAULT_TOKEN_ENDPOINT)
        token_endpoint_v3 = _upstream_url(env, "TOKEN_ENDPOINT_V3", DEFAULT_TOKEN_ENDPOINT_V3)
        data_endpoint = _upstream_url(env, "DATA_ENDPOINT", DEFAULT_DATA_ENDPOINT)

    redirect_uri = _url(env, "REDIRECT_URI", f"{base_url}/auth/redirect")
    duration = _get(env, "DURATION", "P3Y") or "P3Y"
    duration_seconds = parse_duration("DURATION", duration)

    version_min = _get(env, "VERSION_MIN")
    mongodb_uri, mongodb_db = _mongodb_uri(env)
    db_type = _choice(env, "DB_TYPE", "mongodb" if mongodb_uri else "sqlite", ("sqlite", "mongodb"))
    if db_type == "mongodb" and not mongodb_uri:
        raise ConfigError("DB_TYPE=mongodb needs MONGODB_URI (or DB_ADDRESS)")

    return Config(
        base_url=base_url,
        client_id=client_id,
        external_client_ids=tuple(filter(None, (c.strip() for c in _get(env, "EXTERNAL_CLIENT_ID").split(",")))),
        client_secret=_get(env, "CLIENT_SECRET"),
        flow=flow,
        authorization_endpoint=authorization_endpoint,
        enedis_authorize_version=authorize_version,
        token_endpoint=token_endpoint,
        token_endpoint_v3=token_endpoint_v3,
        data_endpoint=data_endpoint,
        enedis_api_mode=_choice(env, "ENEDIS_API_MODE", "auto", ("auto", "new", "legacy")),
        redirect_uri=redirect_uri,
        duration=duration,
        duration_seconds=duration_seconds,
        pkce=bool(_get(env, "PKCE")),
        limit_requests_per_minute=_int(env, "LIMIT_REQUESTS_PER_MINUTE", 12, 1, 600),
        code_lifetime=_int(env, "CODE_LIFETIME", 300, 30, 86400),
        enedis_max_calls_per_second=_float(env, "ENEDIS_MAX_CALLS_PER_SECOND", 5.0, 0.1, 1000),
        enedis_max_calls_per_hour=_int(env, "ENEDIS_MAX_CALLS_PER_HOUR", 1000, 1, 10**6),
        data_calls_per_minute=_int(env, "DATA_CALLS_PER_MINUTE", 30, 1, 600),
        upstream_connect_timeout=_float(env, "UPSTREAM_CONNECT_TIMEOUT", 5.0, 0.1, 120),
        upstream_read_timeout=_float(env, "UPSTREAM_READ_TIMEOUT", 30.0, 0.1, 600),
        version_min=parse_version("VERSION_MIN", version_min) if version_min else None,
        db_type=db_type,
        sqlite_path=_get(env, "SQLITE_PATH", "./data/deviceflow.sqlite3") or "./data/deviceflow.sqlite3",
        mongodb_uri=mongodb_uri,
        mongodb_db=mongodb_db,
        trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
        threads=_int(env, "THREADS", 32, 1, 1024),
        connection_limit=_int(env, "CONNECTION_LIMIT", 0, 10, 1_000_000),
        request_timeout=_float(env, "REQUEST_TIMEOUT", 10.0, 1, 300),
        log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
        operator_name=_get(env, "OPERATOR_NAME"),
        operator_contact=_get(env, "OPERATOR_CONTACT"),
        metrics=_flag(env, "METRICS"),
        metrics_token=_metrics_token(env),
        demo=demo,
    )


# --- Home Assistant add-on options ------------------------------------------
# The Supervisor writes the options a user set in the add-on's page to
# /data/options.json (optional ones left empty are absent). Each maps to one
# setting of SPEC section 2, so the add-on and a plain install share one parser.

OPTION_NAMES = {
    "base_url": "BASE_URL",
    "client_id": "CLIENT_ID",
    "client_secret": "CLIENT_SECRET",
    "external_client_id": "EXTERNAL_CLIENT_ID",
    "flow": "FLOW",
    "enedis_authorize_version": "ENEDIS_AUTHORIZE_VERSION",
    "enedis_api_mode": "ENEDIS_API_MODE",
    "mongodb_uri": "MONGODB_URI",
    "log_level": "LOG_LEVEL",
}
# Not a setting but how the add-on starts: run.sh adds `--demo` when it is true.
RUN_OPTIONS = ("demo",)
# The add-on names the modes; FLOW keeps the PHP server's values.
FLOW_OPTIONS = {"client_credentials": "", "device": "DEVICE"}
OPTIONS_STORE_NAME = "deviceflow.sqlite3"


def read_options(path: str | os.PathLike) -> dict[str, str]:
    """Settings (SPEC names) from an add-on options file.

    The embedded store defaults to a file beside it, i.e. /data/deviceflow.sqlite3
    in the add-on, on the volume the Supervisor keeps and backs up.
    """
    path = Path(path)
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"options file {path} not found") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"options file {path} is not valid JSON "
                          f"(line {error.lineno}, column {error.colno})") from None
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
            raise ConfigError(f"options file {path}: unknown option {option!r} "
                              f"(known: {', '.join([*OPTION_NAMES, *RUN_OPTIONS])})")
        if value is None:
            continue
        if not isinstance(value, str):
            # never echo the value: it may be the secret
            raise ConfigError(f"options file {path}: option {option} must be text")
        if option == "flow":
            if value not in FLOW_OPTIONS:
                raise ConfigError(f"options file {path}: option flow must be one of "
                                  f"{', '.join(FLOW_OPTIONS)}, got {value!r}")
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
