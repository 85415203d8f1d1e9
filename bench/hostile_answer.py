"""Peak memory and time of one data call when Enedis answers 20 MB, on 127.0.0.1 only.

    .venv/bin/python bench/hostile_answer.py [--megabytes 20]

A throwaway upstream in its own process serves the Enedis client_credentials
token and, to every GET, a load curve of the size asked (v5 shape to the v5
path, 2026 shape to the 2026 path), once with a Content-Length and once
without one (read until the connection closes). The Enedis client of this
checkout then asks it, in `legacy` and in `new` mode, under tracemalloc, and
the script prints a Markdown table: what came back, the peak of Python memory
during the call, and how long it took. Run on demand, never in CI.
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PRM = "99999999999991"
SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

size, port = int(sys.argv[1]), int(sys.argv[2])
V5_POINT = b'{"value": "4078", "date": "2026-09-22 00:30:00", "interval_length": "PT30M", "measure_type": "B"},'
NEW_POINT = b'{"v": "4078", "d": "2026-09-22 00:30:00", "p": "PT30M", "n": "B", "iv": "0", "ec": "0"},'
V5 = (b'{"meter_reading": {"usage_point_id": "99999999999991", "interval_reading": ['
      + (V5_POINT * (size // len(V5_POINT)))[:-1] + b"]}}")
NEW = (b'{"idPrm": "99999999999991", "grandeur": [{"grandeurMetier": "CONS", "grandeurPhysique": "PA", "points": ['
       + (NEW_POINT * (size // len(NEW_POINT)))[:-1] + b"]}]}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # no keep-alive: an answer without length ends with the connection

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(b'{"access_token": "t", "expires_in": 12600}', True)

    def do_GET(self):
        self._send(NEW if "mesure_synchrone" in self.path else V5, "nolength" not in self.path)

    def _send(self, body, with_length):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if with_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client hung up


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(mode: str, base: str, with_length: bool, tmp: Path) -> tuple[str, float, float]:
    from deviceflow import config as configuration
    from deviceflow.enedis import EnedisClient
    from deviceflow.store import SQLiteStore
    from deviceflow.translate import CONSUMPTION_LOAD_CURVE
    from deviceflow.upstream import UpstreamError

    data = base if with_length else f"{base}/nolength"
    config = configuration.load(
        {
            "CLIENT_ID": "bench",
            "CLIENT_SECRET": "bench-secret",
            "ENEDIS_API_MODE": mode,
            "DATA_ENDPOINT": data,
            "TOKEN_ENDPOINT_V3": f"{base}/oauth2/v3/token",
            "SQLITE_PATH": str(tmp / f"{mode}-{with_length}.sqlite3"),
        },
        dotenv_path=None,
    )
    client = EnedisClient(config, SQLiteStore(config.sqlite_path))
    client.access_token()  # the token fetch is not what is measured
    query = {"usage_point_id": PRM, "start": "2026-09-22", "end": "2026-09-29"}
    tracemalloc.start()
    started = time.monotonic()
    try:
        answer = client.fetch_v5(CONSUMPTION_LOAD_CURVE, query)
        outcome = f"{answer.status}, {len(answer.body) / 2**20:.1f} MiB to the device"
    except UpstreamError as error:
        outcome = f"{error.status} {error.error}"
    took = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return outcome, peak / 2**20, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the refusals are the table's to say
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(int(args.megabytes * 2**20)), str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        print(f"| mode | answer of {args.megabytes:g} MiB | result | peak Python memory | time |")
        print("|---|---|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for mode in ("legacy", "new"):
                for with_length in (True, False):
                    outcome, peak, took = measure(mode, base, with_length, Path(tmp))
                    how = "with Content-Length" if with_length else "without length"
                    print(f"| {mode} | {how} | {outcome} | {peak:.1f} MiB | {took:.2f} s |")
    finally:
        server.terminate()
        server.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
