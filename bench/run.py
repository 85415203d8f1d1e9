"""Benchmark deviceflow against a hello-world ceiling, on 127.0.0.1 only.

    .venv/bin/python bench/run.py [--duration 10] [--connections 16] [--threads 2]

Starts what it measures (a hello-world WSGI app on deviceflow's waitress
settings, deviceflow itself on a temporary SQLite store, a simulated Enedis in
its own process), drives each with wrk (installed with apt-get when missing)
and prints a Markdown table of figures and ratios measured in the same run:
machines drift, so only ratios to the hello-world of the same run compare
across machines. Run on demand, never in CI; every wrk run is bounded in time
and connections.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

CLIENT_ID = "bench-client"
# The polling budget is per device code: each wrk thread walks this many codes
# round-robin, so a code is polled a few times per minute at most, never
# `LIMIT_REQUESTS_PER_MINUTE` times (the Lua script counts any slow_down).
POLL_CODES = 6000
SCALE_FLOWS = 100_000
PENDING_JSON = json.dumps({"error": "authorization_pending", "error_description": "waiting for the user to approve",
                           "interval": 5}).encode()
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


# --- the servers

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hello_app(environ, start_response):
    """The ceiling: read the body, answer the pending JSON with the same headers, nothing else."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("400 Bad Request", [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                                       ("Pragma", "no-cache"), ("Content-Length", str(len(PENDING_JSON)))])
    return [PENDING_JSON]


def serve_hello(port: int, threads: int) -> None:
    import waitress

    from deviceflow.cli import WAITRESS_OPTIONS

    waitress.serve(hello_app, host="127.0.0.1", port=port, threads=threads, **WAITRESS_OPTIONS)


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextmanager
def server(argv: list[str], port: int, env: dict, cwd: str, ready_path: str = "/"):
    """A server process, up when `ready_path` answers, stopped (SIGTERM, then SIGKILL) on exit."""
    log = open(Path(cwd) / f"server-{port}.log", "wb")
    process = subprocess.Popen(argv, env={**os.environ, **env}, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server on port {port} exited: see {log.name}")
            try:
                get(f"http://127.0.0.1:{port}{ready_path}", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"server on port {port} did not start: see {log.name}")
                time.sleep(0.1)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the store, seeded through the flow module

def deviceflow_env(port: int, sqlite_path: str) -> dict:
    return {
        "BASE_URL": f"http://127.0.0.1:{port}",
        "CLIENT_ID": CLIENT_ID,
        "SQLITE_PATH": sqlite_path,
        "CODE_LIFETIME": "86400",  # every seeded flow stays pending for the whole run
        "THREADS": "32",
        "TRUSTED_PROXIES": "127.0.0.1",  # /device/code rows come "through a reverse proxy", one address each
        "LOG_LEVEL": "WARNING",
    }


def seed(env: dict, count: int) -> list[tuple[str, str]]:
    """`count` pending flows started through DeviceFlow, in one transaction; their (device_code, user_code)."""
    from deviceflow import config as configuration
    from deviceflow.flow import DeviceFlow
    from deviceflow.store import SQLiteStore

    config = configuration.load(environ=env, dotenv_path=None)
    store = SQLiteStore(config.sqlite_path)
    flow = DeviceFlow(config, store)
    conn = store._conn()  # one transaction for all: 100 000 commits would take minutes
    conn.execute("BEGIN")
    codes = []
    for _ in range(count):
        started = flow.start(CLIENT_ID, user_agent="Bench/1.0.0")
        codes.append((started["device_code"], started["user_code"]))
    conn.execute("COMMIT")
    store.close()
    return codes


# --- wrk

def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing the Debian package", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


class Wrk:
    def __init__(self, binary: str, workdir: Path, duration: int, connections: int, threads: int):
        self.binary, self.workdir = binary, workdir
        self.duration, self.connections, self.threads = duration, connections, threads

    def run(self, port: int, lines: list[str], expect: str, duration: int | None = None,
            connections: int | None = None, threads: int | None = None) -> dict:
        """One bounded wrk run replaying `lines` (see wrk.lua); its figures as a dict."""
        duration = duration or self.duration
        connections = connections or self.connections
        threads = min(threads or self.threads, connections)
        requests = self.workdir / "requests.tsv"
        requests.write_text("\n".join(lines) + "\n")
        argv = [self.binary, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
                "-s", str(HERE / "wrk.lua"), f"http://127.0.0.1:{port}"]
        env = {**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_EXPECT": expect,
               "BENCH_THREADS": str(threads)}
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
        for line in out.stdout.splitlines():
            if line.startswith("BENCH "):
                figures = json.loads(line[6:])
                figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
                return figures
        raise SystemExit(f"wrk gave no figures:\n{out.stdout}\n{out.stderr}")


def poll_lines(codes) -> list[str]:
    return [f"POST\t/device/token\tgrant_type={DEVICE_GRANT}&client_id={CLIENT_ID}&device_code={device}"
            for device, _ in codes]


def code_lines(count: int) -> list[str]:
    # One client address per request (RFC 2544's benchmarking range), as behind a reverse proxy:
    # a per-address limit on /device/code must not be what is measured.
    return [f"POST\t/device/code\tclient_id={CLIENT_ID}\tX-Forwarded-For: 198.18.{i // 250}.{i % 250 + 1}"
            for i in range(count)]


def page_lines(codes) -> list[str]:
    return [f"GET\t/device?code={user}\t" for _, user in codes]


# --- the run

class Table:
    def __init__(self, ceiling: float):
        self.ceiling = ceiling
        self.rows: list[tuple] = []
        self.targets: list[tuple] = []

    def add(self, name: str, figures: dict, note: str = "") -> None:
        if figures["socket_errors"] or figures["unexpected"]:
            note = f"{note}; {figures['socket_errors']} socket errors, {figures['unexpected']} unexpected answers"
        self.rows.append((name, f"{figures['rps']:,.0f}", f"{figures['rps'] / self.ceiling:.2f}",
                          f"{figures['p50_us'] / 1000:.1f}", f"{figures['p99_us'] / 1000:.1f}", note.strip("; ")))

    def target(self, name: str, measured: str, met: bool) -> None:
        self.targets.append((name, measured, "yes" if met else "**no**"))

    def markdown(self) -> str:
        lines = ["| measurement | req/s | × hello-world | p50 ms | p99 ms | notes |",
                 "|---|---:|---:|---:|---:|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.targets]
        return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured row (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, store)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 60 or not 1 <= args.connections <= 256:
        parser.error("keep runs bounded: --duration 1..60, --connections 1..256")

    wrk_binary = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="deviceflow-bench-"))
    wrk = Wrk(wrk_binary, workdir, args.duration, args.connections, args.threads)
    python = sys.executable
    try:
        return measure(args, wrk, workdir, python)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def measure(args, wrk: Wrk, workdir: Path, python: str) -> int:
    started = time.monotonic()
    warmup = 2

    say("hello-world ceiling")
    port = free_port()
    with server([python, __file__, "_hello", str(port), "32"], port, {}, str(workdir)):
        hello_lines = poll_lines([("x" * 43, "")] * 100)
        wrk.run(port, hello_lines, "authorization_pending", duration=warmup)
        hello = wrk.run(port, hello_lines, "authorization_pending")
    table = Table(hello["rps"])
    table.add("hello-world WSGI, waitress 32 threads (ceiling)", hello)

    port = free_port()
    store_path = str(workdir / "deviceflow.sqlite3")
    env = deviceflow_env(port, store_path)
    say(f"seeding {2 * POLL_CODES} pending flows")
    poll_codes = seed(env, POLL_CODES)
    page_codes = seed(env, POLL_CODES)
    serve = [python, "-m", "deviceflow", "serve", "--host", "127.0.0.1", "--port", str(port)]

    with server(serve, port, env, str(workdir), "/healthz") as process:
        say("POST /device/token (pending)")
        wrk.run(port, poll_lines(poll_codes[:500]), "authorization_pending", duration=warmup)
        polls = wrk.run(port, poll_lines(poll_codes[500:]), "authorization_pending")
        rss_small = rss_mb(process.pid)
        table.add("POST /device/token, pending", polls, f"{POLL_CODES - 500} device codes")

        say("POST /device/code")
        codes = wrk.run(port, code_lines(30_000), "device_code")
        table.add("POST /device/code", codes, "one client address per request")

        say("GET /device?code=...")
        page = wrk.run(port, page_lines(page_codes), "csrf")
        table.add("GET /device?code=... (confirmation page)", page)

    say(f"seeding {SCALE_FLOWS} more pending flows")
    scale_codes = seed(env, SCALE_FLOWS)
    with server(serve, port, env, str(workdir), "/healthz") as process:
        say("POST /device/token (pending), large store")
        wrk.run(port, poll_lines(scale_codes[:500]), "authorization_pending", duration=warmup)
        scale = wrk.run(port, poll_lines(scale_codes[500:POLL_CODES]), "authorization_pending")
        rss_large = rss_mb(process.pid)
        table.add(f"POST /device/token, pending, {SCALE_FLOWS:,} more flows in the store", scale,
                  f"RSS {rss_large:.0f} MB (small store: {rss_small:.0f} MB)")

    ratio = polls["rps"] / hello["rps"]
    table.target("pending polls ≥ 0.6 × hello-world req/s", f"{ratio:.2f} × ({polls['rps']:,.0f} / {hello['rps']:,.0f})",
                 ratio >= 0.6)
    table.target("100 000 pending flows: RSS < 150 MB", f"{rss_large:.0f} MB", rss_large < 150)
    growth = scale["p99_us"] / polls["p99_us"]
    table.target("100 000 pending flows: poll p99 ≤ 1.5 × small store",
                 f"{growth:.2f} × ({scale['p99_us'] / 1000:.1f} / {polls['p99_us'] / 1000:.1f} ms)", growth <= 1.5)

    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {os.cpu_count()} CPUs, "
          f"{time.monotonic() - started:.0f} s in all\n")
    print(table.markdown())
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_hello":
        serve_hello(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(main())
