"""The audit log: who did what to which object, and what the API answered.

Kubernetes' design, read from its documentation: a `Policy` (audit.k8s.io/v1) whose
first matching rule gives each request a level — None (not recorded), Metadata (user,
verb, object, response code), Request (and the request body), RequestResponse (and the
response body) — and events written as JSON lines (`Event`, audit.k8s.io/v1) at the
stages RequestReceived and ResponseComplete (ResponseStarted for watches, whose
response never completes), unless the rule or the policy omits a stage. The file is
rotated by size (`--audit-log-maxsize` MiB, `--audit-log-maxbackup` old files kept).

Lines are appended in the order they happen. The lines of one turn of the event loop
are written together, in one append right after that turn (a system call per line was
most of what the log cost a busy server): a crash loses at most the lines of the turn
it interrupts, which is what a crash during a synchronous write per line would lose too.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..configfile import ConfigFileError, load_yaml_file
from ..kinds.meta import micro_time

from .options import verb_of
from .paths import parse_path

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
Obj = dict[str, Any]


class PolicyError(ValueError):
    """An audit policy file that cannot be used; the message names the field at fault."""


def _strings(rule: Obj, key: str, where: str) -> list[str]:
    v = rule.get(key) or []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise PolicyError(f"{where}.{key}: must be a list of strings")
    return v


def _stages(v: Any, where: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or any(s not in STAGES for s in v):
        raise PolicyError(f"{where}: must be a list of stages out of {', '.join(STAGES)}, not {v!r}")
    return v


@dataclass
class GroupResources:
    group: str
    resources: list[str]  # "pods", "pods/log", "pods/*", "*/scale"; empty: all of the group
    names: list[str]

    def matches(self, group: str, resource: str, sub: str, name: str) -> bool:
        if self.group != group:
            return False
        if self.names and name not in self.names:
            return False
        if not self.resources:
            return True
        full = f"{resource}/{sub}" if sub else resource
        for r in self.resources:
            if r in ("*", full) or (r.endswith("/*") and r[:-2] == resource and sub) \
                    or (r.startswith("*/") and r[2:] == sub):
                return True
        return False


@dataclass
class Rule:
    level: str
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    verbs: list[str] = field(default_factory=list)
    resources: list[GroupResources] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # nonResourceURLs, a trailing * matches a prefix
    omit_stages: list[str] = field(default_factory=list)

    def matches(self, req: "AuditRequest") -> bool:
        if self.users and req.user not in self.users:
            return False
        if self.groups and not set(self.groups) & set(req.groups):
            return False
        if self.verbs and req.verb not in self.verbs:
            return False
        if req.resource:
            if self.urls:
                return False
            if self.namespaces and (req.namespace or "") not in self.namespaces:
                return False
            return not self.resources or any(
                g.matches(req.group, req.resource, req.sub, req.name) for g in self.resources)
        if self.resources or self.namespaces:
            return False
        return not self.urls or any(fnmatch.fnmatchcase(req.path, u) if u.endswith("*") else req.path == u
                                    for u in self.urls)


@dataclass
class Policy:
    rules: list[Rule]
    omit_stages: list[str] = field(default_factory=list)
    omit_managed_fields: bool = False

    @classmethod
    def load(cls, path: str) -> "Policy":
        try:
            return cls.parse(load_yaml_file(path, "the audit policy"))
        except ConfigFileError as e:
            raise PolicyError(str(e))

    @classmethod
    def parse(cls, doc: Any) -> "Policy":
        if not isinstance(doc, dict) or doc.get("kind") != "Policy" or \
                doc.get("apiVersion") not in ("audit.k8s.io/v1", "audit.k8s.io/v1beta1"):
            raise PolicyError("an audit policy must be kind: Policy, apiVersion: audit.k8s.io/v1")
        raw = doc.get("rules")
        if not isinstance(raw, list) or not raw:
            raise PolicyError("rules: an audit policy needs at least one rule")
        rules = []
        for i, r in enumerate(raw):
            where = f"rules[{i}]"
            if not isinstance(r, dict):
                raise PolicyError(f"{where}: must be an object")
            if r.get("level") not in LEVELS:
                raise PolicyError(f"{where}.level: must be one of {', '.join(LEVELS)}, not {r.get('level')!r}")
            groups = []
            for j, g in enumerate(r.get("resources") or []):
                if not isinstance(g, dict):
                    raise PolicyError(f"{where}.resources[{j}]: must be an object")
                groups.append(GroupResources(g.get("group") or "", _strings(g, "resources", f"{where}.resources[{j}]"),
                                             _strings(g, "resourceNames", f"{where}.resources[{j}]")))
            rule = Rule(r["level"], _strings(r, "users", where), _strings(r, "userGroups", where),
                        _strings(r, "verbs", where), groups, _strings(r, "namespaces", where),
                        _strings(r, "nonResourceURLs", where), _stages(r.get("omitStages"), f"{where}.omitStages"))
            if rule.urls and (rule.resources or rule.namespaces):
                raise PolicyError(f"{where}: nonResourceURLs cannot be mixed with resources or namespaces")
            rules.append(rule)
        return cls(rules, _stages(doc.get("omitStages"), "omitStages"), bool(doc.get("omitManagedFields")))

    def level_of(self, req: "AuditRequest") -> tuple[str, set[str]]:
        """The level of the first rule `req` matches (None when no rule does) and the stages omitted."""
        for rule in self.rules:
            if rule.matches(req):
                return rule.level, set(self.omit_stages) | set(rule.omit_stages)
        return "None", set()


@dataclass
class AuditRequest:
    """What the policy is matched against, and what an event says of the request."""
    user: str
    groups: list[str]
    verb: str
    path: str
    uri: str
    group: str = ""
    version: str = ""
    resource: str = ""
    sub: str = ""
    namespace: str | None = None
    name: str = ""
    source_ip: str = ""
    user_agent: str = ""
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


class AuditLog:
    """JSON lines appended to a file ("-": standard output), rotated by size."""

    def __init__(self, path: str, max_size_mb: int = 100, max_backups: int = 10):
        self.path = path
        self.max_bytes = max_size_mb * 2**20 if max_size_mb > 0 else 0
        self.max_backups = max_backups
        self._lock = threading.Lock()
        self._pending: list[bytes] = []  # lines of this loop turn, written by flush()
        self._file = None if path == "-" else self._open()

    def _open(self):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # audit holds who did what
        return os.fdopen(fd, "ab", buffering=0)

    def write(self, event: Obj) -> None:
        """Queue the line for the end of this loop turn (at once outside an event loop)."""
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            self._pending.append(line)
            if len(self._pending) > 1:
                return  # a flush is already due
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            data, self._pending = b"".join(self._pending), []
            if not data:
                return
            if self._file is None:
                os.write(1, data)
                return
            self._file.write(data)
            if self.max_bytes and self._file.tell() >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        assert self._file is not None  # only a file is rotated, never standard output
        self._file.close()
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        base, ext = os.path.splitext(self.path)
        target, n = f"{base}-{stamp}{ext}", 1
        while os.path.exists(target):  # two rotations within a millisecond
            target, n = f"{base}-{stamp}.{n}{ext}", n + 1
        os.replace(self.path, target)
        old = sorted(p for p in os.listdir(os.path.dirname(os.path.abspath(self.path)) or ".")
                     if p.startswith(os.path.basename(base) + "-") and p.endswith(ext))
        for p in old[:max(0, len(old) - self.max_backups)]:
            os.unlink(os.path.join(os.path.dirname(os.path.abspath(self.path)), p))
        self._file = self._open()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()


_ids = random.Random(int.from_bytes(os.urandom(16), "big"))


def new_audit_id() -> str:
    """A random (version 4) UUID. An audit ID must be unique, not secret: a seeded PRNG
    draws it without the system call `uuid4()` makes for every request."""
    n = _ids.getrandbits(128) & ~(0xF000 << 64 | 0xC000 << 48) | (0x4000 << 64 | 0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Auditor:
    """Builds the events of one request at its stages, as its policy level says."""

    def __init__(self, policy: Policy, log: AuditLog):
        self.policy = policy
        self.log = log

    def begin(self, req: AuditRequest) -> "AuditRecord | None":
        level, omitted = self.policy.level_of(req)
        if level == "None":
            return None
        rec = AuditRecord(self, req, level, omitted)
        if "RequestReceived" not in omitted:
            self.log.write(rec.event("RequestReceived"))
        return rec


@dataclass
class AuditRecord:
    auditor: Auditor
    req: AuditRequest
    level: str
    omitted: set[str]
    audit_id: str = field(default_factory=new_audit_id)
    received: float = field(default_factory=time.time)
    request_body: Any = None
    annotations: dict[str, str] = field(default_factory=dict)  # e.g. Pod Security's audit-violations

    def event(self, stage: str, code: int | None = None, reason: str = "", response: Any = None) -> Obj:
        r = self.req
        ev: Obj = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": self.level, "auditID": self.audit_id,
                   "stage": stage, "requestURI": r.uri, "verb": r.verb,
                   "user": {"username": r.user, "groups": r.groups, **({"uid": r.uid} if r.uid else {}),
                            **({"extra": r.extra} if r.extra else {})},
                   "sourceIPs": [r.source_ip] if r.source_ip else [], "userAgent": r.user_agent,
                   "requestReceivedTimestamp": micro_time(self.received),
                   "stageTimestamp": micro_time(time.time())}
        if r.resource:
            ref = {"resource": r.resource, "namespace": r.namespace, "name": r.name, "apiGroup": r.group,
                   "apiVersion": r.version, "subresource": r.sub}
            ev["objectRef"] = {k: v for k, v in ref.items() if v}
        if code is not None:
            status: Obj = {"metadata": {}, "code": code}
            if code >= 400:
                status["status"] = "Failure"
                if reason:
                    status["reason"] = reason
            ev["responseStatus"] = status
        if self.annotations:
            ev["annotations"] = dict(self.annotations)
        if self.level in ("Request", "RequestResponse") and self.request_body is not None:
            ev["requestObject"] = self._trim(self.request_body)
        if self.level == "RequestResponse" and response is not None and stage == "ResponseComplete":
            ev["responseObject"] = self._trim(response)
        return ev

    def _trim(self, obj: Any) -> Any:
        if self.auditor.policy.omit_managed_fields and isinstance(obj, dict) and \
                isinstance(obj.get("metadata"), dict) and "managedFields" in obj["metadata"]:
            obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
        return obj

    def started(self, code: int) -> None:
        """A watch (or another long-running request) began answering."""
        if "ResponseStarted" not in self.omitted:
            self.auditor.log.write(self.event("ResponseStarted", code))

    def complete(self, code: int, reason: str = "", response: Any = None) -> None:
        if "ResponseComplete" not in self.omitted:
            self.auditor.log.write(self.event("ResponseComplete", code, reason, response))


# ----------------------------------------------------------------- the API server's side
def audit_begin(auditor: Auditor, request, user) -> AuditRecord | None:
    """The request as the policy sees it; its RequestReceived event (unless omitted)."""
    path = request.url.path
    t = parse_path(path)
    q = request.query_params
    watching = request.method == "GET" and q.get("watch", "").lower() in ("true", "1", "t")
    scope = request.scope
    qs = scope.get("query_string", b"").decode("latin-1")
    req = AuditRequest(user.name, list(user.groups), request.method.lower(), path, path + (f"?{qs}" if qs else ""),
                       source_ip=(scope.get("client") or ("",))[0] or "",
                       user_agent=request.headers.get("user-agent", ""), uid=user.uid, extra=dict(user.extra))
    if t is not None and t.plural:
        req.verb = verb_of(request.method, t, watching and t.name is None)
        req.group, req.version, req.resource, req.sub = t.group, t.version, t.plural, t.sub or ""
        req.namespace, req.name = t.namespace, t.name or ""
    return auditor.begin(req)


def _json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def audit_end(record: AuditRecord, request, response) -> None:
    """ResponseComplete with the code (and the bodies the level asks for); a streamed
    answer (watch, logs) records ResponseStarted instead."""
    code = response.status_code
    if record.level in ("Request", "RequestResponse"):
        record.request_body = request.decoded if request.decoded is not None else _json(request._body)
    body = getattr(response, "body", None)
    if body is None:
        record.started(code)
        return
    created = record.req.verb == "create" and not record.req.name and code < 300
    parsed = _json(body) if code >= 400 or created or record.level == "RequestResponse" else None
    if created and isinstance(parsed, dict):  # a create names its object in the body, not the URL
        record.req.name = (parsed.get("metadata") or {}).get("name") or ""
    reason = parsed.get("reason", "") if code >= 400 and isinstance(parsed, dict) else ""
    if request.options is not None and request.options.audit_annotations:
        record.annotations.update(request.options.audit_annotations)
    record.complete(code, reason, parsed if record.level == "RequestResponse" else None)


@dataclass
class AuditConfig:
    """The --audit-* options of `sendo server` and `sendo up`."""
    policy_file: str | None = None
    log_path: str | None = None
    max_size_mb: int = 100
    max_backups: int = 10

    def check(self) -> None:
        """Refuse options that cannot work, before anything starts (PolicyError names the option)."""
        if bool(self.policy_file) != bool(self.log_path):
            raise PolicyError("--audit-policy-file and --audit-log-path go together: the policy says what "
                              "to record, the path where")
        if self.policy_file:
            Policy.load(self.policy_file)
        if self.max_size_mb < 0 or self.max_backups < 0:
            raise PolicyError("--audit-log-maxsize and --audit-log-maxbackup must not be negative")

    def open(self) -> Auditor | None:
        if not (self.policy_file and self.log_path):
            return None
        return Auditor(Policy.load(self.policy_file), AuditLog(self.log_path, self.max_size_mb, self.max_backups))
