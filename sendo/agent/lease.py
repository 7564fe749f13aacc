"""The node's heartbeat: a Lease in `kube-node-lease` named after the node, renewed every
quarter of its duration (RENEW_EVERY seconds for the default 40 s, the kubelet's
nodeLeaseDurationSeconds) and owned by the Node (so deleting the node deletes its lease), as
the kubelet keeps it. Real agents and hollow nodes both renew through here."""
from __future__ import annotations

from ..client import ApiError, Client, kind
from ..kinds.meta import micro_now

LEASE_SECONDS = 40
RENEW_FRACTION = 0.25  # of the lease's duration, as the kubelet renews
RENEW_EVERY = LEASE_SECONDS * RENEW_FRACTION
NAMESPACE = "kube-node-lease"


async def renew_node_lease(client: Client, node_name: str, node_uid: str, duration: int = LEASE_SECONDS) -> None:
    """Renew the node's Lease, creating it (owned by the node) if it is missing."""
    leases = kind("leases", "coordination.k8s.io")
    spec = {"holderIdentity": node_name, "leaseDurationSeconds": duration, "renewTime": micro_now()}
    try:
        await client.patch(leases, NAMESPACE, node_name, {"spec": spec})
    except ApiError as e:
        if e.status != 404:
            raise
        owner = {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}
        await client.create(leases, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                     "metadata": {"name": node_name, "namespace": NAMESPACE,
                                                  "ownerReferences": [owner]},
                                     "spec": spec})
