"""networking.k8s.io/v1 kinds: Ingress, IngressClass and NetworkPolicy.

Ingresses are served by the HTTP(S) ingress controller every agent runs
(`sendo/network/ingress.py`); the rules here are Kubernetes' (pkg/apis/networking/
validation), worded as it words them. NetworkPolicies are stored and checked, not
enforced: sendo's pods share the host's network stack (see docs/ingress.md).
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, forbidden, required, unsupported
from .base import set_default
from .printing import age_column, as_dict, as_list, dicts, format_selector, name_column, name_of, object_age
from .validation import (KindStrategy, PROTOCOLS, get, invalid_value, is_dns1123_label,
                         is_dns1123_subdomain, is_port_name, is_port_number, is_type, required_because,
                         too_long, type_invalid, validate_label_selector)

GROUP = "networking.k8s.io"
PATH_TYPES = ["Exact", "ImplementationSpecific", "Prefix"]
INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"  # the pre-IngressClass way of naming a class
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
MAX_CONTROLLER_LENGTH = 250
LOAD_BALANCER_WIDTH = 16  # kubectl clips the ADDRESS column to this many characters
POLICY_TYPES = ["Egress", "Ingress"]
PARAMETER_SCOPES = ["Cluster", "Namespace"]

_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")
_WILDCARD_FMT = r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_WILDCARD = re.compile(f"^{_WILDCARD_FMT}$")
_URL_PATH = re.compile(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")


# ======================================================================= host names


def is_wildcard_dns1123_subdomain(v: str) -> list[str]:
    """'*.example.com': a wildcard in the first label only, which stands for exactly one label."""
    errs = []
    if len(v) > 253:
        errs.append("must be no more than 253 characters")
    if not _WILDCARD.match(v):
        errs.append("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which "
                    "must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric "
                    f"character (e.g. '*.example.com', regex used for validation is '{_WILDCARD_FMT}')")
    return errs


def _is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
        return True
    except ValueError:
        return False


def host_causes(host: str, path: str) -> list[Cause]:
    """A rule's or a TLS entry's host: a DNS name (wildcard allowed), never an IP address."""
    causes = []
    if _is_ip(host):
        causes.append(invalid_value(path, host, "must be a DNS name, not an IP address"))
    check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
    return causes + [invalid_value(path, host, m) for m in check(host)]


# ======================================================================= Ingress


def _validate_backend(backend: Any, path: str) -> list[Cause]:
    """Exactly one of service{name, port{number|name}} and resource{kind, name, apiGroup}."""
    if not isinstance(backend, dict):
        return [type_invalid(path, backend, dict)] if backend is not None else \
            [invalid_value(path, "", "resource or service backend is required")]
    causes: list[Cause] = []
    service = get(backend, "service", f"{path}.service", dict, causes)
    resource = get(backend, "resource", f"{path}.resource", dict, causes)
    if service is not None and resource is not None:
        return [invalid_value(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return causes + _validate_typed_reference(resource, f"{path}.resource")
    if service is None:
        return causes or [invalid_value(path, "", "resource or service backend is required")]
    name = get(service, "name", f"{path}.service.name", str, causes)
    if not name:
        if service.get("name") is None or name == "":
            causes.append(required(f"{path}.service.name"))
    else:
        causes += [invalid_value(f"{path}.service.name", name, m) for m in is_dns1123_label(name)]
    port = get(service, "port", f"{path}.service.port", dict, causes) or {}
    pname = get(port, "name", f"{path}.service.port.name", str, causes)
    number = get(port, "number", f"{path}.service.port.number", int, causes)
    if pname and number:
        causes.append(invalid_value(path, "", "cannot set both port name & port number"))
    elif pname:
        causes += [invalid_value(f"{path}.service.port.name", pname, m) for m in is_port_name(pname)]
    elif number:
        causes += [invalid_value(f"{path}.service.port.number", number, m) for m in is_port_number(number)]
    elif not any(c.field.startswith(f"{path}.service.port") for c in causes):
        causes.append(required_because(path, "port name or number is required"))
    return causes


def _validate_typed_reference(ref: dict, path: str) -> list[Cause]:
    causes: list[Cause] = []
    group = get(ref, "apiGroup", f"{path}.apiGroup", str, causes)
    if group:
        causes += [invalid_value(f"{path}.apiGroup", group, m) for m in is_dns1123_subdomain(group)]
    for key in ("kind", "name"):
        v = get(ref, key, f"{path}.{key}", str, causes)
        if not v:
            if ref.get(key) is None or v == "":
                causes.append(required(f"{path}.{key}"))
        elif v in (".", "..") or "/" in v or "%" in v:
            causes.append(invalid_value(f"{path}.{key}", v, "may not be '.' or '..' and may not contain '/' or '%'"))
    return causes


def _validate_http_path(p: Any, path: str) -> list[Cause]:
    if not isinstance(p, dict):
        return [type_invalid(path, p, dict)]
    causes: list[Cause] = []
    value = get(p, "path", f"{path}.path", str, causes) or ""
    ptype = p.get("pathType")
    if ptype is None or ptype == "":
        return causes + [required_because(f"{path}.pathType", "pathType must be specified")]
    if ptype in ("Exact", "Prefix"):
        if not value.startswith("/"):
            causes.append(invalid_value(f"{path}.path", value, "must be an absolute path"))
        for seq in _INVALID_PATH_SEQUENCES:
            if seq in value:
                causes.append(invalid_value(f"{path}.path", value, f"must not contain '{seq}'"))
        for suffix in _INVALID_PATH_SUFFIXES:
            if value.endswith(suffix):
                causes.append(invalid_value(f"{path}.path", value, f"cannot end with '{suffix}'"))
    elif ptype == "ImplementationSpecific":
        if value and not value.startswith("/"):
            causes.append(invalid_value(f"{path}.path", value, "must be an absolute path"))
    else:
        causes.append(unsupported(f"{path}.pathType", ptype, PATH_TYPES))
    return causes + _validate_backend(p.get("backend"), f"{path}.backend")


def _validate_rules(rules: list, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, rule in enumerate(rules):
        p = f"{path}[{i}]"
        if not isinstance(rule, dict):
            causes.append(type_invalid(p, rule, dict))
            continue
        host = get(rule, "host", f"{p}.host", str, causes)
        if host:
            causes += host_causes(host, f"{p}.host")
        http = get(rule, "http", f"{p}.http", dict, causes)
        if http is None:
            continue
        paths = get(http, "paths", f"{p}.http.paths", list, causes)
        if http.get("paths") is None or paths == []:
            causes.append(required(f"{p}.http.paths"))
        for j, item in enumerate(paths or []):
            causes += _validate_http_path(item, f"{p}.http.paths[{j}]")
    return causes


def _validate_tls(tls: list, path: str) -> list[Cause]:
    causes: list[Cause] = []
    for i, entry in enumerate(tls):
        p = f"{path}[{i}]"
        if not isinstance(entry, dict):
            causes.append(type_invalid(p, entry, dict))
            continue
        for j, host in enumerate(get(entry, "hosts", f"{p}.hosts", list, causes) or []):
            if not isinstance(host, str):
                causes.append(type_invalid(f"{p}.hosts[{j}]", host, str))
                continue
            check = is_wildcard_dns1123_subdomain if "*" in host else is_dns1123_subdomain
            causes += [invalid_value(f"{p}.hosts[{j}]", host, m) for m in check(host)]
        secret = get(entry, "secretName", f"{p}.secretName", str, causes)
        if secret:
            causes += [invalid_value(f"{p}.secretName", secret, m) for m in is_dns1123_subdomain(secret)]
    return causes


def _validate_lb_status(status: Any) -> list[Cause]:
    causes: list[Cause] = []
    lb = get(status, "loadBalancer", "status.loadBalancer", dict, causes) or {}
    for i, ing in enumerate(get(lb, "ingress", "status.loadBalancer.ingress", list, causes) or []):
        p = f"status.loadBalancer.ingress[{i}]"
        if not isinstance(ing, dict):
            causes.append(type_invalid(p, ing, dict))
            continue
        ip = get(ing, "ip", f"{p}.ip", str, causes)
        if ip and not _is_ip(ip):
            causes.append(invalid_value(f"{p}.ip", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
        hostname = get(ing, "hostname", f"{p}.hostname", str, causes)
        if hostname:
            causes += [invalid_value(f"{p}.hostname", hostname, m) for m in is_dns1123_subdomain(hostname)]
            if _is_ip(hostname):
                causes.append(invalid_value(f"{p}.hostname", hostname, "must be a DNS name, not an IP address"))
    return causes


def validate_ingress_spec(spec: Any) -> list[Cause]:
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return [type_invalid("spec", spec, dict)]
    causes: list[Cause] = []
    rules = get(spec, "rules", "spec.rules", list, causes) or []
    default = spec.get("defaultBackend")
    if not rules and default is None:
        causes.append(invalid_value("spec", None, "either `defaultBackend` or `rules` must be specified"))
    if default is not None:
        causes += _validate_backend(default, "spec.defaultBackend")
    causes += _validate_rules(rules, "spec.rules")
    causes += _validate_tls(get(spec, "tls", "spec.tls", list, causes) or [], "spec.tls")
    cls = get(spec, "ingressClassName", "spec.ingressClassName", str, causes)
    if cls is not None:
        causes += [invalid_value("spec.ingressClassName", cls, m) for m in is_dns1123_subdomain(cls)]
    return causes


def ingress_class_of(ing: Obj) -> str | None:
    """spec.ingressClassName, or the older kubernetes.io/ingress.class annotation; None when neither."""
    cls = as_dict(ing.get("spec")).get("ingressClassName")
    if isinstance(cls, str) and cls:
        return cls
    cls = as_dict(as_dict(ing.get("metadata")).get("annotations")).get(INGRESS_CLASS_ANNOTATION)
    return cls if isinstance(cls, str) and cls else None


class IngressStrategy(KindStrategy):
    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {"loadBalancer": {}}

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes = validate_ingress_spec(obj.get("spec"))
        annotation = as_dict(as_dict(obj.get("metadata")).get("annotations")).get(INGRESS_CLASS_ANNOTATION)
        cls = as_dict(obj.get("spec")).get("ingressClassName")
        if isinstance(annotation, str) and isinstance(cls, str) and cls and annotation != cls:
            causes.append(invalid_value(f"annotations.{INGRESS_CLASS_ANNOTATION}", annotation,
                                        "must match `ingressClassName` when both are specified"))
        return causes + _validate_lb_status(obj.get("status"))


def format_hosts(rules: Any) -> str:
    """Up to three hosts, then "+ N more..."; "*" when no rule names a host."""
    rules = dicts(rules)
    hosts = [str(r["host"]) for r in rules if r.get("host")][:3]
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - 3} more..." if len(rules) > 3 and len(hosts) == 3 else text


def load_balancer_cell(status: Any, wide: bool = False) -> str:
    """The ADDRESS column: sorted, unique IPs (or host names), clipped to 16 characters unless wide."""
    found = set()
    for ing in dicts(as_dict(as_dict(status).get("loadBalancer")).get("ingress")):
        v = ing.get("ip") or ing.get("hostname")
        if v:
            found.add(str(v))
    text = ",".join(sorted(found))
    if not wide and len(text) > LOAD_BALANCER_WIDTH:
        text = text[:LOAD_BALANCER_WIDTH - 3] + "..."
    return text


def ingress_row(ing: Obj) -> list[Any]:
    spec = as_dict(ing.get("spec"))
    cls = spec.get("ingressClassName")
    ports = "80, 443" if as_list(spec.get("tls")) else "80"
    return [name_of(ing), cls if isinstance(cls, str) and cls else "<none>", format_hosts(spec.get("rules")),
            load_balancer_cell(ing.get("status")), ports, object_age(ing)]


INGRESS_PRINTER = Printer(
    columns=[
        name_column(),
        Column("Class", description="The name of the IngressClass resource that should be used for this Ingress."),
        Column("Hosts", description="Hosts that incoming requests are matched against before the ingress rule."),
        Column("Address", description="Address is a list containing ingress points for the load-balancer."),
        Column("Ports", description="Ports of TLS configurations that open."),
        age_column(),
    ],
    row=ingress_row,
)


# ======================================================================= IngressClass


def domain_prefixed_path_causes(value: str, path: str) -> list[Cause]:
    """'example.com/name': a DNS subdomain, a slash, then a non-empty URL path."""
    if "/" not in value:
        return [invalid_value(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    host, rest = value.split("/", 1)
    causes = [invalid_value(path, host, m) for m in is_dns1123_subdomain(host)]
    if not rest:
        causes.append(invalid_value(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")'))
    elif not _URL_PATH.match(rest):
        causes.append(invalid_value(path, rest, "Invalid path"))
    return causes


def is_default_class(cls: Obj) -> bool:
    return as_dict(as_dict(cls.get("metadata")).get("annotations")).get(DEFAULT_CLASS_ANNOTATION) == "true"


class IngressClassStrategy(KindStrategy):
    has_status = False

    def default(self, obj: Obj) -> None:
        params = as_dict(obj.get("spec")).get("parameters")
        set_default(params, "scope", "Cluster")

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        spec = get(obj, "spec", "spec", dict, causes) or {}
        controller = get(spec, "controller", "spec.controller", str, causes)
        if not controller:
            if controller == "" or spec.get("controller") is None:
                causes.append(required("spec.controller"))
        else:
            if len(controller) > MAX_CONTROLLER_LENGTH:
                causes.append(too_long("spec.controller", MAX_CONTROLLER_LENGTH))
            causes += domain_prefixed_path_causes(controller, "spec.controller")
        params = get(spec, "parameters", "spec.parameters", dict, causes)
        if params is not None:
            causes += _validate_class_parameters(params, "spec.parameters")
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        new_c, old_c = as_dict(obj.get("spec")).get("controller"), as_dict(old.get("spec")).get("controller")
        if new_c != old_c:
            return [invalid_value("spec.controller", new_c, "field is immutable")]
        return []


def _validate_class_parameters(params: dict, path: str) -> list[Cause]:
    causes = _validate_typed_reference(params, path)
    scope = params.get("scope")
    ns = params.get("namespace")
    if scope is None or scope == "":
        causes.append(required(f"{path}.scope"))
    elif scope not in PARAMETER_SCOPES:
        causes.append(unsupported(f"{path}.scope", scope, PARAMETER_SCOPES))
    elif scope == "Namespace":
        if ns is None:
            causes.append(required_because(f"{path}.namespace", "`parameters.scope` is set to 'Namespace'"))
        elif not isinstance(ns, str):
            causes.append(type_invalid(f"{path}.namespace", ns, str))
        else:
            causes += [invalid_value(f"{path}.namespace", ns, m) for m in is_dns1123_label(ns)]
    elif ns is not None:
        causes.append(forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return causes


def ingress_class_row(cls: Obj) -> list[Any]:
    spec = as_dict(cls.get("spec"))
    params = spec.get("parameters")
    shown = "<none>"
    if isinstance(params, dict):
        shown = str(params.get("kind", ""))
        if params.get("apiGroup"):
            shown += "." + str(params["apiGroup"])
        shown += "/" + str(params.get("name", ""))
    return [name_of(cls), str(spec.get("controller") or ""), shown, object_age(cls)]


INGRESS_CLASS_PRINTER = Printer(
    columns=[
        name_column(),
        Column("Controller", description="Controller refers to the name of the controller that should handle "
                                         "this class."),
        Column("Parameters", description="Parameters is a link to a custom resource containing additional "
                                         "configuration for the controller."),
        age_column(),
    ],
    row=ingress_class_row,
)


# ======================================================================= NetworkPolicy


def _validate_policy_port(port: Any, path: str) -> list[Cause]:
    if not isinstance(port, dict):
        return [type_invalid(path, port, dict)]
    causes: list[Cause] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        causes.append(unsupported(f"{path}.protocol", protocol, sorted(PROTOCOLS)))
    number, end = port.get("port"), port.get("endPort")
    if end is not None and not is_type(end, int):
        return causes + [type_invalid(f"{path}.endPort", end, int)]
    if is_type(number, int):
        causes += [invalid_value(f"{path}.port", number, m) for m in is_port_number(number)]
        if end is not None:
            if end < number:
                causes.append(invalid_value(f"{path}.endPort", end, "must be greater than or equal to `port`"))
            causes += [invalid_value(f"{path}.endPort", end, m) for m in is_port_number(end)]
    elif isinstance(number, str):
        if end is not None:
            causes.append(invalid_value(f"{path}.endPort", end, "may not be specified when `port` is non-numeric"))
        causes += [invalid_value(f"{path}.port", number, m) for m in is_port_name(number)]
    elif number is None:
        if end is not None:
            causes.append(invalid_value(f"{path}.endPort", end, "may not be specified when `port` is not specified"))
    else:
        causes.append(type_invalid(f"{path}.port", number, int))
    return causes


def _cidr_causes(value: Any, path: str) -> tuple[list[Cause], Any]:
    if not isinstance(value, str) or not value:
        return ([required(path)] if not value else [type_invalid(path, value, str)]), None
    try:
        return [], ipaddress.ip_network(value, strict=False)
    except ValueError:
        return [invalid_value(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")], None


def _validate_peer(peer: Any, path: str) -> list[Cause]:
    if not isinstance(peer, dict):
        return [type_invalid(path, peer, dict)]
    causes: list[Cause] = []
    count = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            count += 1
            causes += validate_label_selector(peer[key], f"{path}.{key}")
    block = peer.get("ipBlock")
    if block is not None:
        count += 1
        if not isinstance(block, dict):
            causes.append(type_invalid(f"{path}.ipBlock", block, dict))
        else:
            found, net = _cidr_causes(block.get("cidr"), f"{path}.ipBlock.cidr")
            causes += found
            for i, ex in enumerate(get(block, "except", f"{path}.ipBlock.except", list, causes) or []):
                p = f"{path}.ipBlock.except[{i}]"
                found, exnet = _cidr_causes(ex, p)
                causes += found
                if net is not None and exnet is not None and (
                        exnet.version != net.version or not exnet.subnet_of(net) or exnet.prefixlen <= net.prefixlen):
                    causes.append(invalid_value(p, ex, "must be a strict subset of `cidr`"))
    if count == 0:
        causes.append(required_because(path, "must specify a peer"))
    elif count > 1 and block is not None:
        causes.append(forbidden(path, "may not specify both ipBlock and another peer"))
    return causes


def validate_network_policy_spec(spec: Any) -> list[Cause]:
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        return [type_invalid("spec", spec, dict)]
    causes: list[Cause] = validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(get(spec, direction, f"spec.{direction}", list, causes) or []):
            p = f"spec.{direction}[{i}]"
            if not isinstance(rule, dict):
                causes.append(type_invalid(p, rule, dict))
                continue
            for j, port in enumerate(get(rule, "ports", f"{p}.ports", list, causes) or []):
                causes += _validate_policy_port(port, f"{p}.ports[{j}]")
            for j, peer in enumerate(get(rule, peers, f"{p}.{peers}", list, causes) or []):
                causes += _validate_peer(peer, f"{p}.{peers}[{j}]")
    types = get(spec, "policyTypes", "spec.policyTypes", list, causes) or []
    if len(types) > len(POLICY_TYPES):
        return causes + [invalid_value("spec.policyTypes", types, "may not specify more than two policyTypes")]
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            causes.append(unsupported(f"spec.policyTypes[{i}]", t, POLICY_TYPES))
    return causes


class NetworkPolicyStrategy(KindStrategy):
    """Stored and validated; sendo does not enforce network policies (pods share the host's network)."""

    has_status = False

    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "podSelector", {})
        for direction in ("ingress", "egress"):
            for rule in dicts(spec.get(direction)):
                for port in dicts(rule.get("ports")):
                    set_default(port, "protocol", "TCP")
        if spec.get("policyTypes") is None:
            types = ["Ingress"]
            if spec.get("egress"):
                types.append("Egress")
            spec["policyTypes"] = types

    def validate_object(self, obj: Obj) -> list[Cause]:
        return validate_network_policy_spec(obj.get("spec"))


def network_policy_row(np: Obj) -> list[Any]:
    return [name_of(np), format_selector(as_dict(np.get("spec")).get("podSelector")), object_age(np)]


NETWORK_POLICY_PRINTER = Printer(
    columns=[
        name_column(),
        Column("Pod-Selector", description="Selects the pods to which this NetworkPolicy object applies."),
        age_column(),
    ],
    row=network_policy_row,
)


RESOURCES = [
    Resource(GROUP, "v1", "Ingress", "ingresses", True, short_names=["ing"], subresources={"status"},
             strategy=IngressStrategy(), printer=INGRESS_PRINTER),
    Resource(GROUP, "v1", "IngressClass", "ingressclasses", False, strategy=IngressClassStrategy(),
             printer=INGRESS_CLASS_PRINTER),
    Resource(GROUP, "v1", "NetworkPolicy", "networkpolicies", True, short_names=["netpol"],
             strategy=NetworkPolicyStrategy(), printer=NETWORK_POLICY_PRINTER),
]

