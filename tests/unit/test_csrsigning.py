"""The kube-apiserver-client signer's rules and the certificate it makes (no server)."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sendo.controllers.csrsigning import refusal
from sendo.pki import SigningError, ensure_tls, load_signer, sign_client_certificate


def _request(cn: str = "jane") -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    req = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).sign(key, hashes.SHA256())
    return req.public_bytes(serialization.Encoding.PEM), key


def test_only_client_usages_are_signed():
    assert refusal({"spec": {"usages": ["client auth"]}}) is None
    assert refusal({"spec": {"usages": ["digital signature", "key encipherment", "client auth"]}}) is None
    assert "client auth" in refusal({"spec": {"usages": ["digital signature"]}})
    assert "server auth" in refusal({"spec": {"usages": ["client auth", "server auth"]}})
    assert refusal({"spec": {}}) is not None


def test_certificate_carries_the_requesters_subject_and_key(tmp_path):
    tls = ensure_tls(str(tmp_path))
    ca, ca_key = load_signer(tls.ca_cert, str(tmp_path / "ca.key"))
    pem, key = _request()
    cert = x509.load_pem_x509_certificate(sign_client_certificate(pem, ca, ca_key, 3600))
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "CN=jane"
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(seconds=3600)
    # never valid past the CA itself
    long = x509.load_pem_x509_certificate(sign_client_certificate(pem, ca, ca_key, 100 * 365 * 86400))
    assert long.not_valid_after_utc == ca.not_valid_after_utc


def test_a_request_whose_signature_does_not_verify_is_refused(tmp_path):
    tls = ensure_tls(str(tmp_path))
    ca, ca_key = load_signer(tls.ca_cert, str(tmp_path / "ca.key"))
    pem, _ = _request()
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(SigningError, match="signature"):
        sign_client_certificate(tampered, ca, ca_key, 3600)
    with pytest.raises(SigningError, match="parse"):
        sign_client_certificate(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                                ca, ca_key, 3600)
