"""The real `vxplane controller` process: the admin token file it writes, and the API over
TLS (--api-cert/--api-key) as the CLI reaches it with VXPLANE_CA. Loopback only."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from controller.cli.main import app as cli
from controller.pki import init_ca, issue
from tests.liveserver import free_port
from vxlab.launch import ControllerProcess


@pytest.fixture
def tls_controller(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A controller on 127.0.0.1 serving its API over TLS; yields (url, CA, token file)."""
    pki = tmp_path / "pki"  # the same `vxplane pki` that OpenFlow's TLS uses
    init_ca(pki)
    cert, key = issue(pki, "api", "controller", sans=["127.0.0.1"])
    ca = pki / "ca.pem"
    token_file = tmp_path / "secret" / "admin-token"
    ctl = ControllerProcess(
        f"sqlite:///{tmp_path}/vx.db", tmp_path / "controller.log", free_port(), free_port(),
        admin_token_file=token_file, api_tls=(str(cert), str(key), str(ca)),
    )  # fmt: skip
    ctl.start()
    try:
        yield ctl.url, ca, token_file
    finally:
        ctl.stop()


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
