"""ReplicationController controller: the ReplicaSet controller, pointed at another kind.

The two kinds differ only in the shape of their selector, which the controller never
reads: it finds its pods by their controller ownerReference, and counts, creates,
deletes and reports status exactly as for a ReplicaSet.
"""
from __future__ import annotations

from .replicaset import ReplicaSetController


class ReplicationManager(ReplicaSetController):
    name = "replicationcontroller-controller"
    resource = ("replicationcontrollers", "")
    owner_kind = "ReplicationController"
