"""Self-signed OPC UA application certificates (Part 6, 6.2.2), made with `cryptography`.

A secure client needs a certificate whose subjectAltName URI is its ApplicationUri: servers refuse
a session whose ApplicationUri does not match it. `bifrost.connect` makes a throw-away one when a
secure connection is asked for without `certificate=`; tests and the docs use `write_certificate`.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from bifrost._extras import require

CLIENT_URI = "urn:bifrost:client"


def generate_certificate(
    application_uri: str = CLIENT_URI, hostname: str = "localhost", *, days: int = 365, key_size: int = 2048
) -> tuple[bytes, bytes]:
    """A self-signed RSA certificate and its unencrypted private key, both DER."""
    x509: Any = require("cryptography.x509", "opcua")
    hashes = require("cryptography.hazmat.primitives.hashes", "opcua")
    rsa = require("cryptography.hazmat.primitives.asymmetric.rsa", "opcua")
    serialization = require("cryptography.hazmat.primitives.serialization", "opcua")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, f"bifrost {application_uri}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(application_uri), x509.DNSName(hostname)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_der: bytes = cert.public_bytes(serialization.Encoding.DER)
    key_der: bytes = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_der, key_der


def write_certificate(
    directory: str | Path, application_uri: str = CLIENT_URI, hostname: str = "localhost", *, name: str = "client"
) -> tuple[Path, Path]:
    """Write `<name>.der` and `<name>.key.der` into `directory`; returns their paths."""
    cert, key = generate_certificate(application_uri, hostname)
    folder = Path(directory)
    cert_path, key_path = folder / f"{name}.der", folder / f"{name}.key.der"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    return cert_path, key_path


def application_uri_of(certificate: bytes) -> str | None:
    """The URI in a certificate's subjectAltName (PEM or DER), or None when it has none."""
    x509: Any = require("cryptography.x509", "opcua")
    cert = (
        x509.load_pem_x509_certificate(certificate)
        if certificate.lstrip().startswith(b"-----")
        else x509.load_der_x509_certificate(certificate)
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return str(uris[0]) if uris else None
