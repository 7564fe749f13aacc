"""Ingress bodies shared by tests/unit/test_ingress.py and tests/integration/test_ingress.py."""
from __future__ import annotations

NS = "default"


def svc_backend(name: str = "web", port=80) -> dict:
    return {"service": {"name": name, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def path(p: str, t: str = "Prefix", backend: dict | None = None) -> dict:
    out = {"path": p, "pathType": t, "backend": svc_backend() if backend is None else backend}
    if p is None:
        del out["path"]
    return out


def ingress(name: str = "x", rules: list | None = None, **spec) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": NS},
            "spec": {**({"rules": rules} if rules is not None else {}), **spec}}
