"""The serving certificate of the custom metrics API: a CA of its own and a certificate for its
Service's DNS names, made with `cryptography`. The CA goes into the APIService's caBundle, which
is how the API server's aggregator trusts it (as cert-manager's CA injector or Gatekeeper's
certificate rotator do); nothing here talks to the API server.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=30)
KEYS = ("ca.crt", "tls.crt", "tls.key")


@dataclass(frozen=True)
class Bundle:
    ca: bytes  # PEM
    cert: bytes  # PEM
    key: bytes  # PEM, unencrypted: it lives only in the Secret and the process

    def secret_data(self) -> dict[str, str]:
        values = (self.ca, self.cert, self.key)
        return {k: base64.b64encode(v).decode() for k, v in zip(KEYS, values, strict=True)}

    @classmethod
    def from_secret_data(cls, data: dict[str, str]) -> Bundle | None:
        """The bundle a Secret holds, or None when it lacks a key (then it is made anew)."""
        if any(not data.get(k) for k in KEYS):
            return None
        ca, cert, key = (base64.b64decode(data[k]) for k in KEYS)
        return cls(ca, cert, key)

    def ca_bundle(self) -> str:
        """The CA as an APIService's spec.caBundle holds it (base64 of the PEM)."""
        return base64.b64encode(self.ca).decode()


def dns_names(service: str, namespace: str) -> list[str]:
    """The names the aggregator may dial the Service by."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def make(service: str, namespace: str, now: dt.datetime) -> Bundle:
    """A new CA, and a serving certificate it signs for the Service, valid for VALIDITY."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{service}-ca")])
    start, end = now - dt.timedelta(minutes=5), now + VALIDITY
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = dns_names(service, namespace)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[2])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Bundle(
        ca=ca.public_bytes(pem),
        cert=cert.public_bytes(pem),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def usable(bundle: Bundle, service: str, namespace: str, now: dt.datetime) -> bool:
    """Whether the bundle serves these names for more than RENEW_BEFORE from `now`."""
    try:
        cert = x509.load_pem_x509_certificate(bundle.cert)
        x509.load_pem_x509_certificate(bundle.ca)
    except ValueError:
        return False
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(dns_names(service, namespace)) <= set(sans.get_values_for_type(x509.DNSName))
