"""ControllerRevisions: the template history of DaemonSets and StatefulSets.

A revision stores what `kubectl rollout undo` patches back into its owner: a strategic
merge patch that replaces `spec.template` (`{"spec": {"template": {…, "$patch":
"replace"}}}`, byte for byte what kubectl compares with). It is named `<owner>-<hash>`,
carries the owner's template labels (kubectl finds the history with the owner's
selector) and a controller ownerReference. Rolling back to an old template makes its
revision the newest again (its number is raised), as Kubernetes does.
"""
from __future__ import annotations

import copy
from typing import Any

from ..client import ApiError, Client, kind
from .deployment import template_hash
from .podutil import controller_ref

Obj = dict[str, Any]
REVISION_HASH = "controller-revision-hash"
CR = kind("controllerrevisions", "apps")


def revision_data(owner: Obj) -> Obj:
    template = copy.deepcopy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def revision_number(cr: Obj) -> int:
    n = cr.get("revision", 0)
    return n if isinstance(n, int) else 0


def same_data(a: Obj | None, b: Obj | None) -> bool:
    return (a or {}) == (b or {})


class History:
    """The revisions of one owner and the one that matches its template now."""

    def __init__(self, revisions: list[Obj], update: Obj, collision_count: int):
        self.revisions = sorted(revisions, key=revision_number)
        self.update = update
        self.collision_count = collision_count

    @property
    def hash(self) -> str:
        return (self.update["metadata"].get("labels") or {}).get(REVISION_HASH, "")

    def named(self, name: str | None) -> Obj | None:
        return next((r for r in self.revisions if r["metadata"]["name"] == name), None)


async def sync_history(client: Client, owner: Obj, revisions: list[Obj]) -> History:
    """Find or create the revision of the owner's template; make it the newest."""
    meta = owner["metadata"]
    ns, name = meta["namespace"], meta["name"]
    data = revision_data(owner)
    collisions = (owner.get("status") or {}).get("collisionCount", 0) or 0
    top = max([revision_number(r) for r in revisions] + [0])
    match = [r for r in revisions if same_data(r.get("data"), data)]
    if match:
        cur = max(match, key=revision_number)
        if revision_number(cur) < top:  # a rollback: the old template is the newest revision again
            cur = await client.patch(CR, ns, cur["metadata"]["name"], {"revision": top + 1})
            revisions = [cur if r["metadata"]["uid"] == cur["metadata"]["uid"] else r for r in revisions]
        return History(revisions, cur, collisions)
    labels = dict((((owner.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})
    for _ in range(10):
        h = template_hash(data, collisions)
        labels[REVISION_HASH] = h
        body = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": f"{name}-{h}", "namespace": ns, "labels": labels,
                             "ownerReferences": [controller_ref(owner)]},
                "data": data, "revision": top + 1}
        try:
            cur = await client.create(CR, body)
            return History([*revisions, cur], cur, collisions)
        except ApiError as e:
            if e.status != 409:
                raise
        existing = await client.get_or_none(CR, ns, f"{name}-{h}")
        if existing is not None and same_data(existing.get("data"), data) and \
                any(r.get("uid") == meta["uid"] for r in existing["metadata"].get("ownerReferences") or []):
            return History([*revisions, existing], existing, collisions)
        collisions += 1  # a different revision holds the name: hash again
    raise RuntimeError(f"no free ControllerRevision name for {ns}/{name} after 10 hash collisions")


async def truncate_history(client: Client, history: History, in_use: set[str], limit: int) -> None:
    """Delete the oldest revisions beyond revisionHistoryLimit that no pod runs."""
    keep = {history.update["metadata"]["name"]} | in_use
    idle = [r for r in history.revisions if r["metadata"]["name"] not in keep]
    for r in idle[:max(len(idle) - limit, 0)]:
        await client.delete(CR, r["metadata"]["namespace"], r["metadata"]["name"])
