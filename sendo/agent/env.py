"""A container's environment: declared env, envFrom, downward API, $(VAR) expansion.

Follows Kubernetes: entries are resolved in order, `$(NAME)` expands to a variable
defined earlier (or in envFrom), `$$` escapes, unknown references stay as written.
"""
from __future__ import annotations

import base64
import re
from typing import Any, Awaitable, Callable

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Awaitable[Obj | None]]  # (kind, namespace, name) -> object

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _REF.sub(sub, text)


def field_ref(pod: Obj, path: str) -> str:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"),
              "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
              "status.podIPs": ",".join(i.get("ip", "") for i in status.get("podIPs") or []),
              "status.hostIPs": ",".join(i.get("ip", "") for i in status.get("hostIPs") or [])}
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef path {path!r}")
    return simple[path] or ""


def _data(obj: Obj, kind: str) -> dict[str, str]:
    if kind == "secrets":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


async def build_env(pod: Obj, container: Obj, base: dict[str, str], lookup: Lookup) -> dict[str, str]:
    ns = pod["metadata"]["namespace"]
    env = dict(base)
    cache: dict[tuple[str, str], Obj | None] = {}

    async def source(kind: str, name: str, optional: bool) -> dict[str, str] | None:
        if (kind, name) not in cache:
            cache[(kind, name)] = await lookup(kind, ns, name)
        obj = cache[(kind, name)]
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind[:-1] if kind == "secrets" else "configmap"} "{name}" not found')
        return _data(obj, kind)

    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = ef.get(key)
            if ref:
                data = await source(kind, ref.get("name", ""), bool(ref.get("optional")))
                for k, v in (data or {}).items():
                    env[prefix + k] = v
    for e in container.get("env") or []:
        name = e.get("name")
        if "value" in e or "valueFrom" not in e:
            env[name] = expand(e.get("value") or "", env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"].get("fieldPath", ""))
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            kind, ref = ("configmaps", vf["configMapKeyRef"]) if "configMapKeyRef" in vf \
                else ("secrets", vf["secretKeyRef"])
            data = await source(kind, ref.get("name", ""), bool(ref.get("optional")))
            if data is None:
                continue
            if ref.get("key") not in data:
                if ref.get("optional"):
                    continue
                what = "secret" if kind == "secrets" else "configmap"
                raise ConfigError(f"couldn't find key {ref.get('key')} in {what} {ns}/{ref.get('name')}")
            env[name] = data[ref["key"]]
        elif "resourceFieldRef" in vf:
            res = vf["resourceFieldRef"].get("resource", "")
            kind_, _, what = res.partition(".")
            env[name] = str(((container.get("resources") or {}).get(kind_) or {}).get(what, "0"))
    return env


def command_line(container: Obj, env: dict[str, str]) -> list[str]:
    """command + args with $(VAR) expanded; without a command, args are the command line
    (the process runtime has no image entrypoint to fall back to)."""
    cmd = [expand(c, env) for c in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    return cmd + args


def service_links(namespace: str, services: list[Obj]) -> dict[str, str]:
    """Docker-link style variables for the Services of the pod's namespace that exist when
    it starts (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`, `<NAME>_PORT_<p>_TCP`, …), as
    Kubernetes sets them when `enableServiceLinks` is on."""
    env: dict[str, str] = {}
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if meta.get("namespace") != namespace or not ip or ip == "None" or not spec.get("ports"):
            continue
        name = meta["name"].upper().replace("-", "_")
        ports = spec["ports"]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        first = ports[0]
        env[f"{name}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for p in ports:
            proto = p.get("protocol", "TCP")
            prefix = f"{name}_PORT_{p['port']}_{proto}"
            env[prefix] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(p["port"])
            env[f"{prefix}_ADDR"] = ip
    return env
