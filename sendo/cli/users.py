"""`sendo user add NAME [--group G …] [--namespace NS --role ROLE]`: a kubeconfig for a
person or a tool, with a client certificate the cluster CA signs (CN = NAME, O = each
group). Run it where the server's data directory is (it holds the CA key). The user can
do nothing until a RoleBinding or ClusterRoleBinding grants them something; ``--role``
makes that RoleBinding at once (the ClusterRole ROLE in namespace NS, through the API as
the admin)."""
from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Optional

import typer
import yaml
from rich.console import Console

app = typer.Typer(help="Users: client certificates and kubeconfigs.", no_args_is_help=True)
console = Console(stderr=True, highlight=False)
NAME = re.compile(r"^[^\s/\\]{1,64}$")  # a certificate name attribute holds 64 characters at most


def user_kubeconfig(url: str, ca_pem: bytes, user: str, cert_pem: bytes, key_pem: bytes,
                    namespace: str = "default", cluster: str = "sendo") -> dict:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()
    context = f"{user}@{cluster}"
    return {"apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": cluster, "cluster": {"server": url, "certificate-authority-data": b64(ca_pem)}}],
            "users": [{"name": user, "user": {"client-certificate-data": b64(cert_pem),
                                              "client-key-data": b64(key_pem)}}],
            "contexts": [{"name": context, "context": {"cluster": cluster, "user": user, "namespace": namespace}}],
            "preferences": {}}


def _server_url(data_dir: str) -> str:
    try:
        with open(os.path.join(data_dir, "kubeconfig")) as f:
            return yaml.safe_load(f)["clusters"][0]["cluster"]["server"]
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        console.print(f"[red]error:[/] no cluster kubeconfig in {data_dir}: pass --server URL")
        raise typer.Exit(2)


@app.command("add")
def add(name: str = typer.Argument(..., help="The user name (the certificate's CN)."),
        group: Optional[list[str]] = typer.Option(None, "--group", "-g", help="A group the user is in (the "
                                                  "certificate's O); repeat for several."),
        data_dir: str = typer.Option(os.environ.get("SENDO_DATA_DIR") or str(Path.home() / ".sendo"),
                                     help="The server's data directory (holds the cluster CA)."),
        server: Optional[str] = typer.Option(None, help="API server URL (default: the cluster kubeconfig's)."),
        namespace: str = typer.Option("default", help="The kubeconfig's default namespace (and the namespace "
                                      "--role grants in)."),
        role: Optional[str] = typer.Option(None, help="Bind NAME to this ClusterRole (admin, edit, view, or "
                                           "one of yours) in --namespace only: a RoleBinding NAME-ROLE there."),
        days: int = typer.Option(365, min=1, max=3650, help="Days the certificate is valid."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the kubeconfig "
                                              "(default: DATA_DIR/users/NAME.kubeconfig).")) -> None:
    """Write a kubeconfig (0600) for NAME with a client certificate the cluster CA signs."""
    import datetime as dt

    from ..pki import issue_client_cert
    from ..private import private_dir, write_private

    groups = list(group or [])
    for value, what in [(name, "user name"), *((g, "group") for g in groups)]:
        if not NAME.match(value) or value.startswith("system:"):
            console.print(f"[red]error:[/] {what} {value!r}: must be 1-64 characters without spaces or "
                          "slashes, and not start with system: (reserved for the cluster's own identities)")
            raise typer.Exit(2)
    tls_dir = os.path.join(data_dir, "server", "tls")
    if not os.path.exists(os.path.join(tls_dir, "ca.key")):
        console.print(f"[red]error:[/] no cluster CA in {tls_dir}: run this where the server's data directory is")
        raise typer.Exit(2)
    url = server or _server_url(data_dir)
    if role is not None:
        bind(data_dir, name, namespace, role)
    cert, key = issue_client_cert(tls_dir, name, groups, dt.timedelta(days=days))
    with open(os.path.join(tls_dir, "ca.crt"), "rb") as f:
        ca = f.read()
    if output is None:
        output = Path(private_dir(os.path.join(data_dir, "users"))) / f"{name}.kubeconfig"
    data = yaml.safe_dump(user_kubeconfig(url, ca, name, cert, key, namespace), sort_keys=False).encode()
    write_private(str(output), data)  # 0600, replaced atomically
    print(output)
    if role is None:
        console.print(f"{name} can do nothing until bound, e.g.:\n  kubectl create rolebinding {name}-edit "
                      f"--clusterrole=edit --user={name} -n {namespace}\nThen: KUBECONFIG={output} kubectl auth whoami")
    else:
        console.print(f"{name} holds the ClusterRole {role} in namespace {namespace} (RoleBinding {name}-{role}) "
                      f"and nothing elsewhere.\nThen: KUBECONFIG={output} kubectl auth can-i --list")


def binding(user: str, namespace: str, role: str) -> dict:
    """The RoleBinding that gives ``user`` the ClusterRole ``role`` in ``namespace`` only."""
    group = "rbac.authorization.k8s.io"
    return {"apiVersion": f"{group}/v1", "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{role}", "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "sendo-user-add"}},
            "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": group, "kind": "User", "name": user}]}


def bind(data_dir: str, user: str, namespace: str, role: str) -> None:
    """Create the RoleBinding (as the cluster admin, DATA_DIR/kubeconfig), refusing a role or
    namespace that does not exist and an existing binding of that name to another role."""
    from ..client import kind
    from .addons import _call

    want = binding(user, namespace, role)

    async def work(c):
        if await c.get_or_none(kind("clusterroles", "rbac.authorization.k8s.io"), None, role) is None:
            return f"no ClusterRole {role!r} (kubectl get clusterroles)"
        if await c.get_or_none(kind("namespaces"), None, namespace) is None:
            return f"no namespace {namespace!r}: kubectl create namespace {namespace}"
        bindings = kind("rolebindings", "rbac.authorization.k8s.io")
        have = await c.get_or_none(bindings, namespace, want["metadata"]["name"])
        if have is None:
            await c.create(bindings, want, namespace)
        elif have.get("roleRef") != want["roleRef"] or want["subjects"][0] not in (have.get("subjects") or []):
            return f"RoleBinding {namespace}/{want['metadata']['name']} exists and grants something else"
        return None
    problem = _call(data_dir, None, work)
    if problem:
        console.print(f"[red]error:[/] {problem}")
        raise typer.Exit(2)
