"""StatefulSet controller: pods with stable names, ordinals, hostnames and claims.

Pod `<set>-<i>` for each ordinal i in [start, start + replicas) gets hostname `<set>-<i>`
and subdomain `spec.serviceName`, so the cluster DNS answers
`<set>-<i>.<service>.<ns>.svc.cluster.local` through a headless Service. For each
volumeClaimTemplate it gets a PersistentVolumeClaim `<claim>-<set>-<i>`, created before
the pod and kept when the pod goes (persistentVolumeClaimRetentionPolicy decides, by
ownerReferences the garbage collector follows, whether scale-down or deletion of the
set removes them).

OrderedReady creates one pod at a time in ordinal order, each only once the one
before is Running and Ready, and removes pods from the highest ordinal down, one at a
time; Parallel does both at once. RollingUpdate replaces pods at or above
`partition`, from the highest ordinal down, one at a time once the rest are healthy;
OnDelete leaves that to the user. Templates are kept as ControllerRevisions
(history.py), which `kubectl rollout undo sts` patches back.
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import re
from typing import Any

from ..client import ApiError, kind
from ..client.events import EventRecorder
from .base import Controller, owner_key, split_key
from .history import REVISION_HASH, History, sync_history, truncate_history
from .podutil import OwnerIndex, controller_ref, count_available, is_ready, is_terminating

log = logging.getLogger(__name__)
Obj = dict[str, Any]
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(set_name: str, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]*)", pod["metadata"]["name"])
    return int(m.group(1)) if m else None


def claim_name(template: Obj, set_name: str, ordinal: int) -> str:
    return f"{(template.get('metadata') or {}).get('name')}-{set_name}-{ordinal}"


def _healthy(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_ready(pod) and not is_terminating(pod)


def _failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def _revision_of(pod: Obj) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(REVISION_HASH)


def _template_of(revision: Obj) -> Obj:
    t = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    t.pop("$patch", None)
    return t


class StatefulSetController(Controller):
    name = "statefulset-controller"
    workers = 2

    async def stop(self) -> None:
        await super().stop()
        await self.recorder.close()

    def setup(self) -> None:
        self.sts_kind = kind("statefulsets", "apps")
        self.pod_kind = kind("pods")
        self.pvc_kind = kind("persistentvolumeclaims")
        self.sts_inf = self.informers.get(self.sts_kind)
        self.pod_inf = self.informers.get(self.pod_kind)
        self.pvc_inf = self.informers.get(self.pvc_kind)
        self.cr_inf = self.informers.get(kind("controllerrevisions", "apps"))
        self.pods = OwnerIndex("StatefulSet")
        self.revisions = OwnerIndex("StatefulSet")
        self.sts_inf.add_handler(lambda t, o, old: self.enqueue(o))
        self.pod_inf.add_handler(self.pods.handler(self._queue_owner))
        self.cr_inf.add_handler(self.revisions.handler(self._queue_owner))
        self.recorder = EventRecorder(self.client, self.name)

    def _queue_owner(self, obj: Obj) -> None:
        key = owner_key(obj, "StatefulSet")
        if key:
            self.queue.add(key)

    async def reconcile(self, key: str) -> float | None:
        sts = self.sts_inf.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        ns, name = split_key(key)
        spec = sts.get("spec") or {}
        uid = sts["metadata"]["uid"]
        history = await sync_history(self.client, sts, self.revisions.owned(uid))
        update_rev = history.update
        current_rev = history.named((sts.get("status") or {}).get("currentRevision")) or update_rev
        start = (spec.get("ordinals") or {}).get("start", 0) or 0
        replicas = spec.get("replicas", 1)
        parallel = spec.get("podManagementPolicy") == "Parallel"
        strategy = spec.get("updateStrategy") or {}
        partition = ((strategy.get("rollingUpdate") or {}).get("partition") or 0) \
            if strategy.get("type", "RollingUpdate") == "RollingUpdate" else None

        pods: dict[int, Obj] = {}
        for p in self.pods.owned(uid):
            o = ordinal_of(name, p)
            if o is not None:
                pods[o] = p
        desired = range(start, start + replicas)
        condemned = sorted((o for o in pods if o not in desired), reverse=True)
        status_pods = list(pods.values())

        blocked = False
        for o in desired:
            pod = pods.get(o)
            if pod is not None and _failed(pod) and not is_terminating(pod):
                await self._delete_pod(sts, ns, pod)
                pod = None
                if not parallel:
                    blocked = True
                    break
                continue
            if pod is None:
                rev = current_rev if partition is not None and o < start + partition else update_rev
                await self._create_pod(sts, ns, o, rev)
                if not parallel:
                    blocked = True
                    break
                continue
            await self._ensure_claims(sts, ns, o)
            if not parallel and not _healthy(pod):
                blocked = True
                break

        if not blocked:
            for o in condemned:
                pod = pods[o]
                if is_terminating(pod):
                    if not parallel:
                        break
                    continue
                if not parallel and not all(_healthy(pods[d]) for d in desired if d in pods):
                    break
                await self._condemn_claims(sts, ns, o, pod)
                await self._delete_pod(sts, ns, pod, "scale down")
                if not parallel:
                    break

        if not blocked and partition is not None and not condemned \
                and all(o in pods for o in desired):
            await self._roll(sts, ns, pods, desired, start + partition, update_rev["metadata"]["name"])

        in_use = {r for r in (_revision_of(p) for p in status_pods) if r}
        await truncate_history(self.client, history, in_use, spec.get("revisionHistoryLimit", 10))
        return await self._sync_status(sts, status_pods, history, current_rev, update_rev)

    async def _roll(self, sts: Obj, ns: str, pods: dict[int, Obj], desired: range, lowest: int,
                    update_name: str) -> None:
        """Replace the highest-ordinal pod that runs an old revision, once the others are healthy."""
        if not all(_healthy(pods[o]) or _revision_of(pods[o]) != update_name for o in desired):
            return
        for o in sorted((o for o in desired if o >= lowest), reverse=True):
            pod = pods[o]
            if _revision_of(pod) != update_name and not is_terminating(pod):
                await self._delete_pod(sts, ns, pod, "update")
                return
            if not _healthy(pod):
                return

    # ----------------------------------------------------------------- pods and claims
    def _pod_body(self, sts: Obj, ns: str, ordinal: int, revision: Obj) -> Obj:
        name = sts["metadata"]["name"]
        tmpl = _template_of(revision)
        meta = copy.deepcopy(tmpl.get("metadata") or {})
        pod_name = f"{name}-{ordinal}"
        meta.pop("generateName", None)
        meta.update({"name": pod_name, "namespace": ns, "ownerReferences": [controller_ref(sts)]})
        meta.setdefault("labels", {}).update({REVISION_HASH: revision["metadata"]["name"],
                                              POD_NAME_LABEL: pod_name, POD_INDEX_LABEL: str(ordinal)})
        spec = copy.deepcopy(tmpl.get("spec") or {})
        spec["hostname"] = pod_name
        if sts["spec"].get("serviceName"):
            spec["subdomain"] = sts["spec"]["serviceName"]
        claims = {(t.get("metadata") or {}).get("name"): claim_name(t, name, ordinal)
                  for t in sts["spec"].get("volumeClaimTemplates") or []}
        volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
        volumes += [{"name": c, "persistentVolumeClaim": {"claimName": n}} for c, n in claims.items()]
        if volumes:
            spec["volumes"] = volumes
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    async def _create_pod(self, sts: Obj, ns: str, ordinal: int, revision: Obj) -> None:
        await self._ensure_claims(sts, ns, ordinal)
        body = self._pod_body(sts, ns, ordinal, revision)
        try:
            await self.client.create(self.pod_kind, body, ns)
        except ApiError as e:
            if e.status == 409:  # the old pod of that name is still going away
                return
            self.recorder.emit(sts, "Warning", "FailedCreate",
                               f"create Pod {body['metadata']['name']} in StatefulSet {sts['metadata']['name']} "
                               f"failed error: {e.body.get('message')}")
            raise
        self.recorder.emit(sts, "Normal", "SuccessfulCreate",
                           f"create Pod {body['metadata']['name']} in StatefulSet {sts['metadata']['name']} "
                           "successful")

    async def _delete_pod(self, sts: Obj, ns: str, pod: Obj, why: str = "") -> None:
        pod_name = pod["metadata"]["name"]
        await self.client.delete(self.pod_kind, ns, pod_name, preconditions={"uid": pod["metadata"]["uid"]})
        self.recorder.emit(sts, "Normal", "SuccessfulDelete",
                           f"delete Pod {pod_name} in StatefulSet {sts['metadata']['name']} successful")

    def _claim_refs(self, sts: Obj) -> list[Obj]:
        retention = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if retention.get("whenDeleted") == "Delete":
            ref = controller_ref(sts)
            ref["controller"] = False
            return [ref]
        return []

    async def _ensure_claims(self, sts: Obj, ns: str, ordinal: int) -> None:
        """Every claim of the ordinal exists, owned by the set when whenDeleted is Delete."""
        name = sts["metadata"]["name"]
        selector_labels = ((sts["spec"].get("selector") or {}).get("matchLabels")) or {}
        for t in sts["spec"].get("volumeClaimTemplates") or []:
            cname = claim_name(t, name, ordinal)
            existing = self.pvc_inf.get(f"{ns}/{cname}")
            want_refs = self._claim_refs(sts)
            if existing is not None:
                await self._set_claim_owners(ns, existing, want_refs, sts["metadata"]["uid"])
                continue
            meta = copy.deepcopy(t.get("metadata") or {})
            meta.update({"name": cname, "namespace": ns})
            meta["labels"] = {**(meta.get("labels") or {}), **selector_labels}
            if want_refs:
                meta["ownerReferences"] = want_refs
            body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
                    "spec": copy.deepcopy(t.get("spec") or {})}
            try:
                await self.client.create(self.pvc_kind, body, ns)
            except ApiError as e:
                if e.status != 409:
                    self.recorder.emit(sts, "Warning", "FailedCreate",
                                       f"create Claim {cname} for Pod {name}-{ordinal} in StatefulSet {name} "
                                       f"failed error: {e.body.get('message')}")
                    raise
                continue
            self.recorder.emit(sts, "Normal", "SuccessfulCreate",
                               f"create Claim {cname} Pod {name}-{ordinal} in StatefulSet {name} success")

    async def _set_claim_owners(self, ns: str, pvc: Obj, want: list[Obj], sts_uid: str) -> None:
        """The set's ownerReference on a claim follows whenDeleted (other owners are kept)."""
        refs = pvc["metadata"].get("ownerReferences") or []
        others = [r for r in refs if r.get("uid") != sts_uid]
        ours = [r for r in refs if r.get("uid") == sts_uid]
        if bool(ours) == bool(want):
            return
        await self.client.patch(self.pvc_kind, ns, pvc["metadata"]["name"],
                                {"metadata": {"ownerReferences": others + want or None,
                                              "resourceVersion": pvc["metadata"]["resourceVersion"]}})

    async def _condemn_claims(self, sts: Obj, ns: str, ordinal: int, pod: Obj) -> None:
        """whenScaled: Delete makes the pod own its claims, so they go with it."""
        retention = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if retention.get("whenScaled") != "Delete":
            return
        ref = {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
               "controller": False, "blockOwnerDeletion": True}
        for t in sts["spec"].get("volumeClaimTemplates") or []:
            pvc = self.pvc_inf.get(f"{ns}/{claim_name(t, sts['metadata']['name'], ordinal)}")
            if pvc is None:
                continue
            refs = pvc["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == ref["uid"] for r in refs):
                continue
            await self.client.patch(self.pvc_kind, ns, pvc["metadata"]["name"],
                                    {"metadata": {"ownerReferences": refs + [ref],
                                                  "resourceVersion": pvc["metadata"]["resourceVersion"]}})

    # ----------------------------------------------------------------- status
    async def _sync_status(self, sts: Obj, pods: list[Obj], history: History, current_rev: Obj,
                           update_rev: Obj) -> float | None:
        spec = sts["spec"]
        min_ready = spec.get("minReadySeconds", 0) or 0
        now = dt.datetime.now(dt.timezone.utc)
        counted = [p for p in pods if not _failed(p)]
        cur_name, upd_name = current_rev["metadata"]["name"], update_rev["metadata"]["name"]
        current = sum(1 for p in counted if _revision_of(p) == cur_name)
        updated = sum(1 for p in counted if _revision_of(p) == upd_name)
        ready, available, recheck = count_available([p for p in counted if not is_terminating(p)], min_ready, now)
        replicas = len(counted)
        status = dict(sts.get("status") or {})
        new = {**status, "observedGeneration": sts["metadata"].get("generation", 1), "replicas": replicas,
               "readyReplicas": ready, "currentReplicas": current, "updatedReplicas": updated,
               "availableReplicas": available, "currentRevision": cur_name, "updateRevision": upd_name,
               "collisionCount": history.collision_count}
        if updated == replicas == spec.get("replicas", 1) and ready == replicas:
            new["currentRevision"], new["currentReplicas"] = upd_name, updated  # the rollout is complete
        for k in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not new[k]:
                new.pop(k)
        if new != status:
            body = copy.deepcopy(sts)
            body["status"] = new
            await self.client.update_status(self.sts_kind, body)
        return recheck + 0.05 if recheck else None

