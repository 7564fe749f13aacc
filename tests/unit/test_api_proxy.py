"""The proxy subresources' parsing and choices (sendo/api/proxy.py)."""
from __future__ import annotations

import random

import pytest

from sendo.api import proxy
from sendo.api.errors import APIError


def test_split_keeps_the_relayed_path_as_sent():
    assert proxy.split("/api/v1/namespaces/ns/pods/web:80/proxy/a//b/") == (
        "/api/v1/namespaces/ns/pods/web:80/proxy", "/a//b/")
    assert proxy.split("/api/v1/nodes/n1/proxy") == ("/api/v1/nodes/n1/proxy", "")
    assert proxy.split("/api/v1/namespaces/ns/services/http:web:80/proxy/") == (
        "/api/v1/namespaces/ns/services/http:web:80/proxy", "/")
    for other in ("/api/v1/namespaces/ns/pods/web/log", "/api/v1/namespaces/ns/configmaps/x/proxy/",
                  "/api/v1/namespaces/ns/pods/web/proxyx", "/apis/apps/v1/namespaces/ns/pods/web/proxy/"):
        assert proxy.split(other) is None


@pytest.mark.parametrize("raw,want", [("web", ("", "web", "")), ("web:8080", ("", "web", "8080")),
                                      ("http:web:http", ("http", "web", "http")),
                                      ("https:web:443", ("https", "web", "443")), (":web:80", ("", "web", "80"))])
def test_split_id(raw, want):
    assert proxy.split_id(raw) == want


@pytest.mark.parametrize("raw", ["", ":80", "ftp:web:80", "a:b:c:d"])
def test_split_id_refuses(raw):
    with pytest.raises(APIError) as e:
        proxy.split_id(raw)
    assert e.value.code == 400


def test_pod_port():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a"}, {"name": "b", "ports": [{"name": "web", "containerPort": 8080}, {"containerPort": 9}]}]}}
    assert proxy.pod_port(pod, "") == 8080
    assert proxy.pod_port(pod, "web") == 8080
    assert proxy.pod_port(pod, "81") == 81
    assert proxy.pod_port({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}, "") == 80
    for bad in ("0", "65536", "other"):
        with pytest.raises(APIError) as e:
            proxy.pod_port(pod, bad)
        assert e.value.code == 400 and "invalid port" in e.value.message


def test_pick_endpoint_takes_a_ready_address_of_the_named_port():
    eps = {"subsets": [{"notReadyAddresses": [{"ip": "127.0.0.9"}], "ports": [{"name": "http", "port": 1}]},
                       {"addresses": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}],
                        "ports": [{"name": "metrics", "port": 9090}, {"name": "http", "port": 8080}]}]}
    seen = set()
    rng = random.Random(1)
    for _ in range(30):
        addr, port = proxy.pick_endpoint(eps, "http", "web", rng)
        assert port == 8080
        seen.add(addr["ip"])
    assert seen == {"127.0.0.2", "127.0.0.3"}  # spread over the ready addresses, never the unready one
    assert proxy.pick_endpoint(eps, "metrics", "web", rng)[1] == 9090
    for ports, name in ((eps, "other"), ({"subsets": []}, ""), ({}, "")):
        with pytest.raises(APIError) as e:
            proxy.pick_endpoint(ports, name, "web", rng)
        assert e.value.code == 503 and e.value.message == 'no endpoints available for service "web"'


def test_headers_drop_hop_by_hop_and_credentials():
    raw = [(b"Host", b"api:6443"), (b"Connection", b"keep-alive, X-Private"), (b"X-Private", b"1"),
           (b"Keep-Alive", b"5"), (b"Authorization", b"Bearer t"), (b"Impersonate-Group", b"g"),
           (b"Accept", b"text/plain"), (b"Transfer-Encoding", b"chunked"), (b"X-Forwarded-For", b"10.1.1.1")]
    out = proxy.relayed_headers(raw, "127.0.0.5:80", "127.0.0.1")
    assert out == [(b"Accept", b"text/plain"), (b"host", b"127.0.0.5:80"),
                   (b"x-forwarded-for", b"10.1.1.1, 127.0.0.1")]
    back = proxy.answered_headers([(b"Content-Type", b"text/html"), (b"Connection", b"close"),
                                   (b"Transfer-Encoding", b"chunked"), (b"Set-Cookie", b"a"), (b"Set-Cookie", b"b")])
    assert back == [(b"Content-Type", b"text/html"), (b"Set-Cookie", b"a"), (b"Set-Cookie", b"b")]
