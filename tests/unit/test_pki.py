"""The serving certificate names every address the server listens on or is reached at; a
new one (another --host, --advertise-address or --tls-san) re-issues it from the same CA."""
from __future__ import annotations

from cryptography import x509

from sendo.pki import ensure_tls, serving_sans
from sendo.server import ServerConfig


def _issuer_ok(files) -> bool:
    ca = x509.load_pem_x509_certificate(open(files.ca_cert, "rb").read())
    cert = x509.load_pem_x509_certificate(open(files.cert, "rb").read())
    cert.verify_directly_issued_by(ca)
    return True


def test_serving_certificate_names_the_listen_addresses_and_grows_from_the_same_ca(tmp_path):
    d = str(tmp_path / "tls")
    first = ensure_tls(d, ["10.250.7.1"])
    sans = serving_sans(first.cert)
    assert {"10.250.7.1", "127.0.0.1", "localhost", "kubernetes.default.svc"} <= set(sans)
    ca_before, cert_before = open(first.ca_cert, "rb").read(), open(first.cert, "rb").read()

    again = ensure_tls(d, ["10.250.7.1", "0.0.0.0"])  # nothing new (a wildcard names no one): kept as is
    assert open(again.cert, "rb").read() == cert_before

    grown = ensure_tls(d, ["10.250.7.1", "node.example", "2001:db8::5"])
    assert open(grown.ca_cert, "rb").read() == ca_before  # kubeconfigs and agents keep trusting it
    assert {"10.250.7.1", "node.example", "2001:db8::5"} <= set(serving_sans(grown.cert))
    assert "0.0.0.0" not in serving_sans(grown.cert)
    assert _issuer_ok(grown)


def test_server_urls_local_and_advertised():
    cfg = ServerConfig(data_dir="/nonexistent", host="0.0.0.0", port=6443, advertise_address="10.250.7.1")
    assert cfg.url == "https://127.0.0.1:6443"  # clients on this machine
    assert cfg.advertise_url == "https://10.250.7.1:6443"  # the join command
    assert ServerConfig(data_dir="/x", host="10.250.7.1", port=7).advertise_url == "https://10.250.7.1:7"
    assert ServerConfig(data_dir="/x", host="::1", port=7).url == "https://[::1]:7"
