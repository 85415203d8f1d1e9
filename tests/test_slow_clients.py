"""Slow clients against a live server: connections that trickle their headers
(slowloris) must neither lock other clients out nor hold their slot for long."""

import socket
import threading
import time

import requests
from helpers import DEVICE_GRANT, stopped_log
from test_e2e import device_post

SLOW_CLIENTS = 200
TRICKLE_EVERY = 1.0  # seconds between two header lines: never silent long enough for channel_timeout
REQUEST_TIMEOUT = 3  # the server's setting in this test (seconds)


class Trickle:
    """SLOW_CLIENTS connections each sending a request's header lines one at a time, never ending them."""

    def __init__(self, port, wrap=lambda sock: sock):
        self.sockets = []
        for _ in range(SLOW_CLIENTS):
            sock = wrap(socket.create_connection(("127.0.0.1", port), timeout=5))
            sock.sendall(b"POST /device/token HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            self.sockets.append(sock)
        self.stop = threading.Event()
        self.closed_by_server = set()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(TRICKLE_EVERY):
            for sock in self.sockets:
                if sock in self.closed_by_server:
                    continue
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    self.closed_by_server.add(sock)

    def closed_within(self, seconds) -> int:
        """How many connections the server has closed, waiting up to `seconds` for all of them."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(self.closed_by_server) < SLOW_CLIENTS:
            time.sleep(0.2)
        return len(self.closed_by_server)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()


def timed(call):
    started = time.monotonic()
    try:
        answer = call()
    except requests.RequestException as error:
        return error, time.monotonic() - started
    return answer, time.monotonic() - started


def test_slow_clients_do_not_lock_others_out_and_lose_their_slot(live_server):
    base = live_server(REQUEST_TIMEOUT=str(REQUEST_TIMEOUT))
    port = int(base.rsplit(":", 1)[1])
    code = device_post(base, "/device/code").json()
    trickle = Trickle(port)
    try:
        # Every slow connection is in, and trickling.
        for _ in range(2):
            healthz, took = timed(lambda: requests.get(f"{base}/healthz", timeout=1))
            assert isinstance(healthz, requests.Response) and healthz.status_code == 200, (healthz, took)
            assert took < 1
            poll, took = timed(
                lambda: requests.post(
                    f"{base}/device/token",
                    timeout=1,
                    data={
                        "client_id": "deviceflow-demo",
                        "grant_type": DEVICE_GRANT,
                        "device_code": code["device_code"],
                    },
                )
            )
            assert isinstance(poll, requests.Response) and poll.json()["error"] == "authorization_pending", poll
            assert took < 1
            time.sleep(TRICKLE_EVERY)
        # Past REQUEST_TIMEOUT (and the once-a-second check), the server has closed them all.
        assert trickle.closed_within(REQUEST_TIMEOUT + 5) == SLOW_CLIENTS
    finally:
        trickle.close()
    log = stopped_log(live_server.processes[-1])
    assert "not complete within 3 s (REQUEST_TIMEOUT)" in log
    assert "(CONNECTION_LIMIT)" in log and "(REQUEST_TIMEOUT)" in log  # the limits are named at start-up


def test_the_connection_limit_is_sized_to_the_file_descriptors(monkeypatch):
    import resource

    from deviceflow import serving

    for soft, expected in (
        (1024, 1024 - 32 - serving.RESERVED_DESCRIPTORS),
        (256, 160),
        (10**6, 4096),
        (resource.RLIM_INFINITY, 4096),
        (120, 100),
    ):
        monkeypatch.setattr(resource, "getrlimit", lambda which, soft=soft: (soft, resource.RLIM_INFINITY))
        assert serving.default_connection_limit(32) == expected
