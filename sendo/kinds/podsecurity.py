"""The Pod Security Standards: which pod settings the `baseline` and `restricted` levels
forbid, as Kubernetes defines them (policy version `latest`).

A namespace chooses levels with labels, `pod-security.kubernetes.io/<mode>: <level>`
for the modes enforce (a violating pod is refused), warn (the client is told) and audit
(recorded); `api/podsecurity.py` applies them. Here is only the judgement: each check
returns Kubernetes' short reason and the detail naming the containers at fault, which
the refusal lists as `reason (detail)`.
"""
from __future__ import annotations

from typing import Any, Callable

from .base import Cause

Obj = dict[str, Any]
LEVELS = ("privileged", "baseline", "restricted")
MODES = ("enforce", "warn", "audit")
LABEL = "pod-security.kubernetes.io/"

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: Obj) -> list[Obj]:
    return [c for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or [] if isinstance(c, dict)]


def _sc(obj: Obj) -> Obj:
    sc = obj.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _names(cs: list[Obj]) -> str:
    quoted = ", ".join(f'"{c.get("name", "")}"' for c in cs)
    return f"container {quoted}" if len(cs) == 1 else f"containers {quoted}"


Check = Callable[[Obj, Obj], "tuple[str, str] | None"]


# ----------------------------------------------------------------- baseline
def _host_namespaces(meta: Obj, spec: Obj):
    on = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    return ("host namespaces", ", ".join(on)) if on else None


def _privileged(meta: Obj, spec: Obj):
    bad = [c for c in _containers(spec) if _sc(c).get("privileged") is True]
    return ("privileged", f"{_names(bad)} must not set securityContext.privileged=true") if bad else None


def _capabilities_baseline(meta: Obj, spec: Obj):
    bad, added = [], set()
    for c in _containers(spec):
        extra = [a for a in ((_sc(c).get("capabilities") or {}).get("add") or []) if a not in BASELINE_CAPABILITIES]
        if extra:
            bad.append(c)
            added.update(extra)
    if not bad:
        return None
    listed = ", ".join(f'"{a}"' for a in sorted(added))
    return ("non-default capabilities", f"{_names(bad)} must not include {listed} in securityContext.capabilities.add")


def _host_path(meta: Obj, spec: Obj):
    vols = [v.get("name", "") for v in spec.get("volumes") or [] if isinstance(v, dict) and "hostPath" in v]
    return ("hostPath volumes", "volumes " + ", ".join(f'"{n}"' for n in vols)) if vols else None


def _host_ports(meta: Obj, spec: Obj):
    bad, ports = [], []
    for c in _containers(spec):
        hp = [p.get("hostPort") for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort")]
        if hp:
            bad.append(c)
            ports += hp
    return ("hostPort", f"{_names(bad)} uses hostPorts {', '.join(map(str, ports))}") if bad else None


def _seccomp_unconfined(meta: Obj, spec: Obj):
    bad = [c for c in _containers(spec) if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    pod = (_sc(spec).get("seccompProfile") or {}).get("type") == "Unconfined"
    if not bad and not pod:
        return None
    who = ["pod"] if pod else []
    if bad:
        who.append(_names(bad))
    return ("seccompProfile", f'{" and ".join(who)} must not set securityContext.seccompProfile.type to "Unconfined"')


def _selinux(meta: Obj, spec: Obj):
    def bad_opts(sc: Obj) -> bool:
        o = sc.get("seLinuxOptions") or {}
        return o.get("type", "") not in SELINUX_TYPES or bool(o.get("user")) or bool(o.get("role"))
    bad = [c for c in _containers(spec) if bad_opts(_sc(c))]
    if not bad and not bad_opts(_sc(spec)):
        return None
    return ("seLinuxOptions", "pod or containers must not set forbidden securityContext.seLinuxOptions")


def _proc_mount(meta: Obj, spec: Obj):
    bad = [c for c in _containers(spec) if _sc(c).get("procMount") not in (None, "Default")]
    return ("procMount", f'{_names(bad)} must not set securityContext.procMount to "Unmasked"') if bad else None


def _sysctls(meta: Obj, spec: Obj):
    bad = [s.get("name", "") for s in _sc(spec).get("sysctls") or [] if isinstance(s, dict)
           and s.get("name") not in SAFE_SYSCTLS]
    return ("forbidden sysctls", ", ".join(bad)) if bad else None


def _apparmor(meta: Obj, spec: Obj):
    def bad(profile: Obj) -> bool:
        return isinstance(profile, dict) and profile.get("type") == "Unconfined"
    if bad(_sc(spec).get("appArmorProfile") or {}) or any(bad(_sc(c).get("appArmorProfile") or {})
                                                          for c in _containers(spec)):
        return ("appArmorProfile", 'pod or containers must not set securityContext.appArmorProfile.type to '
                '"Unconfined"')
    return None


# ----------------------------------------------------------------- restricted
def _volume_types(meta: Obj, spec: Obj):
    bad = []
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            kinds = [k for k in v if k != "name"]
            if kinds and kinds[0] not in RESTRICTED_VOLUMES and kinds[0] != "hostPath":
                bad.append((v.get("name", ""), kinds[0]))
    if not bad:
        return None
    return ("restricted volume types", ", ".join(f'volume "{n}" uses restricted volume type "{k}"' for n, k in bad))


def _privilege_escalation(meta: Obj, spec: Obj):
    bad = [c for c in _containers(spec) if _sc(c).get("allowPrivilegeEscalation") is not False]
    return ("allowPrivilegeEscalation != false",
            f"{_names(bad)} must set securityContext.allowPrivilegeEscalation=false") if bad else None


def _capabilities_restricted(meta: Obj, spec: Obj):
    no_drop = [c for c in _containers(spec) if "ALL" not in ((_sc(c).get("capabilities") or {}).get("drop") or [])]
    adds = [c for c in _containers(spec) if any(a != "NET_BIND_SERVICE" for a in
                                                (_sc(c).get("capabilities") or {}).get("add") or [])]
    parts = []
    if no_drop:
        parts.append(f'{_names(no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adds:
        parts.append(f'{_names(adds)} must not include capabilities other than "NET_BIND_SERVICE" in '
                     'securityContext.capabilities.add')
    return ("unrestricted capabilities", "; ".join(parts)) if parts else None


def _run_as_non_root(meta: Obj, spec: Obj):
    pod = _sc(spec).get("runAsNonRoot")
    bad = [c for c in _containers(spec) if _sc(c).get("runAsNonRoot") is False
           or (_sc(c).get("runAsNonRoot") is None and pod is not True)]
    if not bad and pod is not False:
        return None
    return ("runAsNonRoot != true", f"pod or {_names(bad or _containers(spec))} must set "
            "securityContext.runAsNonRoot=true")


def _run_as_user(meta: Obj, spec: Obj):
    bad = [c for c in _containers(spec) if _sc(c).get("runAsUser") == 0]
    if _sc(spec).get("runAsUser") == 0:
        return ("runAsUser=0", "pod must not set runAsUser=0")
    return ("runAsUser=0", f"{_names(bad)} must not set runAsUser=0") if bad else None


def _seccomp_restricted(meta: Obj, spec: Obj):
    ok = ("RuntimeDefault", "Localhost")
    pod = (_sc(spec).get("seccompProfile") or {}).get("type")
    bad = [c for c in _containers(spec) if (_sc(c).get("seccompProfile") or {}).get("type") not in ok
           and not ((_sc(c).get("seccompProfile") or {}).get("type") is None and pod in ok)]
    if not bad:
        return None
    return ("seccompProfile", f'pod or {_names(bad)} must set securityContext.seccompProfile.type to '
            '"RuntimeDefault" or "Localhost"')


BASELINE: list[Check] = [_host_namespaces, _privileged, _capabilities_baseline, _host_path, _host_ports,
                         _apparmor, _selinux, _proc_mount, _seccomp_unconfined, _sysctls]
RESTRICTED: list[Check] = BASELINE + [_volume_types, _privilege_escalation, _run_as_non_root, _run_as_user,
                                      _seccomp_restricted, _capabilities_restricted]


def violations(meta: Obj, spec: Obj, level: str) -> list[str]:
    """`reason (detail)` for each rule of `level` the pod breaks (none for privileged)."""
    checks = {"baseline": BASELINE, "restricted": RESTRICTED}.get(level, [])
    out = []
    for check in checks:
        found = check(meta if isinstance(meta, dict) else {}, spec if isinstance(spec, dict) else {})
        if found:
            out.append(f"{found[0]} ({found[1]})")
    return out


def label_causes(labels: Obj) -> list[Cause]:
    """A namespace's pod-security labels must name a level (and a version, `latest` or v1.N)."""
    causes = []
    for mode in MODES:
        key = LABEL + mode
        if key in labels and labels[key] not in LEVELS:
            supported = ", ".join(f'"{lv}"' for lv in LEVELS)
            causes.append(Cause(f"metadata.labels[{key}]", f'Unsupported value: "{labels[key]}": supported '
                                f"values: {supported}", "FieldValueNotSupported"))
        ver = labels.get(key + "-version")
        if ver is not None and ver != "latest" and not (isinstance(ver, str) and ver.startswith("v1.")
                                                        and ver[3:].isdigit()):
            causes.append(Cause(f"metadata.labels[{key}-version]", f'Invalid value: "{ver}": must be "latest" or '
                                '"v1.<minor>"', "FieldValueInvalid"))
    return causes
