"""The real `vxplane controller` process: the admin token file it writes, and the API over
TLS (--api-cert/--api-key) as the CLI reaches it with VXPLANE_CA. Loopback only."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from controller.cli.main import app as cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A CA-less self-signed certificate for 127.0.0.1 (the test's own trust anchor)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vxplane-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "api.pem", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


@pytest.fixture
def tls_controller(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A controller on 127.0.0.1 serving its API over TLS; yields (url, CA, token file)."""
    cert, key = _self_signed(tmp_path)
    port, of_port = _free_port(), _free_port()
    token_file = tmp_path / "secret" / "admin-token"
    log = open(tmp_path / "controller.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli.main", "controller",
         "--db", f"sqlite:///{tmp_path}/vx.db", "--api", f"127.0.0.1:{port}",
         "--openflow", f"127.0.0.1:{of_port}", "--api-cert", str(cert), "--api-key", str(key),
         "--admin-token-file", str(token_file)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "controller.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", verify=str(cert), timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "controller.log").read_text()
            time.sleep(0.2)
        yield url, cert, token_file
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_tls_api_the_admin_token_file_and_the_cli(tls_controller: tuple[str, Path, Path]) -> None:
    url, ca, token_file = tls_controller
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token.startswith("vxp_")
    # the API answers only over TLS, and only with the token
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https", "http") + "/healthz", timeout=2)
    with pytest.raises(httpx.HTTPError):  # a client that does not trust the certificate
        httpx.get(f"{url}/healthz", timeout=2)
    assert httpx.get(f"{url}/api/v1/networks", verify=str(ca)).status_code == 401
    # the cookie of a session over TLS is Secure
    login = httpx.post(f"{url}/api/v1/session", json={"token": token}, verify=str(ca))
    assert login.status_code == 200 and "secure" in login.headers["set-cookie"].lower()
    # root's CLI on this machine: the token file and the CA from the environment
    env = {"VXPLANE_API": url, "VXPLANE_CA": str(ca), "VXPLANE_TOKEN_FILE": str(token_file)}
    result = CliRunner().invoke(
        cli, ["network", "create", "tls", "--subnet", "10.70.0.0/24"], env=env
    )
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(cli, ["network", "ls", "-o", "json"], env=env)
    assert '"tls"' in listed.stdout
