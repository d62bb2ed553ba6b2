"""The compose stack's TLS files, made once by the `tls-init` service with the Rollwatch image's `cryptography`.

A private CA signs one certificate the three Kafka nodes share (DNS names kafka-1..3, server and client use:
the nodes authenticate each other with it, as principal User:CN=kafka-broker) and the dashboard proxy's
certificate (DASHBOARD_HOSTNAMES, comma-separated, default localhost). Files that already exist are kept, so a
restart never re-keys a running stack; to rotate, remove the tls-* volumes and start again. Each file is owned
by the only process that reads it: Kafka's appuser (KAFKA_UID, 1000 in apache/kafka) reads the keystore, nginx's
master (root) its key, and every Rollwatch service the public CA certificate.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DIR = Path("/tls/ca")  # CA key: this service only
PUBLIC_DIR = Path("/tls/public")  # ca.pem: every Kafka client
KAFKA_DIR = Path("/tls/kafka")  # the nodes' keystore and their own client settings
DASHBOARD_DIR = Path("/tls/dashboard")  # the proxy's certificate and key
BROKER_PRINCIPAL = "kafka-broker"
VALIDITY = datetime.timedelta(days=825)
KAFKA_UID = int(os.environ.get("KAFKA_UID", "1000"))


def _write(path: Path, data: bytes, mode: int, uid: int = 0) -> None:
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chown(path, uid, uid)
    os.chmod(path, mode)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_file, certificate_file = CA_DIR / "ca-key.pem", CA_DIR / "ca.pem"
    if key_file.exists() and certificate_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SystemExit(f"{key_file} is not the EC key this script makes")
        return key, x509.load_pem_x509_certificate(certificate_file.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Rollwatch compose CA")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(key_file, _pem_key(key), 0o600)
    _write(certificate_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return key, certificate


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, common_name: str, hosts: list[str], client: bool
) -> tuple[bytes, bytes]:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host) for host in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_key(key), certificate.public_bytes(serialization.Encoding.PEM)


def main() -> None:
    for directory in (CA_DIR, PUBLIC_DIR, KAFKA_DIR, DASHBOARD_DIR):
        directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca()
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    _write(PUBLIC_DIR / "ca.pem", ca_pem, 0o644)
    _write(KAFKA_DIR / "ca.pem", ca_pem, 0o644)
    keystore = KAFKA_DIR / "broker-keystore.pem"
    if not keystore.exists():
        key, certificate = _leaf(ca_key, ca, BROKER_PRINCIPAL, ["kafka-1", "kafka-2", "kafka-3"], client=True)
        # Kafka's PEM keystore: the PKCS#8 key, then the chain.
        _write(keystore, key + certificate + ca_pem, 0o600, KAFKA_UID)
    # What the nodes' health check uses to reach a node's inter-broker listener as the nodes themselves.
    client_properties = (
        "security.protocol=SSL\n"
        "ssl.keystore.type=PEM\n"
        "ssl.keystore.location=/etc/kafka/tls/broker-keystore.pem\n"
        "ssl.truststore.type=PEM\n"
        "ssl.truststore.location=/etc/kafka/tls/ca.pem\n"
    )
    _write(KAFKA_DIR / "internal-client.properties", client_properties.encode(), 0o600, KAFKA_UID)
    dashboard_key = DASHBOARD_DIR / "dashboard-key.pem"
    if not dashboard_key.exists():
        hosts = [h.strip() for h in os.environ.get("DASHBOARD_HOSTNAMES", "localhost").split(",") if h.strip()]
        key, certificate = _leaf(ca_key, ca, hosts[0], hosts, client=False)
        _write(DASHBOARD_DIR / "dashboard.pem", certificate + ca_pem, 0o644)
        _write(dashboard_key, key, 0o600)
    print("TLS files ready; clients trust the CA in /tls/public/ca.pem")


if __name__ == "__main__":
    main()
