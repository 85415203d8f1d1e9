"""Command line: `deviceflow serve [--host] [--port] [--demo]`."""

from __future__ import annotations

import argparse
import logging
import sys

from deviceflow import __version__, config as configuration

log = logging.getLogger("deviceflow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deviceflow", description="OAuth 2.0 Device Flow proxy for Enedis")
    parser.add_argument("--version", action="version", version=f"deviceflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the proxy with waitress")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument("--demo", action="store_true",
                       help="mount a simulated Enedis on the same port and point every endpoint at it")
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_config(args) -> configuration.Config:
    """The configuration, or one clear line and exit 2."""
    try:
        return configuration.load(demo=getattr(args, "demo", False), port=getattr(args, "port", None))
    except configuration.ConfigError as error:
        print(f"deviceflow: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def build_app(config: configuration.Config):
    """The WSGI app with its store, upstream client and, in demo mode, the simulator."""
    from deviceflow.store import open_store
    from deviceflow.web import make_app

    store = open_store(config)
    simulator = None
    if config.demo:
        from deviceflow.simulator import Simulator

        # Real Enedis sends the person back to the URL registered on DataHub: the simulator plays that part.
        simulator = Simulator(f"{config.base_url}{configuration.DEMO_PREFIX}", client_id=config.client_id,
                              redirect_uri=config.redirect_uri)
    return make_app(config, store, upstream=None, simulator=simulator)


def serve(args) -> int:
    import waitress

    setup_logging("INFO")
    config = load_config(args)
    logging.getLogger().setLevel(config.log_level)
    app = build_app(config)
    log.info("deviceflow %s on http://%s:%d (public URL %s, store %s%s)", __version__, args.host, args.port,
             config.base_url, config.db_type, ", DEMO: simulated Enedis" if config.demo else "")
    # Proxy headers are checked by our own middleware against TRUSTED_PROXIES,
    # so waitress must leave them in place.
    waitress.serve(app, host=args.host, port=args.port, threads=config.threads,
                   clear_untrusted_proxy_headers=False, ident="deviceflow", channel_timeout=60)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2
