"""The cluster's certificates: a CA made at first start and a serving certificate it signs.

kubectl and client-go send bearer tokens only over TLS, so the API is HTTPS from the
first start. The CA goes into every kubeconfig; agents and our controllers trust it.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .private import private_dir, tighten, write_private

VALIDITY = dt.timedelta(days=3650)


@dataclass
class TLSFiles:
    ca_cert: str
    cert: str
    key: str

    def ca_pem(self) -> bytes:
        with open(self.ca_cert, "rb") as f:
            return f.read()


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_usage(ca: bool) -> x509.KeyUsage:
    """Signatures only; a CA also signs certificates and revocation lists."""
    return x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def ensure_tls(directory: str, hosts: list[str] | None = None) -> TLSFiles:
    """Create the CA and serving certificate once; later starts reuse them.

    The keys are 0600 in a 0700 directory; the certificates are public (0644)."""
    private_dir(directory, own=True)
    files = TLSFiles(os.path.join(directory, "ca.crt"), os.path.join(directory, "server.crt"),
                     os.path.join(directory, "server.key"))
    ca_key_file = os.path.join(directory, "ca.key")
    sans = _sans(hosts or [])
    if all(os.path.exists(p) for p in (files.ca_cert, files.cert, files.key)):
        for key_file in (files.key, ca_key_file):
            if os.path.exists(key_file):
                tighten(key_file)
        if not _missing_sans(files.cert, sans) or not os.path.exists(ca_key_file):
            return files
        # a new listen address or --tls-san: a new serving certificate from the same CA,
        # so every kubeconfig and agent that trusts the CA keeps working
        with open(ca_key_file, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(files.ca_cert, "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        _write_serving(files, ca, ca_key, sans | _existing_sans(files.cert))
        return files
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("sendo-ca")).issuer_name(_name("sendo-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(_key_usage(ca=True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write_private(ca_key_file, _key_pem(ca_key))
    write_private(files.ca_cert, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write_serving(files, ca, ca_key, sans)
    return files


_WILDCARD = {"0.0.0.0", "::", ""}


def _sans(hosts: list[str]) -> set[x509.GeneralName]:
    """The serving certificate's names: loopback, the in-cluster names of the `kubernetes`
    Service, this machine's hostname, and every address the server listens on or is
    reached at (a wildcard listen address names no one)."""
    names = {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", socket.gethostname(), "127.0.0.1", "::1",
             *(h for h in hosts if h not in _WILDCARD)}
    sans: set[x509.GeneralName] = set()
    for h in names:
        try:
            sans.add(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.add(x509.DNSName(h))
    return sans


def _existing_sans(cert_file: str) -> set[x509.GeneralName]:
    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()


def _missing_sans(cert_file: str, wanted: set[x509.GeneralName]) -> set[x509.GeneralName]:
    return wanted - _existing_sans(cert_file)


def serving_sans(cert_file: str) -> list[str]:
    """The names and addresses a serving certificate is valid for, as text."""
    return sorted(str(getattr(n, "value", n)) for n in _existing_sans(cert_file))


def _write_serving(files: TLSFiles, ca, ca_key, sans: set[x509.GeneralName]) -> None:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ordered = sorted(sans, key=lambda n: (type(n).__name__, str(n.value)))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("sendo-apiserver")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(ordered), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(files.key, _key_pem(key))
    write_private(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def client_context(ca_pem: bytes | None, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """An SSL context for our own clients that trusts the cluster CA, presenting the client
    certificate ``cert`` (certificate file, key file) if one is given. A client certificate
    goes only to the cluster's API server, so with one and the cluster CA the CA alone is
    trusted: the system's roots are not loaded (a few hundred ms each on a loaded machine,
    for each of the control loops' clients)."""
    if cert is not None and ca_pem:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer and its hostname, as the default
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx = ssl.create_default_context()
    if ca_pem:
        ctx.load_verify_locations(cadata=ca_pem.decode())
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


CLIENT_VALIDITY = dt.timedelta(days=365)


class SigningError(ValueError):
    """A certificate request the signer refuses (the reason is shown to the requester)."""


def load_signer(ca_cert_file: str, ca_key_file: str) -> tuple[x509.Certificate, object]:
    """The CA certificate and key that sign issued certificates (read from their files)."""
    with open(ca_cert_file, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(ca_key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    return ca, key


def _client_cert(subject: x509.Name, public_key, ca: x509.Certificate, ca_key, validity: dt.timedelta) -> bytes:
    """A certificate (PEM) usable only for client authentication, never valid past the CA."""
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + validity, ca.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_client_cert(directory: str, user: str, groups: list[str] | tuple[str, ...] = (),
                      validity: dt.timedelta = CLIENT_VALIDITY) -> tuple[bytes, bytes]:
    """A client certificate the cluster CA (in ``directory``, made by ``ensure_tls``) signs:
    CN = the user, one O per group. Returns (certificate PEM, private key PEM)."""
    ca, ca_key = load_signer(os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key"))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user),
                         *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups)])
    key = ec.generate_private_key(ec.SECP256R1())
    return _client_cert(subject, key.public_key(), ca, ca_key, validity), _key_pem(key)


def sign_client_certificate(request_pem: bytes, ca: x509.Certificate, ca_key, seconds: int) -> bytes:
    """A client certificate (PEM) for the subject and public key of a PKCS#10 request, valid for
    ``seconds`` (never past the CA), signed by the CA. Refuses a request whose own signature
    does not verify (the requester must hold the key)."""
    try:
        csr = x509.load_pem_x509_csr(request_pem)
    except ValueError as e:
        raise SigningError(f"the certificate request does not parse: {e}")
    if not csr.is_signature_valid:
        raise SigningError("the certificate request's signature does not verify")
    return _client_cert(csr.subject, csr.public_key(), ca, ca_key, dt.timedelta(seconds=seconds))


RENEW_BEFORE = dt.timedelta(days=30)


def _holds(cert_file: str, key_file: str, subject: x509.Name, ca: x509.Certificate) -> bool:
    """Whether ``cert_file`` is a certificate for ``subject`` that ``ca`` signed, with its key
    beside it, and more than RENEW_BEFORE left to run."""
    try:
        with open(cert_file, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        if not os.path.exists(key_file) or cert.subject != subject:
            return False
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > RENEW_BEFORE


def ensure_client_cert(ca_dir: str, cert_file: str, key_file: str, user: str,
                       groups: list[str] | tuple[str, ...] = ()) -> bool:
    """A client certificate (CN = user, O = each group) for one of the cluster's own
    components, written (key 0600) unless a valid one from this CA is already there; returns
    whether it wrote one. Servers sharing a CA each write their own (any of them is trusted)."""
    ca, _ = load_signer(os.path.join(ca_dir, "ca.crt"), os.path.join(ca_dir, "ca.key"))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user),
                         *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups)])
    if _holds(cert_file, key_file, subject, ca):
        return False
    cert, key = issue_client_cert(ca_dir, user, groups, VALIDITY)
    write_private(key_file, key)
    write_private(cert_file, cert, 0o644)
    return True
