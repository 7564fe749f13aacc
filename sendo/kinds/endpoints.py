"""Endpoints (v1): subsets of addresses and ports behind a Service."""
from __future__ import annotations

import ipaddress
from typing import Any

from .base import Cause, Column, Obj, Printer, required, set_default
from .printing import age_column, dicts, name_column, name_of, object_age
from .validation import (check_enum, get, invalid_value, is_dns1123_label, is_dns1123_subdomain, is_port_number,
                         is_qualified_name, is_type, NoStatus, PROTOCOLS, required_because, type_invalid)


# ======================================================================= Endpoints

MAX_ENDPOINTS_SHOWN = 3


def _join_host_port(ip: Any, port: Any) -> str:
    ip = str(ip)
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def endpoints_cell(ep: Obj) -> str:
    """ "127.64.0.1:8080,127.64.0.2:8080 + 3 more...", addresses alone for port-less (headless) subsets, or <none>."""
    subsets = dicts(ep.get("subsets"))
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for ss in subsets:
        addresses = dicts(ss.get("addresses"))
        ports = dicts(ss.get("ports"))
        if not ports:
            count += len(addresses)
            shown += [str(a.get("ip", "")) for a in addresses][:MAX_ENDPOINTS_SHOWN - len(shown)]
            continue
        for port in ports:
            count += len(addresses)
            for a in addresses:
                if len(shown) == MAX_ENDPOINTS_SHOWN:
                    break
                shown.append(_join_host_port(a.get("ip", ""), port.get("port")))
    text = ",".join(shown)
    return f"{text} + {count - MAX_ENDPOINTS_SHOWN} more..." if count > MAX_ENDPOINTS_SHOWN else text


def endpoints_row(ep: Obj) -> list[Any]:
    return [name_of(ep), endpoints_cell(ep), object_age(ep)]


ENDPOINTS_PRINTER = Printer(
    columns=[name_column(), Column("Endpoints", description="Addresses and ports behind the service."),
             age_column()],
    row=endpoints_row,
)


_LINK_LOCAL_MULTICAST = (ipaddress.ip_network("224.0.0.0/24"), ipaddress.ip_network("ff02::/16"))


def endpoint_ip_causes(ip: Any, path: str) -> list[Cause]:
    """An endpoint IP: a real unicast address. Loopback is allowed: sendo's pod IPs are 127.x by design."""
    if not isinstance(ip, str) or not ip:
        return [required(path)] if not ip else [type_invalid(path, ip, str)]
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return [invalid_value(path, ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    causes = []
    if addr.is_unspecified:
        causes.append(invalid_value(path, ip, f"may not be unspecified ({ip})"))
    if addr.is_link_local:
        causes.append(invalid_value(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if addr.is_multicast and any(addr in net for net in _LINK_LOCAL_MULTICAST if net.version == addr.version):
        causes.append(invalid_value(path, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return causes


def _validate_endpoint_address(addr: Any, path: str) -> list[Cause]:
    if not isinstance(addr, dict):
        return [type_invalid(path, addr, dict)]
    causes = endpoint_ip_causes(addr.get("ip"), f"{path}.ip")
    for key, check in (("hostname", is_dns1123_label), ("nodeName", is_dns1123_subdomain)):
        v = get(addr, key, f"{path}.{key}", str, causes)
        if v:
            causes += [invalid_value(f"{path}.{key}", v, m) for m in check(v)]
    get(addr, "targetRef", f"{path}.targetRef", dict, causes)
    return causes


def _validate_endpoint_port(port: Any, path: str, require_name: bool) -> list[Cause]:
    if not isinstance(port, dict):
        return [type_invalid(path, port, dict)]
    causes: list[Cause] = []
    name = get(port, "name", f"{path}.name", str, causes)
    if require_name and not name:
        causes.append(required(f"{path}.name"))
    elif name:
        causes += [invalid_value(f"{path}.name", name, m) for m in is_dns1123_label(name)]
    number = port.get("port")
    if not is_type(number, int):
        causes.append(type_invalid(f"{path}.port", number, int))
    else:
        causes += [invalid_value(f"{path}.port", number, m) for m in is_port_number(number)]
    check_enum(port.get("protocol"), f"{path}.protocol", PROTOCOLS, causes)
    app = get(port, "appProtocol", f"{path}.appProtocol", str, causes)
    if app:
        causes += [invalid_value(f"{path}.appProtocol", app, m) for m in is_qualified_name(app)]
    return causes


def validate_endpoint_subsets(subsets: Any) -> list[Cause]:
    if subsets is None:
        return []
    if not isinstance(subsets, list):
        return [type_invalid("subsets", subsets, list)]
    causes: list[Cause] = []
    for i, ss in enumerate(subsets):
        p = f"subsets[{i}]"
        if not isinstance(ss, dict):
            causes.append(type_invalid(p, ss, dict))
            continue
        addresses = get(ss, "addresses", f"{p}.addresses", list, causes) or []
        not_ready = get(ss, "notReadyAddresses", f"{p}.notReadyAddresses", list, causes) or []
        if not addresses and not not_ready:
            causes.append(required_because(p, "must specify `addresses` or `notReadyAddresses`"))
        for j, addr in enumerate(addresses):
            causes += _validate_endpoint_address(addr, f"{p}.addresses[{j}]")
        for j, addr in enumerate(not_ready):
            causes += _validate_endpoint_address(addr, f"{p}.notReadyAddresses[{j}]")
        ports = get(ss, "ports", f"{p}.ports", list, causes) or []
        for j, port in enumerate(ports):
            causes += _validate_endpoint_port(port, f"{p}.ports[{j}]", len(ports) > 1)
    return causes


class EndpointsStrategy(NoStatus):
    def default(self, obj: Obj) -> None:
        for ss in dicts(obj.get("subsets")):
            for port in dicts(ss.get("ports")):
                set_default(port, "protocol", "TCP")

    def validate_object(self, obj: Obj) -> list[Cause]:
        return validate_endpoint_subsets(obj.get("subsets"))
