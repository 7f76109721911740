"""https on loopback: a local CA and a server certificate for 127.0.0.1/localhost (``callstack up --tls``),
and the SSL contexts of a listening service and of a client that trusts that CA.

The CA's private key is not kept: nothing can sign another certificate with it once the pair exists. A new
pair (CA included) replaces one that is missing, unreadable or within a day of expiry.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.settings import TlsSettings

VALID_DAYS = 90
RENEW_BEFORE = datetime.timedelta(days=1)
DNS_NAMES = ("localhost",)
IP_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class LocalTls:
    ca_file: Path  # what a client trusts
    cert_file: Path  # the server's certificate (PEM)...
    key_file: Path  # ...and its key (PEM, 0600)

    @classmethod
    def under(cls, directory: Path) -> LocalTls:
        return cls(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")

    def env(self) -> dict[str, str]:
        """The variables of a service that listens on https with this pair."""
        return {TlsSettings.variable("tls_cert_file"): str(self.cert_file),
                TlsSettings.variable("tls_key_file"): str(self.key_file)}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fllm-callstack (local)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _still_valid(tls: LocalTls, now: datetime.datetime) -> bool:
    try:
        certificate = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
        x509.load_pem_x509_certificate(tls.ca_file.read_bytes())
        serialization.load_pem_private_key(tls.key_file.read_bytes(), None)
    except (OSError, ValueError):
        return False
    return certificate.not_valid_after_utc - RENEW_BEFORE > now


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def ensure_local_tls(directory: Path, *, now: datetime.datetime | None = None) -> LocalTls:
    """The pair under ``directory`` (made 0700), generated unless a valid one is there."""
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    tls = LocalTls.under(directory)
    if _still_valid(tls, now):
        return tls
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fllm-callstack local CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in DNS_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in IP_ADDRESSES]
    server = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(tls.key_file, key_pem, 0o600)
    _write(tls.cert_file, server.public_bytes(pem), 0o644)
    _write(tls.ca_file, ca.public_bytes(pem), 0o644)
    return tls


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifies servers against certifi's roots and, when given, the CA(s) in ``ca_file``."""
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def outgoing_verify(settings: TlsSettings | None = None) -> ssl.SSLContext | bool:
    """What a service's httpx client verifies servers with: FLLM_TLS_CA_FILE added to the default roots."""
    settings = settings or TlsSettings()
    return client_context(settings.tls_ca_file) if settings.tls_ca_file is not None else True
