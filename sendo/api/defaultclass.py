"""DefaultStorageClass admission: a new PersistentVolumeClaim that names no class gets the
cluster's default one (the StorageClass annotated
`storageclass.kubernetes.io/is-default-class: "true"`, the newest if several are), as
kube-apiserver's admission plugin of that name does. A claim with `storageClassName: ""`
asks for no class and keeps it. The PersistentVolume controller does the same later for
claims created before any default class existed."""
from __future__ import annotations

import orjson

from ..kinds.base import Obj, Resource
from ..kinds.pvc import BETA_STORAGE_CLASS
from ..kinds.storage import is_default_class


class DefaultStorageClass:
    def __init__(self, store, classes: Resource):
        self.store, self.classes = store, classes

    async def __call__(self, obj: Obj) -> None:
        spec, meta = obj.get("spec"), obj.get("metadata")
        if not isinstance(spec, dict) or spec.get("storageClassName") is not None:
            return
        if isinstance(meta, dict) and BETA_STORAGE_CLASS in (meta.get("annotations") or {}):
            return
        kvs, _ = await self.store.list(self.classes.prefix())
        defaults = [sc for sc in (orjson.loads(kv.data) for kv in kvs) if is_default_class(sc)]
        if defaults:
            newest = max(defaults, key=lambda sc: (sc["metadata"].get("creationTimestamp", ""), sc["metadata"]["name"]))
            spec["storageClassName"] = newest["metadata"]["name"]
