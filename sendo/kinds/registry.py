"""The set of kinds the API server serves, looked up by group/version/plural or by kind."""
from __future__ import annotations

from .base import Resource


class Registry:
    def __init__(self, resources: list[Resource] = ()):
        self._by_path: dict[tuple[str, str, str], Resource] = {}
        self._by_kind: dict[tuple[str, str], Resource] = {}
        for r in resources:
            self.add(r)

    def add(self, r: Resource) -> None:
        self._by_path[(r.group, r.version, r.plural)] = r
        self._by_kind[(r.api_version, r.kind)] = r

    def remove(self, r: Resource) -> None:
        self._by_path.pop((r.group, r.version, r.plural), None)
        self._by_kind.pop((r.api_version, r.kind), None)

    def get(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        return self._by_kind.get((api_version, kind))

    def all(self) -> list[Resource]:
        return list(self._by_path.values())

    def groups(self) -> dict[str, list[str]]:
        """group -> versions served (core group is "")."""
        out: dict[str, list[str]] = {}
        for g, v, _ in self._by_path:
            vs = out.setdefault(g, [])
            if v not in vs:
                vs.append(v)
        return out

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for (g, v, _), r in self._by_path.items() if g == group and v == version]


def builtin_registry() -> Registry:
    from . import addons  # sendo.dev Addon
    from . import admissionregistration  # webhook configurations
    from . import apps, autoscaling, autoscaling_v1, batch, certificates, coordination, core, crd, discovery, networking
    from . import function  # sendo.dev Function
    from . import node  # RuntimeClass
    from . import policy  # PodDisruptionBudget
    from . import rbac  # RBAC kinds and the review kinds
    from . import snapshot  # sendo.dev Snapshot
    from . import storage  # StorageClass, CSIStorageCapacity

    return Registry([*admissionregistration.RESOURCES, *core.RESOURCES, *apps.RESOURCES, *batch.RESOURCES,
                     *coordination.RESOURCES, *crd.RESOURCES, *discovery.RESOURCES, *networking.RESOURCES,
                     *node.RESOURCES, *policy.RESOURCES, *storage.RESOURCES, *autoscaling.RESOURCES,
                     *autoscaling_v1.RESOURCES, *certificates.RESOURCES, *rbac.RESOURCES, *addons.RESOURCES,
                     *function.RESOURCES, *snapshot.RESOURCES])
