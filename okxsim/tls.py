"""Self-signed CA and server certificate for the simulator's single TLS port.

cryptofeed 2.4.1 refuses non-``wss://`` URLs, so the simulator must speak TLS. A private
CA signs a server certificate for ``127.0.0.1`` (IP SAN) and ``localhost``; clients trust
the CA file (``requests(verify=ca_file)``, ``ssl.create_default_context(cafile=...)``).

An existing CA in the certificate directory is reused, so a restarted simulator stays
trusted by clients that loaded the CA file once (e.g. a long-running collector).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPaths:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)


def _load_ca(cert_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    ca_pem, ca_key = cert_dir / "ca.pem", cert_dir / "ca.key"
    if not (ca_pem.exists() and ca_key.exists()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    except ValueError:
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1):
        return None
    return cert, key


def _new_ca(cert_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "okxsim local CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(cert_dir / "ca.key", key)
    (cert_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def ensure_certs(cert_dir: str | os.PathLike[str]) -> CertPaths:
    """Create (or reuse the CA in) ``cert_dir`` and return the PEM paths.

    The server key/certificate get per-process file names and a lock guards the CA, so
    several simulators may share one directory.
    """
    d = Path(cert_dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ca_cert, ca_key = _load_ca(d) or _new_ca(d)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = CertPaths(d / "ca.pem", d / f"server-{os.getpid()}.pem", d / f"server-{os.getpid()}.key")
    _write_key(paths.key_file, key)
    paths.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def server_context(paths: CertPaths, remove_files: bool = True) -> ssl.SSLContext:
    """TLS server context; the per-process key/cert files are deleted once loaded."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(paths.cert_file), str(paths.key_file))
    if remove_files:
        for p in (paths.cert_file, paths.key_file):
            p.unlink(missing_ok=True)
    return ctx


def client_context(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """Client context trusting only the simulator's CA (for ``websockets``/``aiohttp`` clients)."""
    return ssl.create_default_context(cafile=str(ca_file))
