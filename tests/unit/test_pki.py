"""The serving certificate names every address the server listens on or is reached at; a
new one (another --host, --advertise-address or --tls-san) re-issues it from the same CA."""
from __future__ import annotations

import ssl

from cryptography import x509

from sendo.cli.main import _join_error
from sendo.pki import client_context, ensure_tls, serving_sans
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


def _handshake_error(files, name: str) -> ssl.SSLError | None:
    """A TLS handshake in memory (no socket) of a client that trusts the CA and asks for `name`."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.cert, files.key)
    client_ctx = client_context(files.ca_pem())
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=name)
    srv = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for end in (client, srv):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as e:
                if end is client:
                    return e
                raise
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    return None


def test_a_join_to_an_address_the_certificate_does_not_name_says_which_flag_fixes_it(tmp_path):
    files = ensure_tls(str(tmp_path / "tls"), ["10.250.7.1"])
    assert _handshake_error(files, "10.250.7.1") is None
    e = _handshake_error(files, "10.250.9.9")
    assert isinstance(e, ssl.SSLCertVerificationError)
    msg = _join_error(e, "https://10.250.9.9:6443")
    assert msg and "does not name 10.250.9.9" in msg and "--tls-san 10.250.9.9" in msg and "\n" not in msg
    # a CA that is not the server's is another cause, with its own advice
    other = ensure_tls(str(tmp_path / "other"), ["10.250.7.1"])
    files.ca_pem = other.ca_pem  # type: ignore[method-assign]
    e = _handshake_error(files, "10.250.7.1")
    assert isinstance(e, ssl.SSLCertVerificationError)
    assert "pass its CA certificate with --ca-cert" in (_join_error(e, "https://10.250.7.1:6443") or "")
