"""The core group (v1): the kinds it serves. Each kind's rules live in its own module."""
from __future__ import annotations

from .base import Resource, ScaleSpec
from .pod import POD_PRINTER, PodStrategy
from .cluster import NAMESPACE_PRINTER, NamespaceStrategy, NODE_PRINTER, NodeStrategy
from .event import EVENT_PRINTER, EventStrategy
from .configmap import CONFIGMAP_PRINTER, ConfigMapStrategy, SECRET_PRINTER, SecretStrategy
from .service import SERVICE_PRINTER, ServiceStrategy
from .serviceaccount import SERVICEACCOUNT_PRINTER, ServiceAccountStrategy
from .endpoints import ENDPOINTS_PRINTER, EndpointsStrategy
from .pvc import PersistentVolumeClaimStrategy, PVC_PRINTER
from .replicationcontroller import RC_PRINTER, ReplicationControllerStrategy
from .storage import PV_RESOURCE
from .quota import LIMITRANGE_PRINTER, LimitRangeStrategy, QUOTA_PRINTER, ResourceQuotaStrategy

RESOURCES = [
    Resource("", "v1", "Namespace", "namespaces", False, short_names=["ns"], subresources={"status", "finalize"},
             strategy=NamespaceStrategy(), printer=NAMESPACE_PRINTER),
    Resource("", "v1", "Node", "nodes", False, short_names=["no"], subresources={"status", "proxy"},
             strategy=NodeStrategy(), printer=NODE_PRINTER),
    Resource("", "v1", "Pod", "pods", True, short_names=["po"], categories=["all"],
             subresources={"status", "binding", "eviction", "log", "portforward", "exec", "attach", "proxy"}, strategy=PodStrategy(), printer=POD_PRINTER),
    Resource("", "v1", "Event", "events", True, short_names=["ev"], strategy=EventStrategy(), printer=EVENT_PRINTER),
    Resource("", "v1", "ConfigMap", "configmaps", True, short_names=["cm"], strategy=ConfigMapStrategy(),
             printer=CONFIGMAP_PRINTER),
    Resource("", "v1", "Secret", "secrets", True, strategy=SecretStrategy(), printer=SECRET_PRINTER),
    Resource("", "v1", "Service", "services", True, short_names=["svc"], categories=["all"],
             subresources={"status", "proxy"}, strategy=ServiceStrategy(), printer=SERVICE_PRINTER),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, short_names=["sa"], subresources={"token"},
             strategy=ServiceAccountStrategy(), printer=SERVICEACCOUNT_PRINTER),
    Resource("", "v1", "Endpoints", "endpoints", True, short_names=["ep"], singular="endpoints",
             strategy=EndpointsStrategy(), printer=ENDPOINTS_PRINTER),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, short_names=["pvc"],
             subresources={"status"}, strategy=PersistentVolumeClaimStrategy(), printer=PVC_PRINTER),
    PV_RESOURCE,
    Resource("", "v1", "ReplicationController", "replicationcontrollers", True, short_names=["rc"],
             categories=["all"], subresources={"status", "scale"}, scale=ScaleSpec(label_selector=None),
             strategy=ReplicationControllerStrategy(), printer=RC_PRINTER),
    Resource("", "v1", "ResourceQuota", "resourcequotas", True, short_names=["quota"], subresources={"status"},
             strategy=ResourceQuotaStrategy(), printer=QUOTA_PRINTER),
    Resource("", "v1", "LimitRange", "limitranges", True, short_names=["limits"], strategy=LimitRangeStrategy(),
             printer=LIMITRANGE_PRINTER),
]
