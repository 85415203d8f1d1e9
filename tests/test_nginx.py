"""The reverse proxy docs/operations.md asks public servers to put in front: docs/nginx-deviceflow.conf,
as it is, in front of a live deviceflow, with slow clients at the door."""

import datetime as dt
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import requests
from helpers import DEVICE_GRANT, stopped_log
from test_slow_clients import SLOW_CLIENTS, Trickle, timed

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "nginx-deviceflow.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
HEADER_TIMEOUT = 10  # client_header_timeout in the example


@pytest.fixture
def nginx_binary():
    if NGINX is None:
        if os.environ.get("DEVICEFLOW_REQUIRE_NGINX"):
            pytest.fail("nginx is required here (.ci/run installs Debian's nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return NGINX


def self_signed(folder):
    """A certificate for 127.0.0.1, and its key, as nginx reads them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def render(example, replacements):
    for old, new in replacements.items():
        assert old in example, f"the example no longer has {old!r}: update this test with it"
        example = example.replace(old, new)
    return example


@pytest.fixture
def nginx_in_front(nginx_binary, live_server, tmp_path, processes):
    """deviceflow on 127.0.0.1 behind the example configuration; the https base URL and its certificate."""
    base = live_server(TRUSTED_PROXIES="127.0.0.1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cert, key = self_signed(tmp_path)
    site = tmp_path / "deviceflow.conf"
    site.write_text(
        render(
            EXAMPLE.read_text(),
            {
                "server 127.0.0.1:8080;": f"server 127.0.0.1:{base.rsplit(':', 1)[1]};",
                "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
                "/etc/letsencrypt/live/enedis.example.org/fullchain.pem": str(cert),
                "/etc/letsencrypt/live/enedis.example.org/privkey.pem": str(key),
            },
        )
    )
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    main = tmp_path / "nginx.conf"
    main.write_text(
        "\n".join(
            [
                "daemon off;",
                "worker_processes 1;",
                f"pid {tmp_path / 'nginx.pid'};",
                "user root;" if os.geteuid() == 0 else "",
                f"error_log {tmp_path / 'error.log'} info;",
                "events { worker_connections 1024; }",
                "http {",
                f"  access_log {tmp_path / 'access.log'};",
                *(
                    f"  {name}_temp_path {path};" if name != "body" else f"  client_body_temp_path {path};"
                    for name, path in temp.items()
                ),
                f"  include {site};",
                "}",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        [nginx_binary, "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(main)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    processes.append(process)
    front = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{front}/healthz", verify=str(cert), timeout=1).status_code == 200:
                return front, cert
        except requests.RequestException:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(
        f"nginx did not start: {process.stderr.read().decode()[-2000:] if process.poll() else ''}"
        f"{(tmp_path / 'error.log').read_text()[-2000:]}"
    )


def test_the_example_nginx_keeps_slow_clients_away_from_deviceflow(nginx_in_front, live_server):
    front, cert = nginx_in_front
    code = requests.post(
        f"{front}/device/code", data={"client_id": "deviceflow-demo"}, verify=str(cert), timeout=5
    ).json()
    assert code["device_code"]
    context = ssl.create_default_context(cafile=str(cert))
    trickle = Trickle(
        int(front.rsplit(":", 1)[1]), wrap=lambda sock: context.wrap_socket(sock, server_hostname="127.0.0.1")
    )
    try:
        for _ in range(2):
            healthz, took = timed(lambda: requests.get(f"{front}/healthz", verify=str(cert), timeout=1))
            assert isinstance(healthz, requests.Response) and healthz.status_code == 200 and took < 1, healthz
            poll, took = timed(
                lambda: requests.post(
                    f"{front}/device/token",
                    verify=str(cert),
                    timeout=1,
                    data={
                        "client_id": "deviceflow-demo",
                        "grant_type": DEVICE_GRANT,
                        "device_code": code["device_code"],
                    },
                )
            )
            assert isinstance(poll, requests.Response) and took < 1, poll
            assert poll.json()["error"] == "authorization_pending"
            time.sleep(1)
        # nginx closes them at client_header_timeout; deviceflow never saw them.
        assert trickle.closed_within(HEADER_TIMEOUT + 5) == SLOW_CLIENTS
    finally:
        trickle.close()
    log = stopped_log(live_server.processes[0])
    # The polls reached deviceflow (their answer says so; pending polls are summarized in its access log).
    assert "not complete within" not in log and "GET /healthz 200" in log
