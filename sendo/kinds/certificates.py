"""certificates.k8s.io/v1 CertificateSigningRequest: a request for a certificate, approved
or denied by a person (`kubectl certificate approve|deny`, the `approval` subresource)
and, once approved, issued by its signer (sendo signs `kubernetes.io/kube-apiserver-client`
with the cluster CA: controllers/csrsigning.py).

Rules are Kubernetes' (pkg/apis/certificates/validation): the request is a PEM
`CERTIFICATE REQUEST`, the signer a domain-qualified name, Approved and Denied exclude
each other and, once set, stay; the certificate is set once, and only on an approved
request. The spec never changes; `spec.username/uid/groups/extra` are the requester's,
set by the API server.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from .base import Cause, Column, Obj, Printer, Resource, duplicate, forbidden, required, unsupported
from .printing import age_column, as_dict, human_duration, name_column, name_of, object_age
from .validation import KindStrategy, check_int, get, invalid_value, is_dns1123_subdomain

GROUP = "certificates.k8s.io"
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"
# what a spec.usages entry may say (KeyUsage in certificates/v1)
USAGES = ["signing", "digital signature", "content commitment", "key encipherment", "key agreement",
          "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
          "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
          "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]
MIN_EXPIRATION_SECONDS = 600


def decode_bytes(value: Any) -> bytes | None:
    """A JSON []byte field (base64); None when it is not valid base64."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_request(pem: bytes):
    """The x509 CSR in a PEM `CERTIFICATE REQUEST` block; ValueError saying what is wrong."""
    from cryptography import x509
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    try:
        return x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise ValueError(f"the certificate request does not parse: {e}")


def conditions(csr: Obj) -> list[dict]:
    conds = as_dict(csr.get("status")).get("conditions")
    return [c for c in conds if isinstance(c, dict)] if isinstance(conds, list) else []


def has_condition(csr: Obj, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True" for c in conditions(csr))


def set_requester(obj: Obj, username: str, uid: str, groups: list[str], extra: dict[str, list[str]]) -> None:
    """Who asked, from the request's authentication, over whatever the body said."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    for key in ("username", "uid", "groups", "extra"):
        spec.pop(key, None)
    spec["username"] = username
    if uid:
        spec["uid"] = uid
    if groups:
        spec["groups"] = list(groups)
    if extra:
        spec["extra"] = {k: list(v) for k, v in extra.items()}


def _condition_cell(csr: Obj) -> str:
    shown = [str(c.get("type")) for c in conditions(csr) if c.get("status", "True") == "True"]
    if as_dict(csr.get("status")).get("certificate"):
        shown.append("Issued")
    return ",".join(shown) or "Pending"


def _duration_cell(csr: Obj) -> str:
    seconds = as_dict(csr.get("spec")).get("expirationSeconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return "<none>"
    return human_duration(seconds)


CSR_PRINTER = Printer(
    columns=[
        name_column(),
        age_column(),
        Column("SignerName", description="Who is asked to sign the request."),
        Column("Requestor", description="Who made the request."),
        Column("RequestedDuration", description="How long the certificate is asked to be valid."),
        Column("Condition", description="Approved, Denied, Failed, Issued, or Pending."),
    ],
    row=lambda csr: [name_of(csr), object_age(csr), str(as_dict(csr.get("spec")).get("signerName") or ""),
                     str(as_dict(csr.get("spec")).get("username") or ""), _duration_cell(csr), _condition_cell(csr)],
)


def _check_signer(value: Any, causes: list[Cause]) -> None:
    path = "spec.signerName"
    if value is None or value == "":
        causes.append(required(path))
        return
    if not isinstance(value, str):
        causes.append(invalid_value(path, value, "must be a string"))
        return
    domain, slash, rest = value.partition("/")
    if not slash or not rest or "/" in rest:
        causes.append(invalid_value(path, value, "must be a fully qualified domain and path of the form "
                                    "'example.com/signer-name'"))
    elif errs := is_dns1123_subdomain(domain):
        causes.append(invalid_value(path, value, "the domain part " + "; ".join(errs)))
    elif len(value) > 571:
        causes.append(invalid_value(path, value, "must be no more than 571 characters"))


def _check_conditions(obj: Obj, causes: list[Cause]) -> None:
    status = get(obj, "status", "status", dict, causes) or {}
    conds = get(status, "conditions", "status.conditions", list, causes) or []
    seen: set[str] = set()
    for i, c in enumerate(conds):
        path = f"status.conditions[{i}]"
        if not isinstance(c, dict):
            causes.append(invalid_value(path, c, "must be an object"))
            continue
        kind = c.get("type")
        if not isinstance(kind, str) or not kind:
            causes.append(required(f"{path}.type"))
            continue
        state = c.get("status", "True")
        if state not in ("True", "False", "Unknown"):
            causes.append(unsupported(f"{path}.status", state, ["True", "False", "Unknown"]))
        elif kind in (APPROVED, DENIED) and state != "True":
            causes.append(unsupported(f"{path}.status", state, ["True"]))
        if kind in (APPROVED, DENIED, FAILED) and kind in seen:
            causes.append(duplicate(f"{path}.type", kind))
        seen.add(kind)
        for key in ("reason", "message", "lastUpdateTime", "lastTransitionTime"):
            get(c, key, f"{path}.{key}", str, causes)
    if APPROVED in seen and DENIED in seen:
        causes.append(invalid_value("status.conditions", "", "Approved and Denied conditions are mutually "
                                    "exclusive"))
    cert = status.get("certificate")
    if cert is not None and cert != "":
        pem = decode_bytes(cert)
        if pem is None or b"-----BEGIN CERTIFICATE-----" not in pem:
            causes.append(invalid_value("status.certificate", "<certificate data>",
                                        "must be base64 of one or more PEM CERTIFICATE blocks"))
        elif APPROVED not in seen:
            causes.append(forbidden("status.certificate", "only allowed on an Approved request"))
        elif FAILED in seen:
            causes.append(forbidden("status.certificate", "not allowed on a Failed request"))


class CertificateSigningRequestStrategy(KindStrategy):
    """The spec is set once; status holds the approval conditions and the certificate."""

    def prepare_create(self, obj: Obj) -> None:
        obj.pop("status", None)

    def validate_object(self, obj: Obj) -> list[Cause]:
        causes: list[Cause] = []
        spec = get(obj, "spec", "spec", dict, causes)
        if spec is None:
            return causes or [required("spec")]
        raw = spec.get("request")
        if raw is None or raw == "":
            causes.append(required("spec.request"))
        else:
            pem = decode_bytes(raw)
            if pem is None:
                causes.append(invalid_value("spec.request", "<request data>", "must be base64 of a PEM block"))
            else:
                try:
                    parse_request(pem)
                except ValueError as e:
                    causes.append(invalid_value("spec.request", "<request data>", str(e)))
        _check_signer(spec.get("signerName"), causes)
        check_int(spec, "expirationSeconds", "spec.expirationSeconds", causes, minimum=MIN_EXPIRATION_SECONDS)
        usages = get(spec, "usages", "spec.usages", list, causes) or []
        for i, u in enumerate(usages):
            if u not in USAGES:
                causes.append(unsupported(f"spec.usages[{i}]", u, USAGES))
            elif u in usages[:i]:
                causes.append(duplicate(f"spec.usages[{i}]", u))
        get(spec, "username", "spec.username", str, causes)
        _check_conditions(obj, causes)
        return causes

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        causes: list[Cause] = []
        if obj.get("spec") != old.get("spec"):
            causes.append(forbidden("spec", "updates to a certificate signing request's spec are forbidden"))
        for kind in (APPROVED, DENIED):
            if has_condition(old, kind) and not has_condition(obj, kind):
                causes.append(forbidden("status.conditions", f"updates may not remove a condition of type {kind!r}"))
        old_cert = as_dict(old.get("status")).get("certificate")
        if old_cert and as_dict(obj.get("status")).get("certificate") != old_cert:
            causes.append(forbidden("status.certificate", "updates may not modify existing certificate content"))
        return causes

    def update_subresource(self, sub: str, obj: Obj, old: Obj) -> Obj | None:
        """`approval` changes only the Approved/Denied conditions; `status` all but them."""
        new = dict(old)
        status = dict(as_dict(old.get("status")))
        sent = as_dict(obj.get("status"))
        if sub == "approval":
            keep = [c for c in conditions(old) if c.get("type") not in (APPROVED, DENIED)]
            given = sent.get("conditions")
            given = given if isinstance(given, list) else []
            status["conditions"] = keep + [c for c in given
                                           if not isinstance(c, dict) or c.get("type") in (APPROVED, DENIED)]
        elif sub == "status":
            given = sent.get("conditions")
            given = given if isinstance(given, list) else []
            status = dict(sent)
            status["conditions"] = [c for c in conditions(old) if c.get("type") in (APPROVED, DENIED)] + \
                [c for c in given if not isinstance(c, dict) or c.get("type") not in (APPROVED, DENIED)]
        else:
            return None
        if not status.get("conditions"):
            status.pop("conditions", None)
        new["status"] = status
        return new


RESOURCES = [
    Resource(GROUP, "v1", "CertificateSigningRequest", "certificatesigningrequests", False, short_names=["csr"],
             subresources={"status", "approval"}, strategy=CertificateSigningRequestStrategy(),
             printer=CSR_PRINTER),
]
