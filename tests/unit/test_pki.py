"""`vxplane pki`: the CA and certificates on disk, and a real TLS handshake with them (the
controller's listener settings: client certificate required, its CN read as the host)."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from controller import pki
from controller.cli.main import app
from controller.config import Settings
from controller.ofapp import peer_common_name
from hostagent.settings import AgentSettings


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_writes_ca_controller_and_host_files(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    runner = CliRunner()
    for argv in (
        ["pki", "init", str(d)],
        ["pki", "controller", "ctl1", str(d), "--san", "198.18.0.254", "--san", "ctl.lan"],
        ["pki", "host", "h1", str(d)],
    ):
        done = runner.invoke(app, argv)
        assert done.exit_code == 0, done.output
    ca = _cert(d / "ca.pem")
    for name, usage in (("ctl1", ExtendedKeyUsageOID.SERVER_AUTH), ("h1", None)):
        cert = _cert(d / f"{name}.pem")
        cert.verify_directly_issued_by(ca)
        assert pki.common_name(d / f"{name}.pem") == name
        assert _mode(d / f"{name}.key") == 0o600
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
        assert (usage in eku) if usage else ExtendedKeyUsageOID.SERVER_AUTH not in eku
    assert _mode(d / "ca.key") == 0o600 and _mode(d) == 0o700
    sans = _cert(d / "ctl1.pem").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)] == ["198.18.0.254"]
    assert sans.value.get_values_for_type(x509.DNSName) == ["ctl.lan"]
    before = (d / "ca.pem").read_bytes()
    again = runner.invoke(app, ["pki", "init", str(d)])
    assert again.exit_code == 0 and "kept" in again.output
    assert (d / "ca.pem").read_bytes() == before, "a second init never replaces the CA"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pki", "host", "h1", "{d}"], "no CA"),
        (["pki", "host", "ca", "{d}"], "CA's own file"),
        (["pki", "host", "../evil", "{d}"], "not a valid name"),
        (["pki", "controller", "c", "{d}", "--san", "a b"], "--san"),
    ],
)
def test_cli_refuses_clearly(tmp_path: Path, argv: list[str], message: str) -> None:
    d = tmp_path / "pki"
    if message != "no CA":
        pki.init_ca(d)
    done = CliRunner().invoke(app, [a.format(d=d) for a in argv])
    assert done.exit_code == 1 and message in done.output, done.output
    assert not list(tmp_path.glob("**/evil*"))


def _handshake(server_files: tuple[Path, Path, Path], client: ssl.SSLContext) -> str | None:
    """A TLS server configured as the controller's OpenFlow listener; the CN it read."""
    cert, key, ca = server_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca)
    seen: list[str | None] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    seen.append(peer_common_name(tls))
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                seen.append(None)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            with client.wrap_socket(socket.create_connection(("127.0.0.1", port))) as s:
                s.recv(2)
        except (ssl.SSLError, OSError):
            pass
        t.join(5)
    return seen[0] if seen else None


def _client(d: Path, name: str | None, ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    if name is not None:
        ctx.load_cert_chain(d / f"{name}.pem", d / f"{name}.key")
    return ctx


def test_tls_handshake_admits_the_ca_s_host_certificate_only(tmp_path: Path) -> None:
    good, other = tmp_path / "good", tmp_path / "other"
    for d in (good, other):
        pki.init_ca(d)
        pki.issue(d, "ctl", "controller", ["127.0.0.1"])
        pki.issue(d, "h1", "host")
    server = (good / "ctl.pem", good / "ctl.key", good / "ca.pem")
    assert _handshake(server, _client(good, "h1", good / "ca.pem")) == "h1"
    assert _handshake(server, _client(other, "h1", good / "ca.pem")) is None, "another CA"
    assert _handshake(server, _client(good, None, good / "ca.pem")) is None, "no certificate"


def test_settings_want_all_three_tls_files(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    cert, key = pki.issue(tmp_path, "ctl", "controller")
    ca = str(tmp_path / "ca.pem")
    with pytest.raises(ValueError, match="all three"):
        Settings(openflow_cert=str(cert))
    with pytest.raises(ValueError, match="does not exist"):
        Settings(openflow_cert=str(cert), openflow_key=str(key), openflow_ca="/nonexistent")
    ok = Settings(openflow_cert=str(cert), openflow_key=str(key), openflow_ca=ca)
    assert ok.openflow_tls == (str(cert), str(key), ca)
    assert Settings().openflow_tls is None


def test_agent_ssl_options_make_an_ssl_target() -> None:
    base = ["--controller", "http://10.0.0.5:8080", "--host", "h1", "--underlay-ip", "198.18.0.1"]
    files = ["--ovs-ssl-key", "/k", "--ovs-ssl-cert", "/c", "--ovs-ssl-ca", "/a"]
    tls = AgentSettings.from_cli([*base, *files])
    assert tls.openflow_targets == ("ssl:10.0.0.5:6653",)
    assert tls.ovs_ssl == ("/k", "/c", "/a")
    assert AgentSettings.from_cli(base).openflow_targets == ("tcp:10.0.0.5:6653",)
    with pytest.raises(ValueError, match="--ovs-ssl-key, --ovs-ssl-cert and --ovs-ssl-ca"):
        AgentSettings.from_cli([*base, "--ovs-ssl-key", "/k"])
    with pytest.raises(ValueError, match="an ssl: target needs"):
        AgentSettings.from_cli([*base, "--openflow", "ssl:10.0.0.5:6653"])


def test_a_host_certificate_cannot_pose_as_the_controller(tmp_path: Path) -> None:
    """Host certificates are client-only (EKU clientAuth): a switch verifying its controller
    against the CA refuses a server presenting one (OpenSSL's server-purpose check)."""
    pki.init_ca(tmp_path)
    pki.issue(tmp_path, "h1", "host")
    pki.issue(tmp_path, "h2", "host")
    server = (tmp_path / "h1.pem", tmp_path / "h1.key", tmp_path / "ca.pem")
    client = _client(tmp_path, "h2", tmp_path / "ca.pem")
    assert _handshake(server, client) is None


def test_the_directory_defaults_to_vxplane_pki_dir(tmp_path: Path) -> None:
    """The issue's exact forms: `pki init`, `pki controller NAME --san ...`, `pki host NAME`."""
    from typer.testing import CliRunner

    from controller.cli.main import app

    d = tmp_path / "default-pki"
    env = {"VXPLANE_PKI_DIR": str(d)}
    for args in (["pki", "init"], ["pki", "controller", "ctl1", "--san", "10.0.0.5"],
                 ["pki", "host", "h1"]):  # fmt: skip
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
    assert {p.name for p in d.iterdir()} >= {"ca.pem", "ctl1.pem", "ctl1.key", "h1.pem", "h1.key"}
