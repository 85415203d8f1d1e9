"""Head-of-line benchmark: do slow data calls stall /device/token polls?

Starts `deviceflow serve --demo` on 127.0.0.1 (its own SQLite file in a
temporary directory), makes the simulated Enedis answer data calls after
`--delay` seconds, keeps `--data` calls to /data/proxy in flight, and meanwhile
sends `--polls` polls of /device/token one after the other. Prints the poll
latencies (p50, p99, max), the same without data load for comparison, and what
the data calls got.

    .venv/bin/python bench/head_of_line.py [--threads 32] [--rate 5] [--data 30] [--polls 200] [--delay 1]

Run on demand; not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

from deviceflow import config as configuration
from deviceflow.flow import DEVICE_CODE_GRANT, DeviceFlow
from deviceflow.store import SQLiteStore

CLIENT = configuration.DEMO_CLIENT_ID
PRM = "99999999999991"
LOAD_CURVE = "metering_data_clc/v5/consumption_load_curve"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(workdir: Path, port: int, threads: int, rate: float) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in configuration.KNOWN_NAMES}
    env.update(SQLITE_PATH=str(workdir / "store.sqlite3"), BASE_URL=f"http://127.0.0.1:{port}",
               THREADS=str(threads), ENEDIS_MAX_CALLS_PER_SECOND=str(rate), LOG_LEVEL="WARNING")
    process = subprocess.Popen([sys.executable, "-m", "deviceflow", "serve", "--demo", "--host", "127.0.0.1",
                                "--port", str(port)], cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                               stderr=open(workdir / "server.log", "wb"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return process
        except requests.RequestException:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"server did not start:\n{(workdir / 'server.log').read_text()[-2000:]}")


def device_access_token(workdir: Path, port: int) -> str:
    """A token as the flow would deliver it, minted straight into the server's store
    (SQLite in WAL mode is shared safely between processes)."""
    config = configuration.load({"CLIENT_ID": CLIENT, "SQLITE_PATH": str(workdir / "store.sqlite3")},
                                dotenv_path=None, demo=True, port=port)
    store = SQLiteStore(config.sqlite_path)
    try:
        return DeviceFlow(config, store).mint([PRM], CLIENT)["access_token"]
    finally:
        store.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def poll_latencies(base: str, polls: int) -> tuple[list[float], Counter]:
    """`polls` polls spread over enough pending device codes that none hits slow_down."""
    session = requests.Session()
    codes = [session.post(f"{base}/device/code", data={"client_id": CLIENT}, timeout=30).json()["device_code"]
             for _ in range(max(1, polls // 10))]
    latencies, answers = [], Counter()
    for i in range(polls):
        started = time.perf_counter()
        answer = session.post(f"{base}/device/token", timeout=60,
                              data={"grant_type": DEVICE_CODE_GRANT, "client_id": CLIENT,
                                    "device_code": codes[i % len(codes)]})
        latencies.append(time.perf_counter() - started)
        answers[answer.json().get("error", answer.status_code)] += 1
    return latencies, answers


def report(name: str, latencies: list[float], answers: Counter) -> None:
    ms = [1000 * v for v in latencies]
    print(f"{name}: {len(ms)} polls  p50 {percentile(ms, 0.50):.1f} ms  p99 {percentile(ms, 0.99):.1f} ms  "
          f"max {max(ms):.1f} ms  answers {dict(answers)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=32, help="THREADS of the server (default 32)")
    parser.add_argument("--rate", type=float, default=5, help="ENEDIS_MAX_CALLS_PER_SECOND (default 5)")
    parser.add_argument("--data", type=int, default=30, help="data calls kept in flight (default 30)")
    parser.add_argument("--polls", type=int, default=200, help="polls of /device/token (default 200)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the simulator takes per data call")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="deviceflow-bench-") as tmp:
        workdir, port = Path(tmp), free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(workdir, port, args.threads, args.rate)
        try:
            token = device_access_token(workdir, port)
            print(f"server: THREADS={args.threads} ENEDIS_MAX_CALLS_PER_SECOND={args.rate:g}; "
                  f"simulator delay {args.delay:g} s; {args.data} data calls in flight")
            report("idle  ", *poll_latencies(base, args.polls))

            requests.post(f"{base}/enedis/_control", json={"delay": args.delay}, timeout=10).raise_for_status()
            today = dt.datetime.now(ZoneInfo("Europe/Paris")).date()
            params = {"usage_point_id": PRM, "start": (today - dt.timedelta(days=7)).isoformat(),
                      "end": today.isoformat()}
            done, data_answers, data_latencies, lock = threading.Event(), Counter(), [], threading.Lock()

            def data_caller():
                session = requests.Session()
                while not done.is_set():
                    started = time.perf_counter()
                    try:
                        status = session.get(f"{base}/data/proxy/{LOAD_CURVE}", params=params, timeout=120,
                                             headers={"Authorization": f"Bearer {token}"}).status_code
                    except requests.RequestException as exc:
                        status = type(exc).__name__
                    with lock:
                        data_answers[status] += 1
                        data_latencies.append(time.perf_counter() - started)
                    if status == 429:
                        time.sleep(1)  # a device retries later; this one soon, to keep the pressure on

            callers = [threading.Thread(target=data_caller, daemon=True) for _ in range(args.data)]
            for caller in callers:
                caller.start()
            time.sleep(args.delay + 0.5)  # every caller is now waiting on Enedis or on the budget
            started = time.monotonic()
            latencies, answers = poll_latencies(base, args.polls)
            elapsed = time.monotonic() - started
            done.set()
            for caller in callers:
                caller.join(150)
            report("loaded", latencies, answers)
            ms = sorted(1000 * v for v in data_latencies)
            print(f"data calls, from the callers' start to their last answer (polls took {elapsed:.1f} s): "
                  f"{len(ms)} answered, "
                  f"{dict(data_answers)}, latency p50 {percentile(ms, 0.5):.0f} ms  max {ms[-1]:.0f} ms")
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
