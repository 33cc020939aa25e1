"""A private CA and a server certificate for the emulator's TLS.

The official client always dials TLS. gRPC trusts extra roots only from the file named by
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, and reads that file once per process, so the CA is
generated once per directory and reused on every later start: restarting the emulator must
not invalidate what a long-running client already trusts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILENAME = "ca.pem"  # the name registry.SANDBOX_CA_FILENAME expects
SERVER_CERT_FILENAME = "google-server.pem"
SERVER_KEY_FILENAME = "google-server-key.pem"
_VALIDITY = dt.timedelta(days=3650)
_RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class TlsFiles:
    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_key_and_chain(self) -> tuple[bytes, bytes]:
        return self.key_path.read_bytes(), self.cert_path.read_bytes()


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Two processes starting at once must not each write half of a CA/cert pair."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no concurrent starts there
        yield
        return
    with open(directory / ".certs.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _still_valid(cert_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - _RENEW_BEFORE > dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(data)
    if private:
        temporary.chmod(0o600)
    os.replace(temporary, path)


def ensure_tls_files(cert_dir: Path) -> TlsFiles:
    """Return the CA and server certificate in ``cert_dir``, creating them only if missing."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(cert_dir / CA_FILENAME, cert_dir / SERVER_CERT_FILENAME, cert_dir / SERVER_KEY_FILENAME)
    with _directory_lock(cert_dir):
        if files.key_path.exists() and _still_valid(files.ca_path) and _still_valid(files.cert_path):
            return files
        _generate(files)
    return files


def _generate(files: TlsFiles) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "IBVI Ads sandbox CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.IPAddress(ipaddress.IPv6Address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(
        files.key_path,
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        private=True,
    )
    _write(files.cert_path, server_cert.public_bytes(serialization.Encoding.PEM))
    # The CA last: its presence is what marks the set complete for the next start.
    _write(files.ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
