"""Service (v1): types, ports, cluster IPs, traffic policies, and what an update keeps."""
from __future__ import annotations

import copy
import ipaddress
from typing import Any

from .base import Cause, Column, duplicate, forbidden, Obj, Printer, required, set_default, unsupported
from .printing import age_column, as_dict, as_list, dicts, format_labels, name_column, name_of, object_age
from .validation import (check_enum, check_name, get, invalid_value, is_dns1123_label, is_dns1123_subdomain,
                         is_port_name, is_port_number, is_type, KindStrategy, PROTOCOLS, type_invalid,
                         validate_labels)


# ======================================================================= Service

SERVICE_TYPES = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]
SESSION_AFFINITIES = ["None", "ClientIP"]


def _service_external_ip(svc: Obj) -> str:
    spec, status = as_dict(svc.get("spec")), as_dict(svc.get("status"))
    external = [str(ip) for ip in as_list(spec.get("externalIPs"))]
    stype = spec.get("type") or "ClusterIP"
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if stype == "LoadBalancer":
        ingress = dicts(as_dict(status.get("loadBalancer")).get("ingress"))
        lb = sorted({str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")})
        return ",".join(lb + external) or "<pending>"
    if stype == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def service_ports_cell(ports: Any) -> str:
    """"80/TCP", "80:30080/TCP", comma-joined; "<none>" when there are none."""
    parts = []
    for p in dicts(ports):
        proto = p.get("protocol") or "TCP"
        parts.append(f"{p.get('port')}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p.get('port')}/{proto}")
    return ",".join(parts) or "<none>"


def service_row(svc: Obj) -> list[Any]:
    spec = as_dict(svc.get("spec"))
    ips = as_list(spec.get("clusterIPs"))
    cluster_ip = (ips[0] if ips else None) or spec.get("clusterIP") or "<none>"
    return [name_of(svc), spec.get("type") or "ClusterIP", cluster_ip, _service_external_ip(svc),
            service_ports_cell(spec.get("ports")), object_age(svc), format_labels(spec.get("selector"))]


SERVICE_PRINTER = Printer(
    columns=[
        name_column(),
        Column("Type", description="ClusterIP, NodePort, LoadBalancer or ExternalName."),
        Column("Cluster-IP", description="The virtual IP of the service."),
        Column("External-IP", description="Addresses reachable from outside the cluster."),
        Column("Port(s)", description="Service ports, with node ports."),
        age_column(),
        Column("Selector", priority=1, description="Labels of the pods behind the service."),
    ],
    row=service_row,
)


IP_FAMILIES = ["IPv4", "IPv6"]
IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
_NOT_FOR_EXTERNAL_NAME = "may not be set for ExternalName services"


def _is_ip(v: Any) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _validate_cluster_ip(spec: dict, stype: str, causes: list[Cause]) -> None:
    ip = get(spec, "clusterIP", "spec.clusterIP", str, causes)
    if not ip:
        return
    if stype == "ExternalName":
        causes.append(forbidden("spec.clusterIP", _NOT_FOR_EXTERNAL_NAME))
    elif ip == "None":
        if stype in ("NodePort", "LoadBalancer"):
            causes.append(invalid_value("spec.clusterIP", ip, f"may not be set to 'None' for {stype} services"))
    elif not _is_ip(ip):
        causes.append(invalid_value("spec.clusterIP", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))


def _validate_ip_fields(spec: dict, stype: str, causes: list[Cause]) -> None:
    """clusterIPs, ipFamilies and ipFamilyPolicy on their own; the allocator checks them against the cluster."""
    ips = get(spec, "clusterIPs", "spec.clusterIPs", list, causes)
    families = get(spec, "ipFamilies", "spec.ipFamilies", list, causes)
    policy = spec.get("ipFamilyPolicy")
    if stype == "ExternalName":
        for key, present in (("clusterIPs", bool(ips)), ("ipFamilies", bool(families)),
                             ("ipFamilyPolicy", policy is not None)):
            if present:
                causes.append(forbidden(f"spec.{key}", _NOT_FOR_EXTERNAL_NAME))
        return
    seen: set[str] = set()
    for i, fam in enumerate(families or []):
        if fam not in IP_FAMILIES:
            causes.append(unsupported(f"spec.ipFamilies[{i}]", fam, IP_FAMILIES))
        elif fam in seen:
            causes.append(duplicate(f"spec.ipFamilies[{i}]", fam))
        seen.add(str(fam))
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        causes.append(unsupported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))
    if not ips:
        return
    bad = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad = True
                causes.append(invalid_value("spec.clusterIPs", ips, "'None' must be the first and only value"))
            continue
        if not isinstance(ip, str) or not _is_ip(ip):
            bad = True
            causes.append(invalid_value(f"spec.clusterIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 or "
                                                                     "2001:db8::ffff)"))
    if len(ips) > 2:
        causes.append(invalid_value("spec.clusterIPs", ips, "may only hold up to 2 values"))
    cluster_ip = spec.get("clusterIP")
    if isinstance(cluster_ip, str) and cluster_ip and ips[0] != cluster_ip:
        causes.append(invalid_value("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    if bad:
        return
    if len(ips) == 2 and ipaddress.ip_address(ips[0]).version == ipaddress.ip_address(ips[1]).version:
        causes.append(invalid_value("spec.clusterIPs", ips, "may specify no more than one IP for each IP family"))
    if ips != ["None"]:
        for i, (ip, fam) in enumerate(zip(ips, families or [])):
            version = ipaddress.ip_address(ip).version
            if (fam == "IPv4" and version == 6) or (fam == "IPv6" and version == 4):
                causes.append(invalid_value(f"spec.clusterIPs[{i}]", ip,
                                            f"expected an {fam} value as indicated by `ipFamilies[{i}]`"))


def _validate_service_port(port: dict, p: str, stype: str, multiple: bool, causes: list[Cause]) -> None:
    name = port.get("name")
    if multiple and not name:
        causes.append(required(f"{p}.name"))
    elif name:
        check_name(name, f"{p}.name", is_dns1123_label, causes)
    number = port.get("port")
    if not is_type(number, int):
        causes.append(required(f"{p}.port") if number is None else type_invalid(f"{p}.port", number, int))
    else:
        causes += [invalid_value(f"{p}.port", number, m) for m in is_port_number(number)]
    check_enum(port.get("protocol"), f"{p}.protocol", PROTOCOLS, causes)
    target = port.get("targetPort")
    if is_type(target, int):
        causes += [invalid_value(f"{p}.targetPort", target, m) for m in is_port_number(target)]
    elif isinstance(target, str):
        causes += [invalid_value(f"{p}.targetPort", target, m) for m in is_port_name(target)]
    elif target is not None:
        causes.append(type_invalid(f"{p}.targetPort", target, int))
    node_port = get(port, "nodePort", f"{p}.nodePort", int, causes)
    if node_port:
        if stype == "ClusterIP":
            causes.append(forbidden(f"{p}.nodePort", "may not be used when `type` is 'ClusterIP'"))
        else:
            causes += [invalid_value(f"{p}.nodePort", node_port, m) for m in is_port_number(node_port)]


def _validate_service_ports(spec: dict, stype: Any, causes: list[Cause]) -> None:
    ports = get(spec, "ports", "spec.ports", list, causes)
    headless = spec.get("clusterIP") == "None"
    if spec.get("ports") in (None, []) and stype != "ExternalName" and not headless:
        causes.append(required("spec.ports"))
    names: set[str] = set()
    pairs: set[tuple] = set()
    node_ports: set[tuple] = set()
    for i, port in enumerate(ports or []):
        p = f"spec.ports[{i}]"
        if not isinstance(port, dict):
            causes.append(type_invalid(p, port, dict))
            continue
        _validate_service_port(port, p, stype, len(ports) > 1, causes)
        name = port.get("name")
        if isinstance(name, str) and name:
            if name in names:
                causes.append(duplicate(f"{p}.name", name))
            names.add(name)
        number, proto = port.get("port"), port.get("protocol") or "TCP"
        if is_type(number, int):
            if (number, proto) in pairs:
                causes.append(duplicate(p, f"{number}/{proto}"))
            pairs.add((number, proto))
        node_port = port.get("nodePort")
        if is_type(node_port, int) and node_port:
            if (node_port, proto) in node_ports:
                causes.append(Cause(f"{p}.nodePort", f"Duplicate value: {node_port}", "FieldValueDuplicate"))
            node_ports.add((node_port, proto))


def _needs_health_check_port(spec: dict) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _validate_traffic_fields(spec: dict, stype: Any, causes: list[Cause]) -> None:
    external = stype in ("NodePort", "LoadBalancer")
    etp = spec.get("externalTrafficPolicy")
    if etp is not None:
        if not external and not spec.get("externalIPs"):
            causes.append(invalid_value("spec.externalTrafficPolicy", etp,
                                        "may only be set for externally-accessible services"))
        else:
            check_enum(etp, "spec.externalTrafficPolicy", TRAFFIC_POLICIES, causes)
    itp = spec.get("internalTrafficPolicy")
    if itp is not None:
        check_enum(itp, "spec.internalTrafficPolicy", TRAFFIC_POLICIES, causes)
    hc = get(spec, "healthCheckNodePort", "spec.healthCheckNodePort", int, causes)
    if hc:
        if not _needs_health_check_port(spec):
            causes.append(invalid_value("spec.healthCheckNodePort", hc, "may only be set when `type` is 'LoadBalancer' "
                                                                       "and `externalTrafficPolicy` is 'Local'"))
        else:
            causes += [invalid_value("spec.healthCheckNodePort", hc, m) for m in is_port_number(hc)]
    alloc = get(spec, "allocateLoadBalancerNodePorts", "spec.allocateLoadBalancerNodePorts", bool, causes)
    if alloc is not None and stype != "LoadBalancer":
        causes.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    for i, ip in enumerate(get(spec, "externalIPs", "spec.externalIPs", list, causes) or []):
        if not isinstance(ip, str) or not _is_ip(ip):
            causes.append(invalid_value(f"spec.externalIPs[{i}]", ip, "must be a valid IP address, (e.g. 10.9.8.7 "
                                                                      "or 2001:db8::ffff)"))


def validate_service_spec(spec: dict) -> list[Cause]:
    causes: list[Cause] = []
    stype = spec.get("type")
    check_enum(stype, "spec.type", SERVICE_TYPES, causes)
    check_enum(spec.get("sessionAffinity"), "spec.sessionAffinity", SESSION_AFFINITIES, causes)
    _validate_cluster_ip(spec, stype, causes)
    _validate_ip_fields(spec, stype, causes)
    if stype == "ExternalName":
        ext = spec.get("externalName")
        check_name(ext if not isinstance(ext, str) else ext.rstrip("."), "spec.externalName", is_dns1123_subdomain, causes)
    _validate_service_ports(spec, stype, causes)
    _validate_traffic_fields(spec, stype, causes)
    causes += validate_labels(spec.get("selector"), "spec.selector")
    return causes


def normalize_cluster_ips(spec: dict) -> None:
    """clusterIP and clusterIPs[0] say the same thing; a client may set either (as Kubernetes allows)."""
    if spec.get("type") == "ExternalName":
        return
    ip, ips = spec.get("clusterIP"), spec.get("clusterIPs")
    if isinstance(ip, str) and ip and ips in (None, []):
        spec["clusterIPs"] = [ip]
    elif not ip and isinstance(ips, list) and ips and isinstance(ips[0], str):
        spec["clusterIP"] = ips[0]


def _keep_allocated(spec: dict, old_spec: dict) -> None:
    """A PUT that leaves out what the server allocated (clusterIP, node ports) keeps it (kubectl replace)."""
    if spec.get("type") == "ExternalName" or old_spec.get("type") == "ExternalName":
        return
    if not spec.get("clusterIP") and not spec.get("clusterIPs"):
        for key in ("clusterIP", "clusterIPs"):
            if old_spec.get(key):
                spec[key] = copy.deepcopy(old_spec[key])
    for key in ("ipFamilies", "ipFamilyPolicy"):
        if spec.get(key) is None and old_spec.get(key) is not None:
            spec[key] = copy.deepcopy(old_spec[key])
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        old_node_ports = {_port_key(p): p.get("nodePort") for p in dicts(old_spec.get("ports")) if p.get("nodePort")}
        for p in dicts(spec.get("ports")):
            key = _port_key(p)
            if key is not None and not p.get("nodePort") and key in old_node_ports:
                p["nodePort"] = old_node_ports[key]
    if _needs_health_check_port(spec) and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def _port_key(port: dict) -> tuple[int, str | None] | None:
    """(port, protocol) of a well-typed Service port; None for one validation will refuse."""
    number, protocol = port.get("port"), port.get("protocol")
    if is_type(number, int) and (protocol is None or isinstance(protocol, str)):
        return number, protocol
    return None


def _drop_type_dependent(spec: dict, old_spec: dict) -> None:
    """After a type change, values that only the old type used go, unless the client changed them too."""
    stype = spec.get("type")

    def drop_if_unchanged(key: str) -> None:
        if key in spec and spec.get(key) == old_spec.get(key):
            del spec[key]

    if stype == "ExternalName" and old_spec.get("type") != "ExternalName":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
            drop_if_unchanged(key)
    if stype not in ("NodePort", "LoadBalancer"):  # (allocateLoadBalancerNodePorts: false keeps what is held)
        old_node_ports = {p.get("port"): p.get("nodePort") for p in dicts(old_spec.get("ports"))}
        for p in dicts(spec.get("ports")):
            if p.get("nodePort") and old_node_ports.get(p.get("port")) == p.get("nodePort"):
                del p["nodePort"]
    if stype not in ("NodePort", "LoadBalancer") and not spec.get("externalIPs"):
        drop_if_unchanged("externalTrafficPolicy")
    if not _needs_health_check_port(spec):
        drop_if_unchanged("healthCheckNodePort")
    if stype != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            drop_if_unchanged(key)


class ServiceStrategy(KindStrategy):
    """Stored and checked here; cluster IPs and node ports come from api/admission.ServiceAllocator."""

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "type", "ClusterIP")
        set_default(spec, "sessionAffinity", "None")
        if spec.get("type") != "ExternalName":
            set_default(spec, "internalTrafficPolicy", "Cluster")
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            set_default(spec, "externalTrafficPolicy", "Cluster")
        if spec.get("type") == "LoadBalancer":
            set_default(spec, "allocateLoadBalancerNodePorts", True)
        for port in dicts(spec.get("ports")):
            set_default(port, "protocol", "TCP")
            if port.get("targetPort") in (None, "", 0):
                port["targetPort"] = port.get("port")
        normalize_cluster_ips(spec)

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"loadBalancer": {}}

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        spec, old_spec = obj.get("spec"), as_dict(old.get("spec"))
        if not isinstance(spec, dict):
            return
        _drop_type_dependent(spec, old_spec)
        _keep_allocated(spec, old_spec)
        normalize_cluster_ips(spec)

    def validate_object(self, obj: Obj) -> list[Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [required("spec") if spec is None else type_invalid("spec", spec, dict)]
        return validate_service_spec(spec)

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        spec, old_spec = as_dict(obj.get("spec")), as_dict(old.get("spec"))
        if spec.get("type") == "ExternalName" or old_spec.get("type") == "ExternalName":
            return []
        old_ip, new_ip = old_spec.get("clusterIP"), spec.get("clusterIP")
        if old_ip and new_ip != old_ip:
            return [invalid_value("spec.clusterIP", new_ip, "field is immutable")]
        causes = []
        old_ips, new_ips = as_list(old_spec.get("clusterIPs")), as_list(spec.get("clusterIPs"))
        if old_ips and old_ips != new_ips[:len(old_ips)]:
            causes.append(invalid_value("spec.clusterIPs[0]", new_ips, "may not change once set"))
        old_fams, new_fams = as_list(old_spec.get("ipFamilies")), as_list(spec.get("ipFamilies"))
        if old_ip != "None" and old_fams and old_fams != new_fams[:len(old_fams)]:
            causes.append(invalid_value("spec.ipFamilies[0]", new_fams, "may not change once set"))
        return causes
