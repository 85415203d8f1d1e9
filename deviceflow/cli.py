"""Command line: `deviceflow serve [--host] [--port] [--demo]`, and the operator's
tools `import-php`, `stats`, `revoke`, `purge` (all on the configured store).

Exit codes: 0 done, 1 failed (store or source unreachable, nothing to revoke),
2 usage or configuration error."""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import signal
import sys
import threading
import time
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from deviceflow import __version__
from deviceflow import config as configuration

log = logging.getLogger("deviceflow")

# Proxy headers are checked by our own middleware against TRUSTED_PROXIES, so
# waitress must leave them in place. Bodies the app would refuse anyway (over
# 64 KiB) get its own 400; far bigger ones are refused by waitress before it
# buffers them to disk.
MAX_REQUEST_BODY = 1024 * 1024
WAITRESS_OPTIONS = {
    "clear_untrusted_proxy_headers": False,
    "ident": "deviceflow",
    "channel_timeout": 60,
    "max_request_body_size": MAX_REQUEST_BODY,
}
# Writes to SQLite take turns on a lock, and a thread leaving a statement waits
# for the GIL while the others queue behind it; by default a waiting thread
# asks the running one to let go only after 5 ms. At 0.1 ms, polls under load
# ran about 35 % faster (bench/run.py, measured in turns).
SWITCH_INTERVAL = 0.0001
PURGE_EVERY = 3600.0
# `import-php --from-mongodb` alone: the MongoDB of the configuration.
CONFIGURED_MONGODB = "configured"


def serve_wsgi(
    app, host: str, port: int, threads: int, connection_limit: int = 0, request_timeout: float = 10.0
) -> None:
    """Serve a WSGI app on waitress the way deviceflow is served (bench/ serves its ceiling with it too),
    guarded against slow clients (deviceflow.serving); `connection_limit` 0 sizes it to the machine."""
    from deviceflow import serving

    sys.setswitchinterval(SWITCH_INTERVAL)
    limit = connection_limit or serving.default_connection_limit(threads)
    log.info(
        "connections: at most %d open (CONNECTION_LIMIT), each request received whole within %g s (REQUEST_TIMEOUT)",
        limit,
        request_timeout,
    )
    server = serving.create_server(app, host, port, threads, WAITRESS_OPTIONS, limit, request_timeout)
    server.print_listen("Serving on http://{}:{}")
    server.run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deviceflow", description="OAuth 2.0 Device Flow proxy for Enedis")
    parser.add_argument("--version", action="version", version=f"deviceflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the proxy with waitress")
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0; 127.0.0.1 with --demo)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="mount a simulated Enedis on the same port and point every endpoint at it; "
        "a sandbox: a throwaway store, .env and store settings not read",
    )
    serve.add_argument(
        "--options",
        metavar="PATH",
        help="Home Assistant add-on options file (JSON) to read first; .env and the environment win",
    )

    importer = commands.add_parser(
        "import-php", help="import the refresh tokens of the PHP server (devices keep working without a new consent)"
    )
    source = importer.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-mongodb",
        metavar="URI",
        nargs="?",
        const=CONFIGURED_MONGODB,
        help="the PHP server's MongoDB; alone, the configured one (MONGODB_URI, or DB_ADDRESS, "
        "DB_USER, DB_PASSWORD, DB_NAME as in its .env); a URI given here may not carry a "
        "password (ps and the shell history would show it)",
    )
    source.add_argument(
        "--from-mongodb-file",
        metavar="PATH",
        help="the PHP server's MongoDB URI, read from the first line of this file ('-': standard input)",
    )
    source.add_argument(
        "--from-csv",
        metavar="FILE",
        help="a CSV export of the PHP server's PostgreSQL cache table (key, value, expire_at)",
    )
    importer.add_argument(
        "--db", help="database of the PHP server's MongoDB, when the URI (or DB_NAME) does not name it"
    )
    importer.add_argument("--collection", default="cache", help="collection of the PHP cache (default cache)")
    importer.add_argument(
        "--timezone",
        default="UTC",
        help="zone of CSV dates written without an offset (PHP's date.timezone; default UTC)",
    )
    importer.add_argument("--dry-run", action="store_true", help="read and check everything, write nothing")

    commands.add_parser("stats", help="pending flows, live authorizations, usage points, Enedis calls")

    revoke = commands.add_parser("revoke", help="revoke authorizations: their refresh and access tokens stop working")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--usage-point", metavar="PRM", help="every authorization covering this 14-digit PRM")
    target.add_argument(
        "--refresh-token",
        metavar="TOKEN",
        help="the authorization of this refresh token ('-' reads it from standard input, "
        "keeping it out of the shell history)",
    )

    commands.add_parser("purge", help="delete expired records from the store")
    return parser


def setup_logging(level: str) -> None:
    """Log lines to standard error, those below WARNING in batches (deviceflow.logwriter). Every command
    logs this way: the operator's tools log at WARNING, so their lines are written at once all the same."""
    from deviceflow.logwriter import BatchedStreamHandler

    if logging.getLogger().handlers:
        return  # configured already (as basicConfig leaves it: a test's capture, an embedding program)
    logging.basicConfig(
        level=level,
        handlers=[BatchedStreamHandler(sys.stderr)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@contextlib.contextmanager
def exit_on_sigterm():
    """Within it, SIGTERM (docker stop, systemd, a test's terminate()) ends the server as Ctrl-C does:
    waitress's loop returns, the requests under way finish, and the process exits normally with status 0,
    writing the log lines still waiting. Python's own SIGTERM ends the process on the spot, losing them."""

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it on the spot
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def load_config(args) -> configuration.Config:
    """The configuration, or one clear line and exit 2."""
    # OPTIONS_PATH: the add-on image sets it, so that the operator's tools read the add-on's options too.
    options_path = getattr(args, "options", None) or os.environ.get("OPTIONS_PATH") or None
    try:
        return configuration.load(
            demo=getattr(args, "demo", False), port=getattr(args, "port", None), options_path=options_path
        )
    except configuration.ConfigError as error:
        print(f"deviceflow: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def build_app(config: configuration.Config):
    """The WSGI app with its store, upstream client and, in demo mode, the simulator."""
    from deviceflow.enedis import EnedisClient
    from deviceflow.metrics import Metrics
    from deviceflow.web import make_app

    store = open_configured_store(config)  # a store unusable at start: one line and exit 1, no traceback
    metrics = Metrics(store)  # one for the routes and the Enedis client
    enedis = EnedisClient(config, store, metrics=metrics)
    simulator = None
    if config.demo:
        from deviceflow.simulator import Simulator

        # Real Enedis sends the person back to the URL registered on DataHub: the simulator plays that part.
        simulator = Simulator(
            f"{config.base_url}{configuration.DEMO_PREFIX}",
            client_id=config.client_id,
            redirect_uri=config.redirect_uri,
        )
        # Printed once, for whoever drives the simulator's knobs (the demo's own operator, tests).
        print(
            f"deviceflow demo: simulator control token {simulator.control_token} "
            f"(POST {configuration.DEMO_PREFIX}/_control with Authorization: Bearer <token>)",
            file=sys.stderr,
            flush=True,
        )
    return make_app(config, store, upstream=enedis, simulator=simulator, metrics=metrics)


def purge_hourly(store, every: float = PURGE_EVERY, stop: threading.Event | None = None) -> threading.Thread:
    """Expired records deleted every `every` seconds by a background thread.
    SQLite keeps them otherwise (an add-on has no cron; a public server grows a
    few records per device and day); on MongoDB the TTL index does it too."""
    from deviceflow.errors import StoreUnavailable

    stop = stop or threading.Event()

    def run():
        while not stop.wait(every):
            try:
                purged = store.purge()
            except StoreUnavailable:
                continue  # logged by the store; the next round tries again
            if purged:
                log.info("purged %d expired records", purged)

    thread = threading.Thread(target=run, name="deviceflow-purge", daemon=True)
    thread.start()
    return thread


def serve(args) -> int:
    with exit_on_sigterm():
        setup_logging("INFO")
        config = load_config(args)
        logging.getLogger().setLevel(config.log_level)
        app = build_app(config)
        purge_hourly(app.store)
        # A demo answers this machine only, unless told otherwise.
        host = args.host or ("127.0.0.1" if config.demo else "0.0.0.0")
        log.info(
            "deviceflow %s on http://%s:%d (public URL %s, store %s%s)",
            __version__,
            host,
            args.port,
            config.base_url,
            "throwaway" if config.demo else config.db_type,
            ", DEMO: simulated Enedis" if config.demo else "",
        )
        for warning in configuration.startup_warnings(config):
            log.warning("%s", warning)
        serve_wsgi(app, host, args.port, config.threads, config.connection_limit, config.request_timeout)
    log.info("deviceflow stopped")
    return 0


def open_configured_store(config: configuration.Config):
    """The configured store, or one clear line and exit 1."""
    from deviceflow.errors import StoreUnavailable
    from deviceflow.store import open_store

    try:
        store = open_store(config)
        store.ping()
    except (StoreUnavailable, OSError) as error:
        where = config.sqlite_path if config.db_type == "sqlite" else configuration.redact_uri(config.mongodb_uri)
        print(
            f"deviceflow: the {config.db_type} store at {where} is not available ({type(error).__name__})",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    return store


def operator_tool(command):
    """Configuration and store for an operator command; a store that fails midway is exit 1."""

    def run(args) -> int:
        from deviceflow.errors import StoreUnavailable

        setup_logging("WARNING")
        config = load_config(args)
        store = open_configured_store(config)
        try:
            return command(args, config, store)
        except StoreUnavailable:
            print("deviceflow: the store stopped answering; nothing more was done", file=sys.stderr)
            return 1
        finally:
            store.close()

    return run


def php_mongodb(args, config: configuration.Config) -> tuple[str, str]:
    """The PHP server's MongoDB URI and database, never taken with a password
    from the command line (exit 2 when there is none to take)."""
    if args.from_mongodb_file is not None:
        where = "standard input" if args.from_mongodb_file == "-" else args.from_mongodb_file
        try:
            if args.from_mongodb_file == "-":
                uri = sys.stdin.readline().strip()
            else:
                with open(args.from_mongodb_file, encoding="utf-8") as lines:
                    uri = lines.readline().strip()
        except (OSError, UnicodeDecodeError) as error:
            print(f"deviceflow: cannot read {where}: {type(error).__name__}", file=sys.stderr)
            raise SystemExit(2) from None
        if not uri:
            print(f"deviceflow: {where} holds no MongoDB URI on its first line", file=sys.stderr)
            raise SystemExit(2)
        return uri, args.db or urlsplit(uri).path.lstrip("/")
    if args.from_mongodb == CONFIGURED_MONGODB:
        if not config.mongodb_uri:
            print(
                "deviceflow: --from-mongodb alone reads the configured MongoDB, and none is configured: set "
                "MONGODB_URI (or DB_ADDRESS, DB_USER, DB_PASSWORD, DB_NAME) in .env or the environment, "
                "or use --from-mongodb-file PATH",
                file=sys.stderr,
            )
            raise SystemExit(2)
        return config.mongodb_uri, args.db or config.mongodb_db
    uri = args.from_mongodb
    try:
        password = urlsplit(uri).password
    except ValueError:
        password = None
    if password is not None or "@" in uri:
        # Said before anything is done, and without the URI: the password is in the shell history already.
        print(
            "deviceflow: a MongoDB URI with credentials on the command line shows in ps and stays in the "
            "shell history; nothing was read. Put it on the first line of a file only you can read and use "
            "--from-mongodb-file PATH ('-' reads standard input), or set MONGODB_URI (or DB_ADDRESS, DB_USER, "
            "DB_PASSWORD, DB_NAME) in .env and use --from-mongodb alone; then change that password",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return uri, args.db or urlsplit(uri).path.lstrip("/")


def read_php_source(args, config: configuration.Config):
    """The rows of the PHP cache named on the command line (exit 2 when it cannot be opened, 1 when unreadable)."""
    from deviceflow import ops

    if args.from_csv:
        try:
            zone = ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            print(f"deviceflow: unknown time zone {args.timezone!r}", file=sys.stderr)
            raise SystemExit(2) from None
        try:
            with open(args.from_csv, newline="", encoding="utf-8") as lines:
                return list(ops.rows_from_csv(lines, zone)), args.from_csv
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            print(f"deviceflow: cannot read {args.from_csv}: {type(error).__name__}", file=sys.stderr)
            raise SystemExit(2) from None
    uri, db_name = php_mongodb(args, config)
    shown = configuration.redact_uri(uri)
    if not uri.startswith(("mongodb://", "mongodb+srv://")) or not db_name:
        print(
            "deviceflow: --from-mongodb needs a mongodb:// URI naming the PHP database (or --db NAME)", file=sys.stderr
        )
        raise SystemExit(2)
    import pymongo.errors

    try:
        client = mongo_client(uri)
        try:
            rows = list(ops.rows_from_mongodb(client[db_name][args.collection]))
            return rows, f"{shown} ({db_name}.{args.collection})"
        finally:
            client.close()
    except pymongo.errors.PyMongoError as error:
        print(f"deviceflow: cannot read the PHP server's MongoDB at {shown}: {type(error).__name__}", file=sys.stderr)
        raise SystemExit(1) from None


def mongo_client(uri: str):
    import pymongo

    return pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, socketTimeoutMS=30000, tz_aware=False
    )


@operator_tool
def import_php(args, config, store) -> int:
    from deviceflow import ops
    from deviceflow.flow import DeviceFlow

    rows, source = read_php_source(args, config)
    summary = ops.import_php(DeviceFlow(config, store), rows, dry_run=args.dry_run)
    print(f"import-php{' (dry run: nothing written)' if args.dry_run else ''} from {source}")
    print(f"  refresh tokens read: {summary.read}")
    print(f"  {'would be imported' if args.dry_run else 'imported'}: {summary.imported}")
    print(f"    with their expiry brought back to DURATION ({config.duration}) from now: {summary.capped}")
    print(f"  skipped: {sum(summary.skipped.values())}")
    for reason, count in sorted(summary.skipped.items()):
        print(f"    {reason}: {count}")
    print(f"  other keys not carried over (codes, states, access tokens, rate limits): {summary.other_keys}")
    return 0


@operator_tool
def stats(args, config, store) -> int:
    from deviceflow import ops

    numbers = ops.stats(store, time.time())
    where = config.sqlite_path if config.db_type == "sqlite" else configuration.redact_uri(config.mongodb_uri)
    print(f"store: {config.db_type} {where}")
    print(f"pending device flows: {numbers['pending_flows']}")
    print(
        f"live authorizations: {numbers['authorizations']} ({numbers['imported']} imported from the PHP server, "
        f"{numbers['revoked']} revoked not yet expired)"
    )
    print(f"live tokens: {numbers['refresh_tokens']} refresh, {numbers['access_tokens']} access")
    print(f"usage points: {numbers['usage_points']}")
    for label, name in (("Enedis calls", "enedis_calls"), ("budget waits", "budget_waits")):
        print(f"{label}: {numbers[name + '_hour']} in the last hour, {numbers[name + '_day']} in the last day")
    return 0


@operator_tool
def revoke(args, config, store) -> int:
    from deviceflow import ops
    from deviceflow.flow import DeviceFlow
    from deviceflow.usage_points import is_usage_point

    flow = DeviceFlow(config, store)
    if args.usage_point is not None:
        if not is_usage_point(args.usage_point):
            print("deviceflow: --usage-point must be a 14-digit PRM", file=sys.stderr)
            return 2
        revoked = ops.revoke_usage_point(flow, args.usage_point)
        if not revoked:
            print(f"no live authorization covers {args.usage_point}")
            return 1
        print(f"revoked {len(revoked)} authorization(s) covering {args.usage_point}")
        for points in revoked:
            others = [p for p in points if p != args.usage_point]
            if others:
                print(f"  one also covered {', '.join(others)}: those lose it too")
        return 0
    token = sys.stdin.readline().strip() if args.refresh_token == "-" else args.refresh_token.strip()
    points = ops.revoke_refresh_token(flow, token)
    if points is None:
        print("no live authorization has this refresh token")
        return 1
    print(f"revoked the authorization covering {', '.join(points)}")
    return 0


@operator_tool
def purge(args, config, store) -> int:
    print(f"purged {store.purge()} expired records")
    return 0


COMMANDS = {"serve": serve, "import-php": import_php, "stats": stats, "revoke": revoke, "purge": purge}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
