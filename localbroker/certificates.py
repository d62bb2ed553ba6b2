"""The secure local cluster's secrets: a CA, a broker certificate for 127.0.0.1, the super user's env file."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE_NAME = "ca.pem"
CA_KEY_FILE_NAME = "ca-key.pem"
#: Kafka's PEM keystore: the broker's PKCS#8 key followed by its certificate chain, in one file.
BROKER_KEYSTORE_FILE_NAME = "broker-keystore.pem"
VALIDITY = datetime.timedelta(days=825)


@dataclass(frozen=True)
class TlsFiles:
    """Where a secure cluster's CA certificate (for clients) and broker keystore (for Kafka) are kept."""

    ca_file: Path
    broker_keystore: Path


def write_private(path: Path, data: bytes) -> None:
    """Writes a file only its owner can read, with no moment at which it is readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Rollwatch local broker"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_tls_files(directory: Path, host: str = "127.0.0.1") -> TlsFiles:
    """The CA and broker keystore under `directory`, generated on first use and kept afterwards."""
    files = TlsFiles(ca_file=directory / CA_FILE_NAME, broker_keystore=directory / BROKER_KEYSTORE_FILE_NAME)
    if files.ca_file.exists() and files.broker_keystore.exists():
        return files
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Rollwatch local CA")
    ca_certificate = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_certificate.public_bytes(serialization.Encoding.PEM)
    write_private(directory / CA_KEY_FILE_NAME, _pkcs8(ca_key))
    write_private(
        files.broker_keystore,
        _pkcs8(broker_key) + broker_certificate.public_bytes(serialization.Encoding.PEM) + ca_pem,
    )
    # The CA certificate is public: every client needs it to trust the broker.
    files.ca_file.write_bytes(ca_pem)
    return files


def read_admin_password(path: Path) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key == "ROLLWATCH_SASL_PASSWORD" and value:
            return value
    return None


def write_admin_env(path: Path, *, bootstrap_servers: str, user: str, password: str, ca_file: Path) -> None:
    """The super user's ROLLWATCH_* settings, readable by `set -a; . FILE` and `rollwatch --env-file FILE`."""
    values = {
        "ROLLWATCH_BOOTSTRAP_SERVERS": bootstrap_servers,
        "ROLLWATCH_SECURITY_PROTOCOL": "SASL_SSL",
        "ROLLWATCH_SASL_MECHANISM": "SCRAM-SHA-512",
        "ROLLWATCH_SASL_USERNAME": user,
        "ROLLWATCH_SASL_PASSWORD": password,
        "ROLLWATCH_SSL_CAFILE": str(ca_file),
    }
    write_private(path, "".join(f"{key}={value}\n" for key, value in values.items()).encode("utf-8"))
