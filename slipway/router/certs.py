"""The certificate store and the internal CA: PEM files on disk, no network.

Layout under the store's root (``SLIPWAY_HOME/certs``)::

    <host>/fullchain.pem   leaf + intermediates, what nginx serves
    <host>/privkey.pem     the leaf's key, mode 0600
    account.pem            the ACME account key, made once (0600)
    ca/ca.pem, ca/ca.key   the internal CA (key 0600)

Every file is written beside its final name and renamed into place, so nginx
(which reads them on reload) never sees half a certificate or a certificate
paired with the wrong key: the key is swapped in before the chain, and both
are only referenced by the route table once both exist.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from slipway.router.nginx import validate_host

# Internal certificates live 90 days, like Let's Encrypt's, so renewal is exercised.
_INTERNAL_DAYS = 90
_CA_YEARS = 10


@dataclass(frozen=True)
class StoredCertificate:
    host: str
    certificate: Path
    key: Path
    not_after: dt.datetime


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode`` (never wider first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def new_key_pem() -> bytes:
    """A fresh P-256 private key, PEM (PKCS#8, unencrypted)."""
    return _key_pem(ec.generate_private_key(ec.SECP256R1()))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_csr_pem(key_pem: bytes, host: str) -> bytes:
    """A CSR for ``host`` (as its only SAN) signed by ``key_pem``."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def not_after(chain_pem: bytes) -> dt.datetime:
    """The expiry (UTC) of the first certificate in ``chain_pem``."""
    return x509.load_pem_x509_certificate(chain_pem).not_valid_after_utc


class CertificateStore:
    """Certificates per host under ``root``; hosts are validated before they name a path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def paths(self, host: str) -> tuple[Path, Path]:
        """(fullchain, key) paths for ``host``; raises InvalidRouteError for a bad host."""
        validate_host(host)
        return self.root / host / "fullchain.pem", self.root / host / "privkey.pem"

    def get(self, host: str) -> StoredCertificate | None:
        """The stored certificate of ``host``, or None if there is none (or it is unreadable)."""
        chain, key = self.paths(host)
        try:
            expiry = not_after(chain.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        if not key.exists():
            return None
        return StoredCertificate(host, chain, key, expiry)

    def save(self, host: str, key_pem: bytes, chain_pem: bytes) -> StoredCertificate:
        """Store a key and its chain for ``host`` (key 0600, chain 0644)."""
        chain, key = self.paths(host)
        write_private(key, key_pem, 0o600)
        write_private(chain, chain_pem, 0o644)
        return StoredCertificate(host, chain, key, not_after(chain_pem))

    def remove(self, host: str) -> None:
        """Forget ``host``'s certificate and key (no error if there are none)."""
        for path in self.paths(host):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            (self.root / host).rmdir()

    def account_key(self) -> bytes:
        """The ACME account key, made on first use and kept (0600)."""
        path = self.root / "account.pem"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        self.root.mkdir(parents=True, exist_ok=True)
        data = new_key_pem()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker made it first: use theirs
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return data


class InternalCA:
    """A local CA under ``root``: made once, then signs leaf certificates for any host."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def certificate_path(self) -> Path:
        """The CA certificate to trust (give it to browsers, curl or requests' ``verify``)."""
        return self.root / "ca.pem"

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key_path = self.root / "ca.key"
        if not key_path.exists() or not self.certificate_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                _self_signed(key, "Slipway internal CA", 365 * _CA_YEARS)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False),
                    critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256())
            )
            write_private(key_path, _key_pem(key), 0o600)
            write_private(self.certificate_path,
                          cert.public_bytes(serialization.Encoding.PEM), 0o644)
        cert = x509.load_pem_x509_certificate(self.certificate_path.read_bytes())
        key = serialization.load_pem_private_key((self.root / "ca.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def issue(self, host: str, key_pem: bytes, days: int = _INTERNAL_DAYS) -> bytes:
        """A chain (leaf + CA) for ``host`` over ``key_pem``'s public key."""
        validate_host(host)
        ca_cert, ca_key = self._load()
        leaf_key = serialization.load_pem_private_key(key_pem, password=None)
        now = dt.datetime.now(dt.UTC)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject)
            .public_key(leaf_key.public_key())  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return (leaf.public_bytes(serialization.Encoding.PEM)
                + ca_cert.public_bytes(serialization.Encoding.PEM))


def _self_signed(key: ec.EllipticCurvePrivateKey, name: str, days: int) -> x509.CertificateBuilder:
    """A certificate named ``name`` and issued by itself over ``key``, valid ``days``."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def self_signed_pem(host: str, days: int = 365 * _CA_YEARS) -> tuple[bytes, bytes]:
    """A fresh key and a self-signed certificate for ``host``: (key PEM, certificate PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, host, days).sign(key, hashes.SHA256())
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)
