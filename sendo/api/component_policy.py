"""The default ClusterRoles of sendo's own components, and the bindings that give them to
the identities those components act as (controlplane.component_identities).

* ``system:kube-scheduler`` (user ``system:kube-scheduler``): read what placement looks at,
  bind pods (``pods/binding``), write a pod's scheduling condition, a claim's selected node,
  Events. It never reads Secrets or ConfigMaps.
* ``system:kube-controller-manager`` (user ``system:kube-controller-manager``): the shared
  informers (``list``/``watch`` on every resource, as in Kubernetes: the garbage collector
  and the quota loop follow every kind) and the ``sendo-controller-manager`` Lease of the
  leader election. It writes nothing else.
* ``system:controller:<name>``, bound to the ServiceAccount ``kube-system/<name>`` each
  control loop acts as (kube-controller-manager's ``--use-service-account-credentials``):
  what that loop writes and reads directly. Most are narrow (the deployment controller
  writes Deployments' status and ReplicaSets, and no Pod). Five loops act on any kind by
  design and hold broad rights under their own names: ``generic-garbage-collector``
  (deletes dependents of every kind), ``namespace-controller`` (empties a namespace of every
  kind), ``addon-manager`` (applies add-on manifests of any kind, RBAC objects included, so
  it holds everything), ``resourcequota-controller`` (counts every kind) and
  ``function-controller`` (event triggers watch any built-in kind).
"""
from __future__ import annotations

from typing import Any

from ..kinds.rbac import READ, WRITE, rule, url_rule

SCHEDULER = "system:kube-scheduler"
CONTROLLER_MANAGER = "system:kube-controller-manager"
CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER_ROLE_PREFIX = "system:controller:"
LEADER_LEASE = "sendo-controller-manager"
EVENTS = rule(["", "events.k8s.io"], ["events"], ["create", "update", "patch"])
ALL = READ + WRITE

SCHEDULER_RULES = [
    EVENTS,
    rule([""], ["pods/binding", "bindings"], ["create"]),
    rule([""], ["pods/status"], ["patch", "update"]),
    rule([""], ["pods", "nodes", "namespaces", "services", "replicationcontrollers", "persistentvolumeclaims",
                "persistentvolumes"], READ),
    rule([""], ["persistentvolumeclaims"], ["patch", "update"]),  # the claim's selected node
    rule(["apps"], ["replicasets", "statefulsets"], READ),
    rule(["policy"], ["poddisruptionbudgets"], READ),
    rule(["storage.k8s.io"], ["storageclasses", "csinodes", "csidrivers", "csistoragecapacities"], READ),
    rule(["node.k8s.io"], ["runtimeclasses"], READ),
]

CONTROLLER_MANAGER_RULES = [
    rule(["*"], ["*"], ["list", "watch"]),
    rule(["coordination.k8s.io"], ["leases"], ["create"]),
    {**rule(["coordination.k8s.io"], ["leases"], ["get", "update", "patch"]), "resourceNames": [LEADER_LEASE]},
    EVENTS,
]

# each loop's ServiceAccount (kube-system) -> its rules, beside the Events every one records
CONTROLLER_RULES: dict[str, list[dict[str, Any]]] = {
    "deployment-controller": [
        rule(["apps"], ["deployments"], ["get", "list", "watch", "update", "patch"]),
        rule(["apps"], ["deployments/status"], ["update", "patch"]),
        rule(["apps"], ["replicasets"], ALL),
        rule([""], ["pods"], ["get", "list", "watch", "update", "patch"]),
    ],
    "replicaset-controller": [
        rule(["apps"], ["replicasets"], ["get", "list", "watch", "update", "patch"]),
        rule(["apps"], ["replicasets/status", "replicasets/finalizers"], ["update", "patch"]),
        rule([""], ["pods"], ["list", "watch", "create", "delete", "patch"]),
    ],
    "replication-controller": [
        rule([""], ["replicationcontrollers"], ["get", "list", "watch", "update", "patch"]),
        rule([""], ["replicationcontrollers/status", "replicationcontrollers/finalizers"], ["update", "patch"]),
        rule([""], ["pods"], ["list", "watch", "create", "delete", "patch"]),
    ],
    "generic-garbage-collector": [rule(["*"], ["*"], ["get", "list", "watch", "patch", "update", "delete"])],
    "namespace-controller": [
        rule([""], ["namespaces"], ["get", "list", "watch", "delete"]),
        rule([""], ["namespaces/finalize", "namespaces/status"], ["update"]),
        rule(["*"], ["*"], ["get", "list", "delete", "deletecollection"]),
    ],
    "node-controller": [
        rule([""], ["nodes"], ["get", "list", "watch", "update", "patch", "delete"]),
        rule([""], ["nodes/status", "pods/status"], ["patch", "update"]),
        rule([""], ["pods"], ["list", "watch", "delete"]),
    ],
    "taint-eviction-controller": [
        rule([""], ["pods"], ["get", "list", "watch", "delete"]),
        rule([""], ["pods/status"], ["patch", "update"]),
    ],
    "pod-garbage-collector": [
        rule([""], ["pods"], ["list", "watch", "delete"]),
        rule([""], ["pods/status"], ["patch"]),
        rule([""], ["nodes"], ["get", "list"]),
    ],
    "endpoint-controller": [
        rule([""], ["services", "pods"], READ),
        rule([""], ["endpoints"], ["get", "list", "watch", "create", "update", "delete"]),
        rule([""], ["endpoints/restricted"], ["create"]),
        rule(["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch", "create", "update", "delete"]),
    ],
    "service-account-controller": [rule([""], ["serviceaccounts"], ["create"])],
    "daemon-set-controller": [
        rule(["apps"], ["daemonsets"], READ),
        rule(["apps"], ["daemonsets/status", "daemonsets/finalizers"], ["update", "patch"]),
        rule([""], ["nodes"], READ),
        rule([""], ["pods"], ["list", "watch", "create", "delete", "patch"]),
        rule([""], ["pods/binding"], ["create"]),
        rule(["apps"], ["controllerrevisions"], ALL),
    ],
    "statefulset-controller": [
        rule(["apps"], ["statefulsets"], READ),
        rule(["apps"], ["statefulsets/status", "statefulsets/finalizers"], ["update", "patch"]),
        rule([""], ["pods"], ["get", "list", "watch", "create", "delete", "update", "patch"]),
        rule(["apps"], ["controllerrevisions"], ALL),
        rule([""], ["persistentvolumeclaims"], ["get", "list", "watch", "create", "update", "patch"]),
    ],
    "disruption-controller": [
        rule(["apps"], ["deployments", "replicasets", "statefulsets"], READ),
        rule([""], ["replicationcontrollers"], READ),
        rule(["policy"], ["poddisruptionbudgets"], READ),
        rule(["policy"], ["poddisruptionbudgets/status"], ["update", "patch"]),
        rule(["*"], ["*/scale"], ["get"]),
        rule([""], ["pods/status"], ["patch"]),
    ],
    "job-controller": [
        rule(["batch"], ["jobs"], ["get", "list", "watch", "update", "patch", "delete"]),
        rule(["batch"], ["jobs/status", "jobs/finalizers"], ["update", "patch"]),
        rule([""], ["pods"], ["list", "watch", "create", "delete", "patch"]),
    ],
    "cronjob-controller": [
        rule(["batch"], ["cronjobs"], ["get", "list", "watch", "update", "patch"]),
        rule(["batch"], ["cronjobs/status", "cronjobs/finalizers"], ["update", "patch"]),
        rule(["batch"], ["jobs"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
        rule([""], ["pods"], ["list", "delete"]),
    ],
    "persistent-volume-binder": [
        rule([""], ["persistentvolumes"], ALL),
        rule([""], ["persistentvolumes/status"], ["update", "patch"]),
        rule([""], ["persistentvolumeclaims"], ["get", "list", "watch", "update", "patch"]),
        rule([""], ["persistentvolumeclaims/status"], ["update", "patch"]),
        rule([""], ["pods", "nodes"], READ),
        rule(["storage.k8s.io"], ["storageclasses"], ["get", "list", "watch", "create"]),
        rule(["sendo.dev"], ["addons"], ["get"]),  # is the local-path add-on (the default class's) on?
    ],
    "horizontal-pod-autoscaler": [
        rule(["autoscaling"], ["horizontalpodautoscalers"], READ),
        rule(["autoscaling"], ["horizontalpodautoscalers/status"], ["update", "patch"]),
        rule(["*"], ["*/scale"], ["get", "update", "patch"]),
        rule([""], ["pods"], ["list"]),
        rule(["metrics.k8s.io"], ["pods"], ["list", "get"]),
        rule(["custom.metrics.k8s.io", "external.metrics.k8s.io"], ["*"], ["get", "list"]),
    ],
    "resourcequota-controller": [
        rule(["*"], ["*"], ["list", "watch"]),
        rule([""], ["resourcequotas"], ["get"]),
        rule([""], ["resourcequotas/status"], ["update", "patch"]),
    ],
    "clusterrole-aggregation": [
        rule(["rbac.authorization.k8s.io"], ["clusterroles"], ["escalate", "get", "list", "watch", "update", "patch"]),
    ],
    "certificate-controller": [
        rule(["certificates.k8s.io"], ["certificatesigningrequests"], READ),
        rule(["certificates.k8s.io"], ["certificatesigningrequests/status", "certificatesigningrequests/approval"],
             ["update", "patch"]),
        {**rule(["certificates.k8s.io"], ["signers"], ["sign"]),
         "resourceNames": ["kubernetes.io/kube-apiserver-client"]},
    ],
    "addon-manager": [rule(["*"], ["*"], ["*"]), url_rule(["*"], ["*"])],
    "function-controller": [
        rule(["sendo.dev"], ["functions", "functions/status"], ALL),
        rule(["apps"], ["deployments", "daemonsets"], ALL),  # instances; the warm pool, one worker per node
        rule([""], ["pods"], ALL),
        rule([""], ["services"], ALL),
        rule([""], ["configmaps"], ["delete"]),  # the packed sources (`sendo fn deploy --dir`) it replaced
        rule(["networking.k8s.io"], ["ingresses"], ALL),
        rule(["discovery.k8s.io"], ["endpointslices"], ALL),
        rule(["*"], ["*"], ["get", "list", "watch"]),  # event triggers follow any built-in kind
    ],
}


def controller_user(name: str) -> str:
    return f"system:serviceaccount:{CONTROLLER_NAMESPACE}:{name}"


def component_roles() -> list[tuple[str, list[dict[str, Any]]]]:
    """(ClusterRole name, rules) of every component."""
    return [(SCHEDULER, SCHEDULER_RULES), (CONTROLLER_MANAGER, CONTROLLER_MANAGER_RULES),
            *((CONTROLLER_ROLE_PREFIX + sa, [*rules, EVENTS]) for sa, rules in CONTROLLER_RULES.items())]


def component_subjects() -> dict[str, dict[str, str]]:
    """ClusterRole (and binding) name -> the one subject it is bound to."""
    group = "rbac.authorization.k8s.io"
    return {SCHEDULER: {"apiGroup": group, "kind": "User", "name": SCHEDULER},
            CONTROLLER_MANAGER: {"apiGroup": group, "kind": "User", "name": CONTROLLER_MANAGER},
            **{CONTROLLER_ROLE_PREFIX + sa: {"kind": "ServiceAccount", "name": sa, "namespace": CONTROLLER_NAMESPACE}
               for sa in CONTROLLER_RULES}}


COMPONENT_USERS = frozenset([SCHEDULER, CONTROLLER_MANAGER, *(controller_user(sa) for sa in CONTROLLER_RULES)])
