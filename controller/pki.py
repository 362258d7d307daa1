"""A small certificate authority for OpenFlow over TLS: one CA, a certificate per controller
and per host, as PEM files in one directory.

``init_ca(DIR)`` writes ``DIR/ca.pem`` and ``DIR/ca.key``; ``issue(DIR, NAME, ...)`` writes
``DIR/NAME.pem`` and ``DIR/NAME.key`` signed by that CA. Keys are ECDSA P-256, written with
mode 0600. A host certificate's CN is the host's vxplane name (the controller admits a switch
only if its certificate names the host its dpid belongs to) and it is a TLS client
certificate; a controller certificate is a server certificate (and a client one) whose
subject alternative names are the addresses and DNS names switches dial.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vxcommon.names import check_name

Kind = Literal["controller", "host"]
CA_DAYS = 3650
CERT_DAYS = 825
RESERVED = {"ca"}


class PkiError(ValueError):
    """A PKI request that cannot be done (no CA yet, a bad name or address)."""


def ca_paths(directory: str | Path) -> tuple[Path, Path]:
    """``(DIR/ca.pem, DIR/ca.key)``."""
    d = Path(directory)
    return d / "ca.pem", d / "ca.key"


def cert_paths(directory: str | Path, name: str) -> tuple[Path, Path]:
    """``(DIR/NAME.pem, DIR/NAME.key)``."""
    d = Path(directory)
    return d / f"{name}.pem", d / f"{name}.key"


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the first byte on (atomically)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    """A CA signs certificates (and CRLs); a leaf signs and agrees keys (ECDHE)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init_ca(directory: str | Path, common_name: str = "vxplane CA", days: int = CA_DAYS) -> bool:
    """Create the CA in ``directory`` (made 0700 if new); False if one is already there."""
    d = Path(directory)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = ca_paths(d)
    if cert_path.exists() or key_path.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return True


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_paths(directory)
    if not cert_path.exists() or not key_path.exists():
        raise PkiError(f"no CA in {directory}: run `vxplane pki init {directory}` first")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: not an ECDSA key")
    return cert, key


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    label = value.rstrip(".")
    if not label or len(label) > 253 or any(c in label for c in " /\\:@\0"):
        raise PkiError(f"--san {value!r}: an IP address or a DNS name")
    return x509.DNSName(label)


def issue(
    directory: str | Path,
    name: str,
    kind: Kind,
    sans: Sequence[str] = (),
    days: int = CERT_DAYS,
) -> tuple[Path, Path]:
    """Issue ``DIR/NAME.pem`` and ``DIR/NAME.key`` (CN = ``name``), signed by the CA in
    ``directory``; an existing pair of that name is replaced (rotation). Returns their paths."""
    check_name(name)
    if name.lower() in RESERVED:
        raise PkiError(f"{name!r} is the CA's own file name; pick another")
    d = Path(directory)
    ca_cert, ca_key = _load_ca(d)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [_san(s) for s in sans]
    if kind == "host" or not names:
        names.insert(0, x509.DNSName(name))
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if kind == "controller":
        usage.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = cert_paths(d, name)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def common_name(cert_path: str | Path) -> str:
    """The CN of the certificate in ``cert_path``."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""
