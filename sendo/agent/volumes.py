"""A pod's volumes on this node: their directories, their content, kept up to date.

`VolumeManager.setup(pod, pod_dir)` (called by the `volumes` pod prestart hook) makes
every volume of the pod exist on the node and answers where each one is:

* emptyDir: `<pod dir>/volumes/<name>`; with `medium: Memory` a tmpfs mounted there
  when the agent is root (size = `sizeLimit`), a plain directory otherwise (Event).
  A `sizeLimit` is checked every few seconds; a pod over it is evicted, as the
  kubelet's eviction manager does.
* configMap, secret, downwardAPI, projected: files under `<pod dir>/volumes/<name>`,
  written by `atomic.write` (the kubelet's `..data` layout) and written again whenever
  the ConfigMap, Secret or pod (labels, annotations) changes, or a projected token is
  due for renewal. Each ConfigMap, Secret and claim a pod uses is watched on its own
  (a list/watch selecting it by name, as the kubelet's watch strategy does: the node
  authorizer lets a node read only what its pods use), from the first pod that needs
  it until the last one is gone. PersistentVolumes come from one informer.
* hostPath: the path itself, after the `type` check (DirectoryOrCreate makes it).
* persistentVolumeClaim: the bound PersistentVolume's hostPath or local path; until the
  claim is bound the pod waits (its containers show why).

Containers see each volume at their `mountPath` (`prestart/volumes.py`). A deleted
local-path volume (`sendo.io/local-path`, reclaim policy Delete) is removed from disk by
the agent of its node, which then lets the PersistentVolume go (finalizer).
"""
from __future__ import annotations

import asyncio
import base64
import logging
import math
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..client import ApiError, Client, Informer, kind
from ..client.factory import InformerFactory
from ..kinds.quantity import parse_bytes, parse_quantity
from ..kinds.storage import (CLEANUP_FINALIZER, LOCAL_PATH_NODE_ANNOTATION, LOCAL_PATH_PROVISIONER,
                             PROVISIONED_BY_ANNOTATION, pv_storage_path)
from ..tasks import stop_tasks
from . import atomic

log = logging.getLogger(__name__)
Obj = dict[str, Any]

VOLUMES_DIR = "volumes"
SWEEP_EVERY = 1.0  # token renewals
SIZE_CHECK_EVERY = 3.0  # emptyDir sizeLimit checks
TOKEN_EXPIRATION = 3600
TOKEN_REFRESH_AT = 0.8
CONTENT_SOURCES = ("configMap", "secret", "downwardAPI", "projected")
WATCH_SYNC_TIMEOUT = 30.0  # for the first list of a newly watched ConfigMap, Secret or claim
Ref = tuple[str, str, str]  # (plural, namespace, name)


class VolumeError(Exception):
    """A volume cannot be set up now (missing ConfigMap, unbound claim, failed hostPath
    check). The message is for a person; the pod waits and tries again."""


@dataclass
class Volume:
    name: str
    path: str  # on the node
    read_only: bool = False  # the source forces it (content volumes, readOnly claims)
    content: bool = False  # written by this manager, updated in place
    size_limit: int | None = None  # emptyDir


@dataclass
class _Pod:
    pod: Obj
    pod_dir: str
    volumes: dict[str, Volume] = field(default_factory=dict)
    tokens: dict[tuple[str, int], tuple[str, float]] = field(default_factory=dict)  # (vol, idx) -> token, refresh
    evicted: bool = False

    @property
    def ns(self) -> str:
        return self.pod["metadata"]["namespace"]


def _refs(pod: Obj) -> set[Ref]:
    """(plural, namespace, name) of every ConfigMap, Secret and claim the pod's volumes read."""
    ns = pod["metadata"].get("namespace", "")
    out: set[Ref] = set()
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("configMap"):
            out.add(("configmaps", ns, v["configMap"].get("name", "")))
        if v.get("secret"):
            out.add(("secrets", ns, v["secret"].get("secretName", "")))
        if v.get("persistentVolumeClaim"):
            out.add(("persistentvolumeclaims", ns, v["persistentVolumeClaim"].get("claimName", "")))
        for s in (v.get("projected") or {}).get("sources") or []:
            if s.get("configMap"):
                out.add(("configmaps", ns, s["configMap"].get("name", "")))
            if s.get("secret"):
                out.add(("secrets", ns, s["secret"].get("name", "")))
    return out


def _object_data(obj: Obj, plural: str) -> dict[str, bytes]:
    if plural == "secrets":
        return {k: base64.b64decode(v or "") for k, v in (obj.get("data") or {}).items()}
    out = {k: (v or "").encode() for k, v in (obj.get("data") or {}).items()}
    out.update({k: base64.b64decode(v or "") for k, v in (obj.get("binaryData") or {}).items()})
    return out


def _format_map(m: dict) -> bytes:
    return "\n".join(f'{k}="{v}"' for k, v in sorted((m or {}).items())).encode()


def downward_value(pod: Obj, item: Obj, node_allocatable: dict[str, str]) -> bytes:
    """One downward API file: a fieldRef of the pod's metadata, or a container's resource."""
    meta = pod.get("metadata") or {}
    if item.get("fieldRef"):
        fp = item["fieldRef"].get("fieldPath", "")
        if fp in ("metadata.labels", "metadata.annotations"):
            return _format_map(meta.get(fp.split(".")[1]) or {})
        for which in ("labels", "annotations"):
            pre = f"metadata.{which}['"
            if fp.startswith(pre) and fp.endswith("']"):
                return str((meta.get(which) or {}).get(fp[len(pre):-2], "")).encode()
        simple = {"metadata.name": "name", "metadata.namespace": "namespace", "metadata.uid": "uid"}
        if fp in simple:
            return str(meta.get(simple[fp], "")).encode()
        raise VolumeError(f"unsupported fieldPath {fp!r}")
    ref = item.get("resourceFieldRef") or {}
    res = ref.get("resource", "")
    containers = (pod.get("spec") or {}).get("containers") or []
    c = next((c for c in containers if c.get("name") == ref.get("containerName")), None)
    if c is None:
        if ref.get("containerName") or len(containers) != 1:
            raise VolumeError(f"resourceFieldRef: container {ref.get('containerName')!r} not found")
        c = containers[0]
    section, _, what = res.partition(".")
    raw = ((c.get("resources") or {}).get(section) or {}).get(what)
    if raw is None:
        raw = node_allocatable.get(what) if section == "limits" else "0"
    value = parse_quantity(raw or "0")
    divisor = parse_quantity(ref.get("divisor") or "1") or 1
    return str(math.ceil(value / divisor)).encode()


def _du(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


def host_path_check(path: str, typ: str) -> None:
    """The kubelet's hostPath `type` checks; DirectoryOrCreate / FileOrCreate create it."""
    if typ == "DirectoryOrCreate":
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif typ == "FileOrCreate" and not os.path.exists(path):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        except OSError as e:
            raise VolumeError(f"hostPath type check failed: cannot create file {path}: {e.strerror}") from e
    try:
        mode = os.stat(path).st_mode
    except OSError:
        if typ:
            raise VolumeError(f"hostPath type check failed: {path} does not exist") from None
        os.makedirs(path, exist_ok=True)  # no type: the kubelet's runtimes create a missing directory
        return
    checks = {"Directory": (stat.S_ISDIR, "a directory"), "DirectoryOrCreate": (stat.S_ISDIR, "a directory"),
              "File": (stat.S_ISREG, "a file"), "FileOrCreate": (stat.S_ISREG, "a file"),
              "Socket": (stat.S_ISSOCK, "a socket file"), "CharDevice": (stat.S_ISCHR, "a character device"),
              "BlockDevice": (stat.S_ISBLK, "a block device")}
    if typ in checks and not checks[typ][0](mode):
        raise VolumeError(f"hostPath type check failed: {path} is not {checks[typ][1]}")


def _mounted(path: str) -> bool:
    return os.path.ismount(path)


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode:
        raise VolumeError(f"{' '.join(argv)}: {err.decode(errors='replace').strip()}")


async def unmount_all(root: str) -> None:
    """Unmount what was mounted under `root` on the host (tmpfs emptyDirs), deepest first."""
    real = os.path.realpath(root) + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return
    for p in sorted((p for p in points if p.startswith(real)), key=len, reverse=True):
        try:
            await _run("umount", "-l", p)
        except (VolumeError, OSError) as e:
            log.warning("cannot unmount %s: %s", p, e)


class VolumeManager:
    """The volumes of the pods on one node. `on_change(uid)` is called when something a
    waiting pod needs appeared; `evict(uid, reason, message)` when a pod must go."""

    def __init__(self, client: Client, informers: InformerFactory, node_name: str, storage_dir: str,
                 on_change: Callable[[str], None], evict: Callable[[str, str], None],
                 event: Callable[[Obj, str, str, str], None], allocatable: Callable[[], dict[str, str]]):
        self.client, self.informers, self.node_name = client, informers, node_name
        self.storage_dir = storage_dir
        self.on_change, self.evict, self.event, self.allocatable = on_change, evict, event, allocatable
        self.pods: dict[str, _Pod] = {}
        self._pvs: Informer | None = None
        self._watches: dict[Ref, Informer] = {}  # one per ConfigMap, Secret and claim in use
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.root = os.geteuid() == 0

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._pvs = self.informers.get(kind("persistentvolumes"))
        self._pvs.add_handler(self._on_pv)
        self._pvs.add_handler(lambda t, o, old: self._claims_changed())
        await self.informers.start(self._pvs)
        for pv in self._pvs.list():
            self._on_pv("ADDED", pv, None)
        self._tasks = [asyncio.create_task(self._writer(), name="volume-writer"),
                       asyncio.create_task(self._sweep(), name="volume-sweep")]

    async def close(self) -> None:
        await stop_tasks(self._tasks, "volume manager")
        watches, self._watches = list(self._watches.values()), {}
        for inf in watches:
            await inf.stop()

    async def _object(self, ref: Ref) -> Obj | None:
        """The ConfigMap, Secret or claim, from its own watch (started on first use)."""
        plural, ns, name = ref
        inf = self._watches.get(ref)
        if inf is None:
            inf = self._watches[ref] = Informer(self.client, kind(plural), ns, field_selector=f"metadata.name={name}")
            if plural == "persistentvolumeclaims":
                inf.add_handler(lambda t, o, old: self._claims_changed())
            else:
                inf.add_handler(lambda t, o, old, p=plural: self._object_changed(p, o))
            inf.start()
        try:
            await asyncio.wait_for(asyncio.shield(inf.synced.wait()), WATCH_SYNC_TIMEOUT)
        except TimeoutError:
            raise VolumeError(f"cannot read {plural[:-1]} {ns}/{name}: its list did not answer in "
                              f"{WATCH_SYNC_TIMEOUT:.0f}s (see the agent's log)") from None
        return inf.get(f"{ns}/{name}")

    def forget(self, uid: str) -> None:
        self.pods.pop(uid, None)
        used = set().union(*(_refs(e.pod) for e in self.pods.values()))
        for ref in [r for r in self._watches if r not in used]:
            inf = self._watches.pop(ref)
            t = asyncio.get_running_loop().create_task(inf.stop(), name=f"unwatch-{ref[0]}-{ref[2]}")
            self._tasks.append(t)
            t.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # ----------------------------------------------------------------- setup
    async def setup(self, pod: Obj, pod_dir: str) -> dict[str, Volume]:
        uid = pod["metadata"]["uid"]
        entry = self.pods.get(uid) or _Pod(pod, pod_dir)
        entry.pod = pod
        self.pods[uid] = entry
        volumes: dict[str, Volume] = {}
        for v in (pod.get("spec") or {}).get("volumes") or []:
            name = v.get("name", "")
            try:
                volumes[name] = await self._setup_one(entry, v)
            except VolumeError as e:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
            except OSError as e:
                raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {e.strerror or e}') from None
        entry.volumes = volumes
        return volumes

    async def _setup_one(self, entry: _Pod, v: Obj) -> Volume:
        name = v["name"]
        own = os.path.join(entry.pod_dir, VOLUMES_DIR, name)
        if v.get("emptyDir") is not None:
            ed = v["emptyDir"] or {}
            limit = parse_bytes(ed["sizeLimit"]) if ed.get("sizeLimit") is not None else None
            os.makedirs(own, mode=0o777, exist_ok=True)
            os.chmod(own, 0o777)  # the kubelet's emptyDir is world-writable
            if ed.get("medium") == "Memory":
                if self.root:
                    if not _mounted(own):
                        opts = "mode=1777" + (f",size={limit}" if limit else "")
                        await _run("mount", "-t", "tmpfs", "-o", opts, "tmpfs", own)
                else:
                    self.event(entry.pod, "Warning", "VolumeNotMemoryBacked",
                               f'emptyDir "{name}" asks for medium Memory, but the agent is not root: '
                               f"it is a directory on disk ({own})")
            return Volume(name, own, size_limit=limit)
        if any(v.get(k) is not None for k in CONTENT_SOURCES):
            await self._write_content(entry, v, own)
            return Volume(name, own, read_only=True, content=True)
        if v.get("hostPath") is not None:
            hp = v["hostPath"]
            await asyncio.to_thread(host_path_check, hp.get("path", ""), hp.get("type") or "")
            return Volume(name, hp["path"])
        if v.get("persistentVolumeClaim") is not None:
            return await self._claim(entry, v)
        src = next((k for k in v if k != "name"), "?")
        raise VolumeError(f"volume type {src!r} is not supported by sendo")

    async def _claim(self, entry: _Pod, v: Obj) -> Volume:
        src = v["persistentVolumeClaim"]
        claim = src.get("claimName", "")
        pvc = await self._object(("persistentvolumeclaims", entry.ns, claim))
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        if pvc["metadata"].get("deletionTimestamp"):
            raise VolumeError(f'persistentvolumeclaim "{claim}" is being deleted')
        volume = (pvc.get("spec") or {}).get("volumeName")
        if (pvc.get("status") or {}).get("phase") != "Bound" or not volume:
            raise VolumeError(f'waiting for persistentvolumeclaim "{claim}" to be bound')
        pv = self._pvs.get(volume) if self._pvs is not None else None
        if pv is None:
            raise VolumeError(f'persistentvolume "{volume}" of claim "{claim}" not found')
        path = pv_storage_path(pv)
        if path is None:
            raise VolumeError(f'persistentvolume "{volume}" has no hostPath or local path: sendo cannot mount it')
        ann = pv["metadata"].get("annotations") or {}
        if ann.get(PROVISIONED_BY_ANNOTATION) == LOCAL_PATH_PROVISIONER:
            os.makedirs(path, mode=0o777, exist_ok=True)
            os.chmod(path, 0o777)
        else:
            typ = ((pv.get("spec") or {}).get("hostPath") or {}).get("type") or ""
            await asyncio.to_thread(host_path_check, path, typ or ("Directory" if "local" in pv["spec"] else ""))
        return Volume(v["name"], path, read_only=bool(src.get("readOnly")))

    # ----------------------------------------------------------------- content
    async def _payload(self, entry: _Pod, v: Obj) -> atomic.Payload:
        if v.get("configMap") is not None:
            return await self._object_files("configmaps", entry, v["configMap"], "name", v["configMap"])
        if v.get("secret") is not None:
            return await self._object_files("secrets", entry, v["secret"], "secretName", v["secret"])
        if v.get("downwardAPI") is not None:
            return self._downward_files(entry, v["downwardAPI"], v["downwardAPI"].get("defaultMode", 0o644))
        out: atomic.Payload = {}
        proj = v["projected"] or {}
        default = proj.get("defaultMode", 0o644)
        for i, s in enumerate(proj.get("sources") or []):
            if s.get("configMap") is not None:
                out.update(await self._object_files("configmaps", entry, s["configMap"], "name", proj))
            elif s.get("secret") is not None:
                out.update(await self._object_files("secrets", entry, s["secret"], "name", proj))
            elif s.get("downwardAPI") is not None:
                out.update(self._downward_files(entry, s["downwardAPI"], default))
            elif s.get("serviceAccountToken") is not None:
                tok = s["serviceAccountToken"]
                out[tok.get("path", "token")] = ((await self._token(entry, v["name"], i, tok)).encode(),
                                                 default if proj.get("defaultMode") is not None else 0o600)
        return out

    async def _object_files(self, plural: str, entry: _Pod, src: Obj, name_key: str, modes: Obj) -> atomic.Payload:
        name = src.get(name_key, "")
        obj = await self._object((plural, entry.ns, name))
        what = "secret" if plural == "secrets" else "configmap"
        optional = bool(src.get("optional"))
        if obj is None:
            if optional:
                return {}
            raise VolumeError(f'{what} "{name}" not found')
        data = _object_data(obj, plural)
        default = modes.get("defaultMode", 0o644) if modes.get("defaultMode") is not None else 0o644
        items = src.get("items")
        if not items:
            return {k: (b, default) for k, b in data.items()}
        out: atomic.Payload = {}
        for it in items:
            key = it.get("key", "")
            if key not in data:
                if optional:
                    continue
                raise VolumeError(f"configmap references non-existent config key: {key}" if what == "configmap"
                                  else f"references non-existent secret key: {key}")
            out[it.get("path") or key] = (data[key], it["mode"] if it.get("mode") is not None else default)
        return out

    def _downward_files(self, entry: _Pod, src: Obj, default: int) -> atomic.Payload:
        out: atomic.Payload = {}
        for it in src.get("items") or []:
            mode = it["mode"] if it.get("mode") is not None else default
            out[it.get("path", "")] = (downward_value(entry.pod, it, self.allocatable()), mode)
        return out

    async def _token(self, entry: _Pod, vol: str, idx: int, src: Obj) -> str:
        have = entry.tokens.get((vol, idx))
        if have is not None and time.time() < have[1]:
            return have[0]
        meta, spec = entry.pod["metadata"], entry.pod.get("spec") or {}
        account = spec.get("serviceAccountName") or "default"
        exp = int(src.get("expirationSeconds") or TOKEN_EXPIRATION)
        body: Obj = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                     "spec": {"expirationSeconds": exp,
                              "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                                 "uid": meta["uid"]}}}
        if src.get("audience"):
            body["spec"]["audiences"] = [src["audience"]]
        asked = time.time()
        try:
            tr = await self.client.request("POST", f"/api/v1/namespaces/{entry.ns}/serviceaccounts/{account}/token",
                                           body=body)
        except ApiError as e:
            raise VolumeError(f"cannot get a token of serviceaccount {entry.ns}/{account}: "
                              f"{e.body.get('message', e)}") from e
        token = (tr.get("status") or {}).get("token") or ""
        entry.tokens[(vol, idx)] = (token, asked + TOKEN_REFRESH_AT * exp)
        return token

    async def _write_content(self, entry: _Pod, v: Obj, target: str) -> None:
        payload = await self._payload(entry, v)
        await asyncio.to_thread(atomic.write, target, payload)

    # ----------------------------------------------------------------- updates
    def _object_changed(self, plural: str, obj: Obj) -> None:
        ns, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
        for uid, entry in self.pods.items():
            if (plural, ns, name) in _refs(entry.pod):
                self._mark(uid)

    def _claims_changed(self) -> None:
        for uid, entry in self.pods.items():
            if not entry.volumes and any(v.get("persistentVolumeClaim")
                                         for v in (entry.pod.get("spec") or {}).get("volumes") or []):
                self.on_change(uid)

    def pod_changed(self, pod: Obj) -> None:
        """The pod object changed: downward API files follow its labels and annotations."""
        entry = self.pods.get(pod["metadata"]["uid"])
        if entry is None:
            return
        old = entry.pod["metadata"]
        entry.pod = pod
        if (old.get("labels"), old.get("annotations")) != (pod["metadata"].get("labels"),
                                                            pod["metadata"].get("annotations")):
            self._mark(pod["metadata"]["uid"])

    def _mark(self, uid: str) -> None:
        entry = self.pods.get(uid)
        if entry is None:
            return
        if not entry.volumes:
            self.on_change(uid)  # still being set up: what it waited for may be here now
            return
        self._dirty.add(uid)
        self._wake.set()

    async def _writer(self) -> None:
        """Rewrite the content volumes of changed pods (subPath mounts keep their file)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                uid = self._dirty.pop()
                entry = self.pods.get(uid)
                if entry is None:
                    continue
                for v in (entry.pod.get("spec") or {}).get("volumes") or []:
                    vol = entry.volumes.get(v.get("name", ""))
                    if vol is None or not vol.content or not os.path.isdir(entry.pod_dir):
                        continue
                    try:
                        await self._write_content(entry, v, vol.path)
                    except (VolumeError, OSError) as e:  # e.g. the ConfigMap was deleted: keep the last files
                        log.warning("volume %s of pod %s/%s not updated: %s", vol.name, entry.ns,
                                    entry.pod["metadata"]["name"], e)
                    except Exception:
                        log.exception("volume %s of pod %s/%s not updated", vol.name, entry.ns,
                                      entry.pod["metadata"]["name"])

    async def _sweep(self) -> None:
        last_size_check = 0.0
        while True:
            await asyncio.sleep(SWEEP_EVERY)  # token renewal check period
            now = time.time()
            for uid, entry in list(self.pods.items()):
                if any(now >= refresh for _, refresh in entry.tokens.values()):
                    self._mark(uid)
            if now - last_size_check >= SIZE_CHECK_EVERY:
                last_size_check = now
                await self._check_sizes()

    async def _check_sizes(self) -> None:
        for uid, entry in list(self.pods.items()):
            if entry.evicted:
                continue
            for vol in entry.volumes.values():
                if vol.size_limit is None:
                    continue
                used = await asyncio.to_thread(_du, vol.path)
                if used > vol.size_limit:
                    entry.evicted = True
                    limit = ((entry.pod.get("spec") or {}).get("volumes") or [])
                    shown = next((v["emptyDir"].get("sizeLimit") for v in limit if v.get("name") == vol.name
                                  and v.get("emptyDir")), vol.size_limit)
                    self.evict(uid, f'Usage of EmptyDir volume "{vol.name}" exceeds the limit "{shown}". ')
                    break

    # ----------------------------------------------------------------- reclaim
    def _on_pv(self, typ: str, pv: Obj, old: Obj | None) -> None:
        meta = pv["metadata"]
        if typ == "DELETED" or not meta.get("deletionTimestamp") or CLEANUP_FINALIZER not in (meta.get("finalizers")
                                                                                             or []):
            return
        if (meta.get("annotations") or {}).get(LOCAL_PATH_NODE_ANNOTATION) != self.node_name:
            return
        t = asyncio.get_running_loop().create_task(self._reclaim(pv), name=f"reclaim-{meta['name']}")
        self._tasks.append(t)
        t.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _reclaim(self, pv: Obj) -> None:
        """Delete a local-path volume's directory (only inside this node's storage
        directory), then drop the finalizer that kept the PersistentVolume."""
        name = pv["metadata"]["name"]
        path = pv_storage_path(pv)
        root = os.path.realpath(self.storage_dir)
        if path and os.path.realpath(path).startswith(root + os.sep):
            await asyncio.to_thread(shutil.rmtree, path, True)
            log.info("deleted the directory %s of persistentvolume %s", path, name)
        else:
            log.warning("persistentvolume %s: %s is outside %s, left on disk", name, path, root)
        finalizers = [f for f in pv["metadata"].get("finalizers") or [] if f != CLEANUP_FINALIZER]
        try:
            await self.client.patch(kind("persistentvolumes"), None, name,
                                    {"metadata": {"finalizers": finalizers,
                                                  "resourceVersion": pv["metadata"]["resourceVersion"]}})
        except ApiError as e:
            if e.status not in (404, 409):  # 409: it changed; its next event brings us back
                raise
