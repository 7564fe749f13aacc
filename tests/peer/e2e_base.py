"""sendo's stand-in for the `e2e_test/base.py` the clients' own end-to-end tests import
(their sdists do not ship it). The peer runner copies this file to
`<package>/e2e_test/base.py` beside the extracted tests, where it sees which client it
serves by its module name.

`get_e2e_configuration()` is a client Configuration for the `sendo up` the runner
started, read from `$KUBECONFIG` with that client's own loader. Unlike the upstream
helper it never skips: no cluster is an error.
"""
import asyncio
import os


def _kubeconfig() -> str:
    path = os.environ.get("KUBECONFIG")
    if not path or not os.path.exists(path):
        raise RuntimeError(f"KUBECONFIG={path!r}: the peer runner must point it at a running sendo")
    return path


def get_e2e_configuration():
    path = _kubeconfig()
    if __name__.startswith("kubernetes_asyncio."):
        from kubernetes_asyncio import client, config
        cfg = client.Configuration()
        asyncio.run(config.load_kube_config(config_file=path, client_configuration=cfg))
    elif __name__.startswith("kubernetes.aio."):
        from kubernetes.aio import client, config
        cfg = client.Configuration()
        asyncio.run(config.load_kube_config(config_file=path, client_configuration=cfg))
    else:
        from kubernetes import client, config
        cfg = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=cfg)
    return cfg
