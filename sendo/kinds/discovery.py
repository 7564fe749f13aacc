"""discovery.k8s.io/v1 kinds: EndpointSlices, the addresses behind a Service, in slices.

Each slice holds up to 1,000 endpoints of one address type (IPv4, IPv6 or FQDN) and
the ports they serve. The endpoints controller writes them; the service proxy and DNS
read them. Endpoint IPs may be loopback addresses: sendo's pod IPs are 127.x.
"""
from __future__ import annotations

from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, required, unsupported
from .base import set_default
from .endpoints import endpoint_ip_causes
from .printing import as_dict, as_list, dicts, name_of, object_age
from .validation import (PROTOCOLS, KindStrategy, fits, get, invalid_value, is_dns1123_label, is_dns1123_subdomain,
                         is_label_value, is_qualified_name, is_type, type_invalid, validate_labels)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # the Service an EndpointSlice belongs to

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 20000
MAX_TOPOLOGY_LABELS = 16
MAX_ZONE_HINTS = 8
MAX_SHOWN = 3


def _too_many(path: str, n: int, limit: int) -> Cause:
    return Cause(path, f"Too many: {n}: must have at most {limit} items", "FieldValueTooMany")


def _address_causes(address: Any, address_type: Any, path: str) -> list[Cause]:
    if not isinstance(address, str):
        return [type_invalid(path, address, str)]
    if address_type == "IPv4":
        if address.count(".") != 3 or ":" in address:
            return [invalid_value(path, address, "must be a valid IPv4 address")]
        return endpoint_ip_causes(address, path)
    if address_type == "IPv6":
        if ":" not in address:
            return [invalid_value(path, address, "must be a valid IPv6 address")]
        return endpoint_ip_causes(address, path)
    if address_type == "FQDN":
        name = address.rstrip(".")
        if "." not in name or is_dns1123_subdomain(name.lower()):
            return [invalid_value(path, address, "should be a domain with at least two segments separated by dots")]
    return []


def _validate_hints(hints: Any, path: str) -> list[Cause]:
    if not isinstance(hints, dict):
        return [type_invalid(path, hints, dict)]
    causes: list[Cause] = []
    zones = get(hints, "forZones", f"{path}.forZones", list, causes)
    if zones is None:
        return causes
    if len(zones) > MAX_ZONE_HINTS:
        return [_too_many(f"{path}.forZones", len(zones), MAX_ZONE_HINTS)]
    seen: set[str] = set()
    for i, zone in enumerate(zones):
        p = f"{path}.forZones[{i}].name"
        name = as_dict(zone).get("name")
        if not isinstance(name, str):
            causes.append(type_invalid(p, name, str))
            continue
        if name in seen:
            causes.append(Cause(p, f'Duplicate value: "{name}"', "FieldValueDuplicate"))
        seen.add(name)
        causes += [invalid_value(p, name, m) for m in is_label_value(name)]
    return causes


def validate_endpoints(endpoints: Any, address_type: Any) -> list[Cause]:
    if endpoints is None:
        return []
    if not isinstance(endpoints, list):
        return [type_invalid("endpoints", endpoints, list)]
    if len(endpoints) > MAX_ENDPOINTS:
        return [_too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    causes: list[Cause] = []
    for i, ep in enumerate(endpoints):
        p = f"endpoints[{i}]"
        if not isinstance(ep, dict):
            causes.append(type_invalid(p, ep, dict))
            continue
        addresses = get(ep, "addresses", f"{p}.addresses", list, causes)
        if not addresses:
            causes.append(Cause(f"{p}.addresses", "Required value: must contain at least 1 address",
                                "FieldValueRequired"))
        elif len(addresses) > MAX_ADDRESSES:
            causes.append(_too_many(f"{p}.addresses", len(addresses), MAX_ADDRESSES))
        for j, address in enumerate(addresses or []):
            causes += _address_causes(address, address_type, f"{p}.addresses[{j}]")
        for key, check in (("nodeName", is_dns1123_subdomain), ("hostname", is_dns1123_label)):
            v = get(ep, key, f"{p}.{key}", str, causes)
            if v is not None:
                causes += [invalid_value(f"{p}.{key}", v, m) for m in check(v)]
        conditions = get(ep, "conditions", f"{p}.conditions", dict, causes) or {}
        for key in ("ready", "serving", "terminating"):
            get(conditions, key, f"{p}.conditions.{key}", bool, causes)
        topology = ep.get("deprecatedTopology")
        if isinstance(topology, dict) and len(topology) > MAX_TOPOLOGY_LABELS:
            causes.append(_too_many(f"{p}.deprecatedTopology", len(topology), MAX_TOPOLOGY_LABELS))
        causes += validate_labels(topology, f"{p}.deprecatedTopology")
        get(ep, "zone", f"{p}.zone", str, causes)
        get(ep, "targetRef", f"{p}.targetRef", dict, causes)
        if ep.get("hints") is not None:
            causes += _validate_hints(ep["hints"], f"{p}.hints")
    return causes


def validate_slice_ports(ports: Any) -> list[Cause]:
    if ports is None:
        return []
    if not isinstance(ports, list):
        return [type_invalid("ports", ports, list)]
    if len(ports) > MAX_PORTS:
        return [_too_many("ports", len(ports), MAX_PORTS)]
    causes: list[Cause] = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"ports[{i}]"
        if not isinstance(port, dict):
            causes.append(type_invalid(p, port, dict))
            continue
        name = get(port, "name", f"{p}.name", str, causes) or ""
        if name:
            causes += [invalid_value(f"{p}.name", name, m) for m in is_dns1123_label(name)]
        if name in names:
            causes.append(Cause(f"{p}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate"))
        names.add(name)
        protocol = port.get("protocol")
        if protocol is None:
            causes.append(required(f"{p}.protocol"))
        elif protocol not in PROTOCOLS:
            causes.append(unsupported(f"{p}.protocol", protocol, PROTOCOLS))
        number = port.get("port")
        if number is not None and not is_type(number, int):
            causes.append(type_invalid(f"{p}.port", number, int))
        elif number is not None:
            fits(number, f"{p}.port", causes)
        app = get(port, "appProtocol", f"{p}.appProtocol", str, causes)
        if app:
            causes += [invalid_value(f"{p}.appProtocol", app, m) for m in is_qualified_name(app)]
    return causes


def _more(shown: list[str], count: int) -> str:
    text = ",".join(shown)
    if count > MAX_SHOWN:
        return f"{text} + {count - MAX_SHOWN} more..."
    return text or "<unset>"


def slice_ports_cell(ports: Any) -> str:
    """"80,443", "*" for a port with neither number nor name, "<unset>" when there are none."""
    shown = []
    for port in dicts(ports)[:MAX_SHOWN]:
        number, name = port.get("port"), port.get("name")
        shown.append(str(number) if number is not None else str(name) if name is not None else "*")
    return _more(shown, len(dicts(ports)))


def slice_endpoints_cell(endpoints: Any) -> str:
    addresses = [str(a) for ep in dicts(endpoints) for a in as_list(ep.get("addresses"))]
    return _more(addresses[:MAX_SHOWN], len(addresses))


def endpointslice_row(es: Obj) -> list[Any]:
    address_type = es.get("addressType")
    return [name_of(es), address_type if isinstance(address_type, str) else "",
            slice_ports_cell(es.get("ports")), slice_endpoints_cell(es.get("endpoints")), object_age(es)]


ENDPOINTSLICE_PRINTER = Printer(
    columns=[
        Column("Name", format="name", description="Name of the object, unique within its namespace."),
        Column("AddressType", description="IPv4, IPv6 or FQDN."),
        Column("Ports", description="The ports the endpoints serve."),
        Column("Endpoints", description="The endpoints' addresses."),
        Column("Age", description="Time since the object was created."),
    ],
    row=endpointslice_row,
)


class EndpointSliceStrategy(KindStrategy):
    """No status; a change to the endpoints or ports counts a generation."""

    has_status = False

    def default(self, obj: Obj) -> None:
        for port in dicts(obj.get("ports")):
            set_default(port, "name", "")
            set_default(port, "protocol", "TCP")

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        address_type = obj.get("addressType")
        if address_type is None or address_type == "":
            causes.append(required("addressType"))
        elif address_type not in ADDRESS_TYPES:
            causes.append(unsupported("addressType", address_type, ADDRESS_TYPES))
        causes += validate_endpoints(obj.get("endpoints"), address_type)
        causes += validate_slice_ports(obj.get("ports"))
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        if obj.get("addressType") != old.get("addressType"):
            return [invalid_value("addressType", obj.get("addressType"), "field is immutable")]
        return []


RESOURCES = [
    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True, strategy=EndpointSliceStrategy(),
             printer=ENDPOINTSLICE_PRINTER),
]
