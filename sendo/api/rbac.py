"""RBAC as Kubernetes defines it (rbac.authorization.k8s.io/v1), decided from memory.

* ``Rule``: one PolicyRule, compiled to sets; ``Rule.allows`` is Kubernetes' RuleAllows
  (verbs, apiGroups, resources with ``res/sub``, ``*/sub`` and ``res/*``, resourceNames,
  nonResourceURLs with a trailing ``*``), ``Rule.covers`` its escalation check.
* ``RBACState``: the Roles, ClusterRoles and bindings read from the store and kept by a
  watch on their prefix. Any change marks it dirty; the next question rebuilds it from the
  store (an in-memory read for the embedded store) and clears the per-subject rule sets,
  which are otherwise computed once per (user, groups, namespace) and reused. Writes made
  through this server invalidate it before their response is sent, so a client that
  created a RoleBinding is authorized by it on its next request. Decisions themselves are
  remembered too (per subject, namespace, verb and object) until the next change.
* ``Authorizer``: system:masters may do anything (Kubernetes' privileged group), nodes
  are decided by the node authorizer (``nodeauth.py``), everyone else by their rules.
* Escalation prevention: a Role or ClusterRole may only be written with rules the writer
  holds (or the ``escalate`` verb on it); a binding only to a role whose rules the writer
  holds (or the ``bind`` verb on it); a ClusterRole with an aggregationRule needs full
  authority, as its rules are whatever other roles say.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Iterable

import orjson

from ..kinds.rbac import GROUP
from ..store import Store
from .errors import APIError
from .follow import follow
from .options import SERVER, Decision, RequestOptions, User, current_user
from .paths import Target

log = logging.getLogger(__name__)

MASTERS = "system:masters"
SA_PREFIX = "system:serviceaccount:"
PREFIX = f"/registry/{GROUP}/"
CACHE_MAX = 10_000  # per-subject rule sets kept; cleared beyond (a burst of distinct users)
MAX_ATOMS = 100_000  # single permissions one requested rule may break into for the escalation check
DECISIONS_MAX = 100_000  # decisions kept (per subject, namespace, verb and object); cleared beyond


def _strs(v: Any) -> frozenset[str]:
    return frozenset(x for x in v if isinstance(x, str)) if isinstance(v, list) else frozenset()


@dataclass(frozen=True, slots=True)
class Rule:
    verbs: frozenset[str]
    groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    urls: frozenset[str] = frozenset()

    @classmethod
    def of(cls, rule: Any) -> "Rule | None":
        if not isinstance(rule, dict):
            return None
        return cls(_strs(rule.get("verbs")), _strs(rule.get("apiGroups")), _strs(rule.get("resources")),
                   _strs(rule.get("resourceNames")), _strs(rule.get("nonResourceURLs")))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verbs": sorted(self.verbs)}
        if self.urls:
            out["nonResourceURLs"] = sorted(self.urls)
            return out
        out["apiGroups"] = sorted(self.groups)
        out["resources"] = sorted(self.resources)
        if self.names:
            out["resourceNames"] = sorted(self.names)
        return out

    def _verb(self, verb: str) -> bool:
        return "*" in self.verbs or verb in self.verbs

    def allows(self, verb: str, group: str, resource: str, sub: str | None, name: str | None) -> bool:
        if not self._verb(verb) or not ("*" in self.groups or group in self.groups):
            return False
        rs = self.resources
        if "*" not in rs:
            if sub:
                if f"{resource}/{sub}" not in rs and f"*/{sub}" not in rs and f"{resource}/*" not in rs:
                    return False
            elif resource not in rs:
                return False
        return not self.names or (bool(name) and name in self.names)

    def allows_url(self, verb: str, path: str) -> bool:
        if not self._verb(verb):
            return False
        for u in self.urls:
            if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
                return True
        return False

    def atoms(self) -> Iterable["Rule"]:
        """The rule broken into single permissions (Kubernetes' BreakdownRule)."""
        for verb in self.verbs:
            for url in self.urls:
                yield Rule(frozenset([verb]), urls=frozenset([url]))
            for group in self.groups:
                for res in self.resources:
                    for name in self.names or [""]:
                        yield Rule(frozenset([verb]), frozenset([group]), frozenset([res]),
                                   frozenset([name]) if name else frozenset())

    def covers_whole(self, rule: "Rule") -> bool:
        """A quick, conservative check that this rule grants all of ``rule`` at once."""
        def within(mine: frozenset[str], theirs: frozenset[str]) -> bool:
            return "*" in mine or theirs <= mine
        if not within(self.verbs, rule.verbs):
            return False
        if rule.urls:
            return not rule.groups and ("*" in self.urls or rule.urls <= self.urls)
        return within(self.groups, rule.groups) and within(self.resources, rule.resources) and (
            not self.names or (bool(rule.names) and rule.names <= self.names))

    def covers(self, atom: "Rule") -> bool:
        """Whether this rule grants everything the single permission ``atom`` does."""
        verb = next(iter(atom.verbs))
        if not self._verb(verb):
            return False
        if atom.urls:
            url = next(iter(atom.urls))
            return any(u == "*" or u == url or (u.endswith("*") and url.startswith(u[:-1])) for u in self.urls)
        if self.urls and not self.groups:
            return False
        group, res = next(iter(atom.groups)), next(iter(atom.resources))
        if "*" not in self.groups and group not in self.groups:
            return False
        if "*" not in self.resources and res not in self.resources:
            base, _, sub = res.partition("/")
            if not sub or (f"*/{sub}" not in self.resources and f"{base}/*" not in self.resources):
                return False
        if not self.names:
            return True
        return bool(atom.names) and atom.names <= self.names


def rules_of(obj: Any) -> list[Rule]:
    rules = obj.get("rules") if isinstance(obj, dict) else None
    return [r for r in map(Rule.of, rules if isinstance(rules, list) else []) if r is not None]


def uncovered(owner: list[Rule], requested: list[Rule]) -> list[Rule]:
    """The single permissions in ``requested`` that no rule of ``owner`` grants."""
    missing = []
    for rule in requested:
        if any(o.covers_whole(rule) for o in owner):
            continue
        size = len(rule.verbs) * (len(rule.urls) + len(rule.groups) * len(rule.resources) * max(1, len(rule.names)))
        if size > MAX_ATOMS:  # too many single permissions to check one by one: refused whole
            missing.append(rule)
            continue
        for atom in rule.atoms():
            if not any(o.covers(atom) for o in owner):
                missing.append(atom)
    return missing


@dataclass(slots=True)
class _Binding:
    namespace: str | None  # None: a ClusterRoleBinding
    role_kind: str
    role_name: str
    users: frozenset[str]
    groups: frozenset[str]


def _binding(obj: dict[str, Any], namespace: str | None) -> _Binding | None:
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        return None
    users, groups = set(), set()
    for s in obj.get("subjects") or []:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            continue
        if s.get("kind") == "User":
            users.add(s["name"])
        elif s.get("kind") == "Group":
            groups.add(s["name"])
        elif s.get("kind") == "ServiceAccount":
            ns = s.get("namespace") or namespace
            if isinstance(ns, str) and ns:
                users.add(f"{SA_PREFIX}{ns}:{s['name']}")
    return _Binding(namespace, str(ref.get("kind", "")), str(ref.get("name", "")), frozenset(users),
                    frozenset(groups))


class RBACState:
    """Roles and bindings in memory, with the rules each subject holds per namespace."""

    def __init__(self, store: Store):
        self.store = store
        self.roles: dict[tuple[str, str], list[Rule]] = {}
        self.cluster_roles: dict[str, list[Rule]] = {}
        self.cluster_role_objs: dict[str, dict[str, Any]] = {}
        self.cluster_bindings: list[_Binding] = []
        self.bindings: dict[str, list[_Binding]] = {}
        self._sets: dict[tuple[str, tuple[str, ...], str | None], tuple[Rule, ...]] = {}
        self.decisions: dict[tuple, bool] = {}  # answers given from the current state
        self._generation = 0  # bumped by every invalidation
        self._built = -1  # the generation the state was built at
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.rebuilds = 0

    # ---- life cycle
    def start(self) -> None:
        self._task = asyncio.create_task(self._watch_loop(), name="rbac-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def invalidate(self) -> None:
        self._generation += 1

    async def _watch_loop(self) -> None:
        async def reread() -> int:
            self.invalidate()
            return self.store.revision
        await follow(self.store, PREFIX, self.store.revision, lambda ev: self.invalidate(), reread)

    async def _ensure(self) -> None:
        if self._built == self._generation:
            return
        async with self._lock:
            while self._built != self._generation:
                generation = self._generation
                await self._rebuild()
                self._built = generation

    async def _rebuild(self) -> None:
        roles: dict[tuple[str, str], list[Rule]] = {}
        cluster_roles: dict[str, list[Rule]] = {}
        objs: dict[str, dict[str, Any]] = {}
        cluster_bindings: list[_Binding] = []
        bindings: dict[str, list[_Binding]] = {}
        for plural in ("roles", "clusterroles", "rolebindings", "clusterrolebindings"):
            kvs, _ = await self.store.list(f"{PREFIX}{plural}/")
            for kv in kvs:
                obj = orjson.loads(kv.value)
                meta = obj.get("metadata") or {}
                name, ns = meta.get("name", ""), meta.get("namespace")
                if plural == "roles":
                    roles[(ns, name)] = rules_of(obj)
                elif plural == "clusterroles":
                    cluster_roles[name] = rules_of(obj)
                    objs[name] = obj
                elif (b := _binding(obj, ns if plural == "rolebindings" else None)) is not None:
                    if plural == "rolebindings":
                        bindings.setdefault(ns, []).append(b)
                    else:
                        cluster_bindings.append(b)
        self.roles, self.cluster_roles, self.cluster_role_objs = roles, cluster_roles, objs
        self.cluster_bindings, self.bindings = cluster_bindings, bindings
        self._sets = {}
        self.decisions = {}
        self.rebuilds += 1

    # ---- questions
    def _role_rules(self, b: _Binding) -> list[Rule]:
        if b.role_kind == "ClusterRole":
            return self.cluster_roles.get(b.role_name, [])
        if b.role_kind == "Role" and b.namespace is not None:
            return self.roles.get((b.namespace, b.role_name), [])
        return []

    async def rules_for(self, user: User, namespace: str | None) -> tuple[Rule, ...]:
        """Every rule ``user`` holds in ``namespace`` (None: cluster-wide rules only)."""
        await self._ensure()
        key = (user.name, tuple(user.groups), namespace)
        rules = self._sets.get(key)
        if rules is None:
            groups = set(user.groups)
            out: list[Rule] = []
            for b in self.cluster_bindings + (self.bindings.get(namespace, []) if namespace else []):
                if user.name in b.users or not groups.isdisjoint(b.groups):
                    out.extend(self._role_rules(b))
            rules = tuple(dict.fromkeys(out))  # the same rule from several bindings once
            if len(self._sets) >= CACHE_MAX:
                self._sets.clear()
            self._sets[key] = rules
        return rules

    async def cluster_role(self, name: str) -> dict[str, Any] | None:
        await self._ensure()
        return self.cluster_role_objs.get(name)

    async def role_ref_rules(self, kind: str, name: str, namespace: str | None) -> list[Rule] | None:
        """The rules of a roleRef; None when the role does not exist."""
        await self._ensure()
        if kind == "ClusterRole":
            return self.cluster_roles.get(name)
        return self.roles.get((namespace or "", name))


def request_namespace(t: Target) -> str | None:
    """The namespace a request is about; a namespace's own object counts as in it (RequestInfo)."""
    if t.namespace is None and t.plural == "namespaces" and t.name and not t.group:
        return t.name
    return t.namespace


async def rbac_allows(state: RBACState, user: User, verb: str, t: Target) -> bool:
    ns = request_namespace(t)
    rules = await state.rules_for(user, ns)
    key = (user.name, tuple(user.groups), ns, verb, t.group, t.plural, t.sub, t.name, t.path)
    allowed = state.decisions.get(key)
    if allowed is None:
        allowed = any(rule.allows(verb, t.group, t.plural, t.sub, t.name) if t.plural
                      else bool(rule.urls) and rule.allows_url(verb, t.path) for rule in rules)
        if len(state.decisions) >= DECISIONS_MAX:
            state.decisions.clear()
        state.decisions[key] = allowed
    return allowed


class Authorizer:
    """system:masters, then the node authorizer for nodes, then RBAC."""

    def __init__(self, state: RBACState, nodes=None):
        self.state = state
        self.nodes = nodes  # nodeauth.NodeAuthorizer, or None

    async def authorize(self, options: RequestOptions, verb: str, target: Target) -> Decision:
        return await self.check(options.user, verb, target)

    async def check(self, user: User, verb: str, target: Target) -> Decision:
        if MASTERS in user.groups:
            return Decision(True)
        if self.nodes is not None:
            decision = await self.nodes.authorize(user, verb, target)
            if decision is not None:
                return decision
        return Decision(await rbac_allows(self.state, user, verb, target))


# ----------------------------------------------------------------- escalation prevention

def _describe(rules: list[Rule]) -> str:
    parts = []
    for r in rules[:20]:
        if r.urls:
            parts.append(f"{{NonResourceURLs:{_go(r.urls)}, Verbs:{_go(r.verbs)}}}")
        else:
            names = f", ResourceNames:{_go(r.names)}" if r.names else ""
            parts.append(f"{{APIGroups:{_go(r.groups)}, Resources:{_go(r.resources)}{names}, Verbs:{_go(r.verbs)}}}")
    more = f"\n... and {len(rules) - 20} more" if len(rules) > 20 else ""
    return "\n".join(parts) + more


def _go(v: frozenset[str]) -> str:
    return "[" + " ".join(f'"{x}"' for x in sorted(v)) + "]"


class EscalationGuard:
    """Write guards for the four RBAC kinds (run by ResourceAPI before the store write)."""

    def __init__(self, state: RBACState, authorizer: Authorizer):
        self.state = state
        self.authorizer = authorizer

    def guards(self) -> dict[tuple[str, str], Any]:
        return {(GROUP, "roles"): self.role, (GROUP, "clusterroles"): self.role,
                (GROUP, "rolebindings"): self.binding, (GROUP, "clusterrolebindings"): self.binding}

    async def _verb_allowed(self, user: User, verb: str, plural: str, ns: str | None, name: str) -> bool:
        decision = await self.authorizer.check(user, verb, Target(GROUP, "v1", plural, ns, name))
        return decision.allowed

    @staticmethod
    def _refuse(plural: str, name: str, user: User, detail: str) -> APIError:
        groups = "[" + " ".join(f'"{g}"' for g in user.groups) + "]"
        return APIError(403, f'{plural}.{GROUP} "{name}" is forbidden: user "{user.name}" (groups={groups}) '
                        f"is attempting to grant RBAC permissions not currently held:\n{detail}", "Forbidden",
                        {"name": name, "group": GROUP, "kind": plural})

    @staticmethod
    def _writer(plural: str, obj: dict[str, Any], old: dict[str, Any] | None,
                grants: tuple[str, ...]) -> tuple[User, str | None, str] | None:
        """Who writes, and where: None when there is nothing to check (system:masters, or a
        change that leaves every field in ``grants`` as it was)."""
        user = current_user()
        if MASTERS in user.groups or (old is not None and all(old.get(k) == obj.get(k) for k in grants)):
            return None
        meta = obj["metadata"]
        return user, meta.get("namespace") if plural in ("roles", "rolebindings") else None, meta.get("name", "")

    async def role(self, plural: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        writer = self._writer(plural, obj, old, ("rules", "aggregationRule"))
        if writer is None:
            return
        user, ns, name = writer
        if await self._verb_allowed(user, "escalate", plural, ns, name):
            return
        owner = list(await self.state.rules_for(user, ns))
        if plural == "clusterroles" and obj.get("aggregationRule") is not None:
            missing = uncovered(owner, [Rule(frozenset("*"), frozenset("*"), frozenset("*")),
                                        Rule(frozenset("*"), urls=frozenset("*"))])
        else:
            missing = uncovered(owner, rules_of(obj))
        if missing:
            raise self._refuse(plural, name, user, _describe(missing))

    async def binding(self, plural: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        writer = self._writer(plural, obj, old, ("roleRef", "subjects"))
        if writer is None:
            return
        user, ns, name = writer
        ref = obj.get("roleRef") or {}
        kind, role = ref.get("kind", ""), ref.get("name", "")
        role_plural = "clusterroles" if kind == "ClusterRole" else "roles"
        if await self._verb_allowed(user, "bind", role_plural, ns, role):
            return
        rules = await self.state.role_ref_rules(kind, role, ns)
        if rules is None:
            raise APIError(403, f'{plural}.{GROUP} "{name}" is forbidden: {role_plural}.{GROUP} "{role}" not found',
                           "Forbidden", {"name": name, "group": GROUP, "kind": plural})
        missing = uncovered(list(await self.state.rules_for(user, ns)), rules)
        if missing:
            raise self._refuse(plural, name, user, _describe(missing))


__all__ = ["Authorizer", "EscalationGuard", "RBACState", "Rule", "SERVER", "uncovered"]
