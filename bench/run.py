"""Benchmark deviceflow against a hello-world ceiling, on 127.0.0.1 only.

    .venv/bin/python bench/run.py [--duration 10] [--connections 16] [--threads 2]

Starts what it measures: a hello-world WSGI app on deviceflow's waitress
settings (the ceiling), a simulated Enedis in its own process (as the real one
is another host), and `deviceflow serve` on a temporary SQLite store seeded
through the flow module. Drives each with wrk (the Debian package, installed
when missing; Lua scripts for the POSTs) and prints Markdown tables: req/s,
p50/p99 and ratios to the hello-world measured in the same run (at its start
and at its end, as machines drift), then each target with its figure.

Run on demand, never in CI. Every wrk run is bounded (`--duration` seconds,
`--connections`), every server is stopped on exit, loopback only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"
# The simulated Enedis's knobs need this; the bench hands it to the process it starts for it.
CONTROL_TOKEN = os.environ.get("BENCH_CONTROL_TOKEN") or secrets.token_urlsafe(32)
CONTROL = {"Authorization": f"Bearer {CONTROL_TOKEN}"}
PRM = "99999999999991"
DATA_PATH = "metering_data_dc/v5/daily_consumption"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PENDING_JSON = json.dumps(
    {"error": "authorization_pending", "error_description": "waiting for the user to approve", "interval": 5}
).encode()
# A device polls its code every `interval` seconds until the person consents;
# a pool of codes gets about this many polls each per row, within the
# LIMIT_REQUESTS_PER_MINUTE budget (the Lua script counts any slow_down).
POLLS_PER_CODE = 8
SCALE_FLOWS = 100_000
DATA_CALLS = 30  # waiting on a slow Enedis, in the head-of-line rows
SLOW_ENEDIS = 1.0  # seconds
TOKEN_RACE = 50  # concurrent data calls when no token is cached yet
# Access tokens the data calls take turns with: each is held to DATA_CALLS_PER_MINUTE, as a device is.
DATA_TOKENS = 100
WARMUP = 2  # seconds of wrk before each measured row, not counted
SCALE_ROUNDS = 3  # small and large store, in turns


# --- the servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hello_app(environ, start_response):
    """The ceiling: read the body, answer the pending JSON with the same headers, nothing else."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
            ("Content-Length", str(len(PENDING_JSON))),
        ],
    )
    return [PENDING_JSON]


def serve_role(role: str, port: int) -> None:
    """The processes this script starts of itself: `_hello` and `_enedis`."""
    from deviceflow.cli import serve_wsgi

    if role == "_hello":
        app, threads = hello_app, 32
    else:
        from deviceflow.simulator import Simulator

        # Enough threads that every data call waiting on its delay has one.
        app, threads = (
            Simulator(
                f"http://127.0.0.1:{port}", CLIENT_ID, client_secret=CLIENT_SECRET, control_token=CONTROL_TOKEN
            ).app,
            128,
        )
    serve_wsgi(app, "127.0.0.1", port, threads)


def http(
    method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# The process serving each port, so that a wrk run can tell the CPU time it cost the server.
SERVER_PIDS: dict[int, int] = {}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(argv: list[str], port: int, env: dict, workdir: Path, ready_path: str = "/"):
    """A server process, up when `ready_path` answers, stopped (SIGTERM, then SIGKILL) on exit."""
    log_path = workdir / f"server-{port}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, env={**os.environ, **env}, cwd=workdir, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server on port {port} exited:\n{log_path.read_text()[-2000:]}")
            try:
                http("GET", f"http://127.0.0.1:{port}{ready_path}", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"server on port {port} did not start:\n{log_path.read_text()[-2000:]}") from None
                time.sleep(0.1)
        SERVER_PIDS[port] = process.pid
        yield process
    finally:
        SERVER_PIDS.pop(port, None)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the store, seeded through the flow module


def deviceflow_env(port: int, enedis_port: int, sqlite_path: Path) -> dict:
    enedis = f"http://127.0.0.1:{enedis_port}"
    return {
        "BASE_URL": f"http://127.0.0.1:{port}",
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "AUTHORIZATION_ENDPOINT": f"{enedis}/dataconnect/v1/oauth2/authorize",
        "TOKEN_ENDPOINT": f"{enedis}/v1/oauth2/token",
        "TOKEN_ENDPOINT_V3": f"{enedis}/oauth2/v3/token",
        "DATA_ENDPOINT": enedis,
        "ENEDIS_API_MODE": "legacy",  # the proxy's own overhead, not the v5 <-> 2026 translation
        "ENEDIS_MAX_CALLS_PER_SECOND": "1000",  # the outbound budget is not what is measured
        "ENEDIS_MAX_CALLS_PER_HOUR": "1000000",  # nor Enedis's hourly quota (still counted)
        "DATA_CALLS_PER_MINUTE": "600",  # DATA_TOKENS tokens at 600 a minute: more than the proxy serves
        "SQLITE_PATH": str(sqlite_path),
        "CODE_LIFETIME": "86400",  # every seeded flow stays pending for the whole run
        "THREADS": "32",
        "TRUSTED_PROXIES": "127.0.0.1",  # /device/code comes "through a reverse proxy", one address each
    }


def seed(env: dict, count: int) -> list[tuple[str, str]]:
    """`count` pending flows started through DeviceFlow in one transaction; their (device_code, user_code)."""
    from deviceflow import config as configuration
    from deviceflow.flow import DeviceFlow
    from deviceflow.store import SQLiteStore

    store = SQLiteStore(env["SQLITE_PATH"])
    flow = DeviceFlow(configuration.load(environ=env, dotenv_path=None), store)
    codes = []
    with store.batch():  # one transaction: a commit per flow takes three times as long (8 s for 100,000)
        for _ in range(count):
            started = flow.authorization.issue_codes(CLIENT_ID, user_agent="Bench/1.0.0")
            codes.append((started["device_code"], started["user_code"]))
    # Into the database file, as a running server's hourly purge does: a WAL holding the whole seed would be
    # checkpointed by the server's first write, in the middle of a measured row.
    store.purge()
    store.close()
    return codes


def mint(env: dict, count: int = DATA_TOKENS) -> list[str]:
    """Access tokens for PRM as devices would get them after consent."""
    from deviceflow import config as configuration
    from deviceflow.flow import DeviceFlow
    from deviceflow.store import SQLiteStore

    store = SQLiteStore(env["SQLITE_PATH"])
    try:
        flow = DeviceFlow(configuration.load(environ=env, dotenv_path=None), store)
        return [flow.tokens.mint([PRM], CLIENT_ID)["access_token"] for _ in range(count)]
    finally:
        store.close()


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

    def run(
        self, port: int, lines: list[str], expect: str, duration: int | None = None, connections: int | None = None
    ) -> dict:
        """One bounded wrk run replaying `lines` (see wrk.lua); its figures as a dict."""
        duration = duration or self.duration
        connections = connections or self.connections
        threads = min(self.threads, connections)
        requests = self.workdir / f"requests-{port}-{time.monotonic_ns()}.tsv"
        requests.write_text("\n".join(lines) + "\n")
        argv = [
            self.binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "wrk.lua"),
            f"http://127.0.0.1:{port}",
        ]
        env = {**os.environ, "BENCH_REQUESTS": str(requests), "BENCH_EXPECT": expect, "BENCH_THREADS": str(threads)}
        pid = SERVER_PIDS.get(port)
        cpu_before = cpu_seconds(pid) if pid else None
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
        cpu = cpu_seconds(pid) - cpu_before if pid else None
        requests.unlink()
        for line in out.stdout.splitlines():
            if line.startswith("BENCH "):
                figures = json.loads(line[6:])
                figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
                figures["connections"] = connections
                # The server's CPU time (every thread, system calls included) per answer: beside the time the
                # app's own code takes, it shows what threads cost in handing the GIL to each other.
                figures["cpu_us"] = cpu * 1e6 / figures["requests"] if cpu is not None and figures["requests"] else None
                return figures
        raise SystemExit(f"wrk gave no figures:\n{out.stdout}\n{out.stderr}")

    def measure(self, port: int, lines: list[str], expect: str, connections: int | None = None) -> dict:
        """A warm-up on the first lines, then the measured run on the others."""
        warm = len(lines) // 8  # distinct lines (device codes) are not polled again in the measured run
        self.run(port, lines[:warm] or lines, expect, duration=WARMUP, connections=connections)
        return self.run(port, lines[warm:], expect, connections=connections)


# --- where the time goes (py-spy, on demand)

# The innermost frame of a sample names its layer; the first rule that matches wins.
LAYERS = (
    ("SQLite statements (store.py)", ("deviceflow/store.py",)),
    (
        "HTTP client to Enedis (requests, urllib3, http.client)",
        ("requests/", "urllib3/", "http/client.py", "socket.py", "email/"),
    ),
    ("logging (access log, INFO lines)", ("logging/",)),
    ("JSON", ("json/",)),
    ("bottle", ("bottle.py",)),
    ("waitress (HTTP parsing, dispatch, sockets)", ("waitress/",)),
    ("thread hand-offs (threading.py)", ("threading.py",)),
    ("deviceflow code", ("deviceflow/",)),
)


class Profiler:
    """py-spy attached to the server while a row is measured, sampling the
    thread that holds the GIL: how busy the one interpreter is, and with what."""

    RATE = 100  # samples a second

    def __init__(self, binary: str | None, workdir: Path):
        self.binary, self.workdir, self.profiles = binary, workdir, []

    @contextmanager
    def attach(self, name: str, pid: int, seconds: int):
        if not self.binary:
            yield
            return
        out = self.workdir / f"profile-{len(self.profiles)}.txt"
        spy = subprocess.Popen(
            [
                self.binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--gil",
                "--rate",
                str(self.RATE),
                "--nonblocking",
                "--format",
                "raw",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.wait(seconds + 30)
        if out.exists():
            shares, samples = layers(out.read_text())
            self.profiles.append((name, shares, samples / (self.RATE * seconds)))

    def markdown(self) -> str:
        lines = []
        for name, shares, held in self.profiles:
            lines += [
                "",
                f'"{name}": a thread of the server held the GIL {held:.0%} of the time, in '
                "(py-spy --gil, innermost frame):",
                "",
                "| layer | share |",
                "|---|---:|",
            ]
            lines += [f"| {layer} | {share:.0%} |" for layer, share in shares]
        return "\n".join(lines)


def layers(raw: str) -> tuple[list[tuple[str, float]], int]:
    """Shares of the samples by layer, and how many samples there were."""
    counts: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, samples = line.rpartition(" ")
        innermost = stack.rsplit(";", 1)[-1]
        layer = next((name for name, marks in LAYERS if any(mark in innermost for mark in marks)), "other")
        counts[layer] = counts.get(layer, 0) + int(samples)
    total = sum(counts.values())
    return sorted(((layer, n / (total or 1)) for layer, n in counts.items()), key=lambda item: -item[1]), total


def in_turns(wrk: Wrk, servers: list[tuple[int, list]], rounds: int) -> list[dict]:
    """Polls of each (port, codes) in turn, `rounds` times, each run on its own share
    of the codes; per server the median of each figure."""
    runs: list[list[dict]] = [[] for _ in servers]
    for port, codes in servers:
        wrk.run(port, poll_lines(codes[: len(codes) // 8]), "authorization_pending", duration=WARMUP)
    for round_ in range(rounds):
        for i, (port, codes) in enumerate(servers):
            share = codes[len(codes) // 8 :]
            part = share[round_ * len(share) // rounds : (round_ + 1) * len(share) // rounds]
            runs[i].append(wrk.run(port, poll_lines(part), "authorization_pending", duration=max(1, wrk.duration // 2)))
    return [
        {
            key: (
                statistics.median(run[key] for run in server_runs)
                if key not in ("socket_errors", "unexpected")
                else sum(run[key] for run in server_runs)
            )
            for key in server_runs[0]
        }
        for server_runs in runs
    ]


def poll_lines(codes) -> list[str]:
    return [
        f"POST\t/device/token\tgrant_type={DEVICE_GRANT}&client_id={CLIENT_ID}&device_code={device}"
        for device, _ in codes
    ]


def client_address(i: int) -> str:
    """The i-th client address of RFC 2544's benchmarking range."""
    return f"198.18.{i // 250 % 250}.{i % 250 + 1}"


def code_lines(count: int) -> list[str]:
    # One client address per request (RFC 2544's benchmarking range), as behind a reverse proxy:
    # a per-address limit on /device/code must not be what is measured.
    return [f"POST\t/device/code\tclient_id={CLIENT_ID}\tX-Forwarded-For: {client_address(i)}" for i in range(count)]


def page_lines(codes) -> list[str]:
    # One client address per request, as for /device/code: the page checks one code at a time per network,
    # and a person's network is not what is measured.
    return [f"GET\t/device?code={user}\t\tX-Forwarded-For: {client_address(i)}" for i, (_, user) in enumerate(codes)]


def data_query() -> str:
    today = dt.datetime.now(dt.UTC).date()
    return urllib.parse.urlencode(
        {
            "usage_point_id": PRM,
            "start": (today - dt.timedelta(days=8)).isoformat(),
            "end": (today - dt.timedelta(days=1)).isoformat(),
        }
    )


def data_lines(path: str, tokens: list[str]) -> list[str]:
    return [f"GET\t{path}?{data_query()}\t\tAuthorization: Bearer {token}" for token in tokens]


# --- slow data calls, as devices make them


@contextmanager
def data_callers(url: str, tokens: list[str], count: int):
    """`count` devices asking /data/proxy in a loop, each with its token; after
    a 429 a device waits a second, as DomoticzLinky waits before it asks again."""
    stop, answers, lock = threading.Event(), {}, threading.Lock()

    def device(token):
        while not stop.is_set():
            try:
                status, _ = http("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            except OSError as error:
                status = type(error).__name__
            with lock:
                answers[status] = answers.get(status, 0) + 1
            if status == 429:
                stop.wait(1)

    threads = [threading.Thread(target=device, args=(tokens[n % len(tokens)],), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(SLOW_ENEDIS + 0.5)  # every device is now waiting on Enedis, or was just told to wait
    try:
        yield answers
    finally:
        stop.set()
        for thread in threads:
            thread.join(SLOW_ENEDIS + 65)


# --- the report


def ms(us: float) -> str:
    return f"{us / 1000:.1f}"


class Table:
    def __init__(self):
        self.rows: list[tuple] = []
        self.targets: list[tuple] = []
        self.ceiling = None

    def add(self, name: str, figures: dict, note: str = "") -> None:
        odd = [
            f"{figures[k]} {label}"
            for k, label in (("socket_errors", "socket errors"), ("unexpected", "unexpected answers"))
            if figures[k]
        ]
        ratio = f"{figures['rps'] / self.ceiling:.2f}" if self.ceiling and figures["connections"] > 1 else ""
        self.rows.append(
            (
                name,
                str(figures["connections"]),
                f"{figures['rps']:,.0f}",
                ratio,
                ms(figures["p50_us"]),
                ms(figures["p99_us"]),
                f"{figures['cpu_us']:,.0f}" if figures.get("cpu_us") is not None else "",
                "; ".join(filter(None, [note, *odd])),
            )
        )

    def target(self, name: str, measured: str, met: bool | None) -> None:
        self.targets.append((name, measured, "n/a" if met is None else "yes" if met else "**no**"))

    def markdown(self) -> str:
        lines = [
            "| measurement | conns | req/s | × hello-world | p50 ms | p99 ms | server CPU µs/req | notes |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.targets]
        return "\n".join(lines)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the run


def measure(args, wrk: Wrk, workdir: Path, profiler: Profiler) -> Table:
    python, table = sys.executable, Table()
    hello_port, enedis_port, port = free_port(), free_port(), free_port()
    store_path = workdir / "deviceflow.sqlite3"
    env = deviceflow_env(port, enedis_port, store_path)
    serve = [python, "-m", "deviceflow", "serve", "--host", "127.0.0.1", "--port", str(port)]
    enedis = f"http://127.0.0.1:{enedis_port}"

    with (
        server([python, __file__, "_hello", str(hello_port)], hello_port, {}, workdir),
        server(
            [python, __file__, "_enedis", str(enedis_port)],
            enedis_port,
            {"BENCH_CONTROL_TOKEN": CONTROL_TOKEN},
            workdir,
            "/_stats",
        ),
    ):
        say("hello-world ceiling")
        hello_lines = poll_lines([("x" * 43, "")] * 100)
        hello_first = wrk.measure(hello_port, hello_lines, "authorization_pending")
        table.ceiling = hello_first["rps"]

        # Enough codes that each gets about POLLS_PER_CODE polls in a row, even at the ceiling's pace.
        pool = max(1000, int(hello_first["rps"] * (args.duration + WARMUP) / POLLS_PER_CODE))
        say(f"seeding {5 * pool} pending flows")
        polls_codes, alone_codes, page_codes, loaded_codes, single_codes = (seed(env, pool) for _ in range(5))
        tokens = mint(env)
        proxy_url = f"/data/proxy/{DATA_PATH}"

        with server(serve, port, env, workdir, "/healthz") as deviceflow:
            say(f"{TOKEN_RACE} data calls at once, no Enedis token cached yet")
            http("POST", f"{enedis}/_control", {"reset": True}, CONTROL)
            race = wrk.run(port, data_lines(proxy_url, tokens), "", duration=3, connections=TOKEN_RACE)
            token_calls = json.loads(http("GET", f"{enedis}/_stats")[1])["calls"].get("token_v3", 0)

            say("POST /device/token (pending)")
            with profiler.attach("POST /device/token, pending", deviceflow.pid, WARMUP + args.duration):
                polls = wrk.measure(port, poll_lines(polls_codes), "authorization_pending")
            rss = rss_mb(deviceflow.pid)
            alone = wrk.measure(port, poll_lines(alone_codes), "authorization_pending", connections=1)
            say("POST /device/code")
            codes = wrk.measure(port, code_lines(50_000), "device_code")
            say("GET /device?code=...")
            page = wrk.measure(port, page_lines(page_codes), "csrf")

            say("GET /data/proxy/... and the same call to the simulated Enedis")
            enedis_token = enedis_access_token(enedis)
            direct = wrk.measure(
                enedis_port, data_lines(f"/{DATA_PATH}", [enedis_token]), "meter_reading", connections=1
            )
            with profiler.attach("GET /data/proxy/..., one connection", deviceflow.pid, WARMUP + args.duration):
                proxied = wrk.measure(port, data_lines(proxy_url, tokens), "meter_reading", connections=1)

            say(f"polls while {DATA_CALLS} data calls wait on Enedis answering after {SLOW_ENEDIS:g} s")
            http("POST", f"{enedis}/_control", {"delay": SLOW_ENEDIS}, CONTROL)
            with data_callers(f"http://127.0.0.1:{port}{proxy_url}?{data_query()}", tokens, DATA_CALLS) as answers:
                loaded = wrk.measure(port, poll_lines(loaded_codes), "authorization_pending")
                single = wrk.measure(port, poll_lines(single_codes), "authorization_pending", connections=1)
            http("POST", f"{enedis}/_control", {"delay": 0}, CONTROL)
            data_answers = ", ".join(f"{count} × {status}" for status, count in sorted(answers.items(), key=str))

        say("hello-world ceiling again")
        hello_last = wrk.measure(hello_port, hello_lines, "authorization_pending")
        table.ceiling = statistics.mean([hello_first["rps"], hello_last["rps"]])

        # Scale: a store of one pool of flows and one of SCALE_FLOWS, each on its own
        # server, measured in turns so that the machine's drift falls on both alike.
        say(f"seeding a store of {pool} and one of {SCALE_FLOWS} pending flows")
        stores = []
        for name, count in (("small", pool), ("large", SCALE_FLOWS)):
            store_port = free_port()
            store_env = deviceflow_env(store_port, enedis_port, workdir / f"{name}.sqlite3")
            stores.append((store_port, store_env, seed(store_env, count)[:pool]))
        with (
            server([*serve[:-1], str(stores[0][0])], stores[0][0], stores[0][1], workdir, "/healthz") as small,
            server([*serve[:-1], str(stores[1][0])], stores[1][0], stores[1][1], workdir, "/healthz") as large,
        ):
            say("POST /device/token (pending), small and large store in turns")
            scale_small, scale = in_turns(wrk, [(store_port, codes) for store_port, _, codes in stores], SCALE_ROUNDS)
            rss_small, rss_large = rss_mb(small.pid), rss_mb(large.pid)

    table.add("hello-world WSGI on the same waitress settings, start of run", hello_first)
    table.add("hello-world WSGI, end of run", hello_last, "the ratios use the mean of both")
    table.add("POST /device/token, pending", polls, f"{pool} device codes, RSS {rss:.0f} MB")
    table.add("the same, one poller", alone)
    table.add("POST /device/code", codes, "one client address per request")
    table.add("GET /device?code=... (confirmation page)", page)
    table.add("GET simulated Enedis directly (daily_consumption, 7 days)", direct)
    table.add("GET /data/proxy/... to the same simulator", proxied, "ENEDIS_API_MODE=legacy")
    table.add(
        f"POST /device/token while {DATA_CALLS} data calls wait {SLOW_ENEDIS:g} s on Enedis",
        loaded,
        f"data calls answered meanwhile: {data_answers}",
    )
    table.add("the same, one poller", single)
    table.add(
        f"POST /device/token, pending, store of {pool:,} flows",
        scale_small,
        f"RSS {rss_small:.0f} MB; median of {SCALE_ROUNDS} runs taken in turns with the next row",
    )
    table.add(f"POST /device/token, pending, store of {SCALE_FLOWS:,} flows", scale, f"RSS {rss_large:.0f} MB")
    table.add(
        f"GET /data/proxy/..., {TOKEN_RACE} at once, no token cached",
        race,
        f"{token_calls} client_credentials call(s) to Enedis; {race['http_errors']} answered 429 "
        "(data calls may hold 3/4 of THREADS)",
    )

    ratio = polls["rps"] / table.ceiling
    table.target(
        "pending polls ≥ 0.6 × hello-world req/s",
        f"{ratio:.2f} × ({polls['rps']:,.0f} / {table.ceiling:,.0f} req/s)",
        ratio >= 0.6,
    )
    for name, row in (("POST /device/code", codes), ("the confirmation page", page)):
        row_ratio = row["rps"] / table.ceiling
        table.target(
            f"{name} ≥ 0.4 × hello-world req/s",
            f"{row_ratio:.2f} × ({row['rps']:,.0f} / {table.ceiling:,.0f} req/s)",
            row_ratio >= 0.4,
        )
    hello_p99 = max(hello_first["p99_us"], hello_last["p99_us"])
    tail = polls["p99_us"] / hello_p99
    table.target(
        f"poll p99 at {polls['connections']} connections ≤ 2 × the hello-world's",
        f"{tail:.2f} × ({ms(polls['p99_us'])} / {ms(hello_p99)} ms, the slower of its two rows)",
        tail <= 2,
    )
    overhead = (proxied["p50_us"] - direct["p50_us"]) / 1000
    table.target(
        "proxy overhead on /data/proxy ≤ 2 ms at p50",
        f"{overhead:.1f} ms ({ms(proxied['p50_us'])} - {ms(direct['p50_us'])} ms)",
        overhead <= 2,
    )
    table.target(
        f"{DATA_CALLS} data calls waiting on a 1 s Enedis: poll p99 < 50 ms",
        f"{ms(loaded['p99_us'])} ms at {loaded['connections']} connections (without the data calls: "
        f"{ms(polls['p99_us'])} ms); one poller: {ms(single['p99_us'])} ms ({ms(alone['p99_us'])} ms)",
        loaded["p99_us"] < 50_000,
    )
    table.target(
        f"one client_credentials call per token lifetime under {TOKEN_RACE} concurrent calls",
        f"{token_calls}",
        token_calls == 1,
    )
    table.target("100 000 pending flows: RSS < 150 MB", f"{rss_large:.0f} MB", rss_large < 150)
    growth = scale["p99_us"] / scale_small["p99_us"]
    table.target(
        f"100 000 pending flows: poll p99 ≤ 1.5 × a store of {pool:,}",
        f"{growth:.2f} × ({ms(scale['p99_us'])} / {ms(scale_small['p99_us'])} ms)",
        growth <= 1.5,
    )
    return table


def enedis_access_token(enedis: str) -> str:
    """The simulator's client_credentials token, for the direct calls."""
    body = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    ).encode()
    request = urllib.request.Request(
        f"{enedis}/oauth2/v3/token",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["access_token"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured row (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs, store)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="attach py-spy (pip install py-spy) to the server during the poll and data-proxy rows",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 60 or not 1 <= args.connections <= 256 or not 1 <= args.threads <= 16:
        parser.error("keep runs bounded: --duration 1..60, --connections 1..256, --threads 1..16")

    binary = ensure_wrk()
    spy = None
    if args.profile:
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if not spy:
            parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="deviceflow-bench-"))
    profiler = Profiler(spy, workdir)
    started, load = time.monotonic(), os.getloadavg()[0]
    try:
        table = measure(args, Wrk(binary, workdir, args.duration, args.connections, args.threads), workdir, profiler)
    finally:
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"`bench/run.py{' --profile' if args.profile else ''}`: wrk -t{args.threads} -c{args.connections} "
        f"-d{args.duration}s per row (data overhead rows: -c1), {os.cpu_count()} CPUs, load average {load:.1f} "
        f"before and {os.getloadavg()[0]:.1f} after, {time.monotonic() - started:.0f} s in all"
        f"{'; the profiled rows are slowed by the sampling' if args.profile else ''}\n"
    )
    print(table.markdown())
    print(profiler.markdown())
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("_hello", "_enedis"):
        serve_role(sys.argv[1], int(sys.argv[2]))
    else:
        sys.exit(main())
