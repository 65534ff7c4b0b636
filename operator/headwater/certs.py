"""Serving certificates for the admission webhook; no cert-manager is needed.

Two modes (see :mod:`headwater.admission_server`):

- one address (a local operator): a self-signed certificate for that address,
  made at every start, handed to the API server as the ``caBundle``;
- a Service in front of every replica: one CA (:func:`make_ca`, kept in a
  Secret in the operator's namespace, made by the first replica), and a leaf
  certificate per process signed by it (:func:`make_leaf_cert`) for the
  Service's DNS names. The ``caBundle`` is the CA, so each replica's leaf is
  trusted without the replicas sharing a serving key.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServingCert:
    cert_file: Path
    key_file: Path
    cert_pem: bytes


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True)
class CertificateAuthority:
    cert_pem: bytes
    key_pem: bytes


def _write(directory: Path, cert_pem: bytes, key: ec.EllipticCurvePrivateKey) -> ServingCert:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert_pem)
    key_file.touch(mode=0o600)
    key_file.write_bytes(_key_pem(key))
    return ServingCert(cert_file, key_file, cert_pem)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


_CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _common_name(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


def _days_from_now(days: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    """A certificate valid from five minutes ago (clock skew) until ``not_after``."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
    )


def make_ca(common_name: str, days: int = 3650) -> CertificateAuthority:
    """A new CA (key and self-signed certificate) that signs only leaf certificates."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _common_name(common_name)
    cert = (
        _builder(name, name, key, _days_from_now(days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_leaf_cert(directory: Path, ca: CertificateAuthority, hosts: list[str]) -> ServingCert:
    """A serving key and certificate for ``hosts`` signed by ``ca``, written under ``directory``.

    It expires with the CA; ``cert_pem`` is the leaf alone (the CA is the trust anchor).
    """
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the admission CA's key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_common_name(hosts[0]), ca_cert.subject, key, ca_cert.not_valid_after_utc)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _write(directory, cert.public_bytes(serialization.Encoding.PEM), key)


def make_serving_cert(directory: Path, hosts: list[str], days: int = 365) -> ServingCert:
    """A key and a certificate for ``hosts`` (IPs or names), written under ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _common_name(hosts[0])
    cert = (
        _builder(name, name, key, _days_from_now(days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, cert.public_bytes(serialization.Encoding.PEM), key)
