"""A container's securityContext in each runtime's terms, and what a runtime refuses.

The `docker` runtime hands everything to the engine: the user (`User`), supplementary
groups (`GroupAdd`: supplementalGroups and fsGroup, as the kubelet adds the latter),
`ReadonlyRootfs`, `CapAdd`/`CapDrop`, `Privileged` and `no-new-privileges`.

The `process` runtime runs the command on the host. It honours, through util-linux
`setpriv` exec'd between the agent and the command, what a process can be given:
the user and group, the supplementary groups and dropped capabilities (root only: it
takes CAP_SETUID/SETGID/SETPCAP) and no_new_privs (anyone). What a host process cannot
have — a read-only root filesystem, added capabilities, privileged mode — is refused
with a message: the container waits in CreateContainerConfigError and the pod gets an
Event. Nothing in a securityContext is silently ignored.

`runAsNonRoot` is checked as the kubelet checks it: against runAsUser if set, else
the image's user (an image with no user runs as root; a user name cannot be verified).
"""
from __future__ import annotations

import os
import shutil
from typing import Any

from .base import SecurityContext

# Linux capabilities by number (linux/capability.h), as Kubernetes names them.
CAPABILITIES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT "
    "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
    "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ "
    "PERFMON BPF CHECKPOINT_RESTORE").split()


class SecurityRefused(Exception):
    """The container's securityContext cannot be honoured here (or breaks runAsNonRoot):
    it must not start. The message is for a person; the agent shows it as the waiting
    message with reason CreateContainerConfigError, and in a Failed Event."""


def cap_name(cap: str) -> str:
    """"CAP_NET_ADMIN", "net_admin", "NET_ADMIN" → "NET_ADMIN"."""
    name = cap.strip().upper()
    return name[4:] if name.startswith("CAP_") else name


def image_uid(user: str) -> int | str:
    """The uid an image's `USER` runs as: 0 when unset, the number when numeric, else
    the user name (which only the image's /etc/passwd could resolve)."""
    name = user.split(":", 1)[0].strip()
    if not name:
        return 0
    return int(name) if name.isdigit() else name


def verify_run_as_non_root(sc: SecurityContext, image_user: str | None) -> None:
    """Raise SecurityRefused if runAsNonRoot is set and the container would run as root
    (`image_user` None: the runtime has no image; its process's uid is runAsUser)."""
    if not sc.run_as_non_root:
        return
    if sc.run_as_user is not None:
        if sc.run_as_user == 0:
            raise SecurityRefused("container's runAsUser breaks non-root policy")
        return
    uid = image_uid(image_user or "")
    if isinstance(uid, str):
        raise SecurityRefused(f"container has runAsNonRoot and image has non-numeric user ({uid}), "
                              "cannot verify user is non-root")
    if uid == 0:
        raise SecurityRefused("container has runAsNonRoot and image will run as root")


# ---------------------------------------------------------------------------- engine

def engine_user(sc: SecurityContext, image_user: str) -> str | None:
    """The container's `User` ("uid[:gid]"), or None to keep the image's."""
    if sc.run_as_user is None and sc.run_as_group is None:
        return None
    user = str(sc.run_as_user) if sc.run_as_user is not None else (image_user.split(":", 1)[0] or "0")
    return f"{user}:{sc.run_as_group}" if sc.run_as_group is not None else user


def engine_settings(sc: SecurityContext, image_user: str = "") -> tuple[str | None, dict[str, Any]]:
    """(User, the HostConfig fields) that apply `sc` in a Docker Engine container."""
    host: dict[str, Any] = {}
    if sc.privileged:
        host["Privileged"] = True
    if sc.read_only_root_filesystem:
        host["ReadonlyRootfs"] = True
    if sc.capabilities_add:
        host["CapAdd"] = [cap_name(c) for c in sc.capabilities_add]
    if sc.capabilities_drop:
        host["CapDrop"] = [cap_name(c) for c in sc.capabilities_drop]
    if sc.allow_privilege_escalation is False:
        host["SecurityOpt"] = ["no-new-privileges"]
    groups = supplementary_groups(sc)
    if groups:
        host["GroupAdd"] = [str(g) for g in groups]
    return engine_user(sc, image_user), host


def supplementary_groups(sc: SecurityContext) -> list[int]:
    """supplementalGroups, then fsGroup (the kubelet adds it to every container's groups)."""
    out = list(sc.supplemental_groups)
    if sc.fs_group is not None and sc.fs_group not in out:
        out.append(sc.fs_group)
    return out


# ---------------------------------------------------------------------------- process

def process_refusals(sc: SecurityContext, euid: int) -> list[str]:
    """What a host process started by an agent running as `euid` cannot be given."""
    out = []
    if sc.read_only_root_filesystem:
        out.append("readOnlyRootFilesystem (a host process shares the node's root filesystem)")
    if sc.privileged:
        out.append("privileged (a host process has no container to make privileged)")
    if sc.capabilities_add:
        out.append(f"capabilities.add {sorted(cap_name(c) for c in sc.capabilities_add)} "
                   "(a host process cannot be given capabilities)")
    unknown = sorted({cap_name(c) for c in sc.capabilities_drop} - set(CAPABILITIES) - {"ALL"})
    if unknown:
        out.append(f"capabilities.drop names unknown capabilities {unknown}")
    if euid != 0:
        if sc.run_as_user is not None and sc.run_as_user != euid:
            out.append(f"runAsUser {sc.run_as_user} (the agent runs as uid {euid}, not root)")
        if sc.run_as_group is not None and sc.run_as_group != os.getegid():
            out.append(f"runAsGroup {sc.run_as_group} (the agent runs as uid {euid}, not root)")
        if supplementary_groups(sc):
            out.append("supplementalGroups/fsGroup (the agent is not root)")
        if sc.capabilities_drop:
            out.append("capabilities.drop (the agent is not root)")
    elif (sc.run_as_user is not None or sc.run_as_group is not None or supplementary_groups(sc)
          or sc.capabilities_drop or sc.allow_privilege_escalation is False) and shutil.which("setpriv") is None:
        out.append("runAsUser/runAsGroup/groups/capabilities/allowPrivilegeEscalation (util-linux setpriv "
                   "is not installed)")
    return out


def verify_process(sc: SecurityContext, euid: int) -> None:
    """Raise SecurityRefused naming everything the process runtime cannot honour."""
    refused = process_refusals(sc, euid)
    if refused:
        raise SecurityRefused("the process runtime cannot honour securityContext " + "; ".join(refused)
                              + ": run this pod with runtimeClassName: docker")
    verify_run_as_non_root(sc, None if sc.run_as_user is not None else str(euid))


def setpriv_argv(sc: SecurityContext, euid: int) -> list[str]:
    """The `setpriv … --` prefix that gives a host process `sc`; [] if nothing to change."""
    out: list[str] = []
    change_ids = False
    if sc.run_as_user is not None and sc.run_as_user != euid:
        out.append(f"--reuid={sc.run_as_user}")
        change_ids = True
    if sc.run_as_group is not None and sc.run_as_group != os.getegid():
        out.append(f"--regid={sc.run_as_group}")
        change_ids = True
    groups = supplementary_groups(sc)
    if groups:
        out.append("--groups=" + ",".join(str(g) for g in groups))
    elif change_ids:
        out.append("--clear-groups")
    drops = {cap_name(c) for c in sc.capabilities_drop}
    if drops:
        out.append("--bounding-set=" + ("-all" if "ALL" in drops
                                        else ",".join(f"-{c.lower()}" for c in sorted(drops))))
    if sc.allow_privilege_escalation is False:
        out.append("--no-new-privs")
    if not out:
        return []
    return [shutil.which("setpriv") or "setpriv", *out, "--"]
