"""Field ownership: metadata.managedFields and server-side apply.

Kubernetes records on every object which client ("manager") last set each of its
fields. Ordinary writes (create, update, non-apply patch) give the fields they change
to their manager (operation ``Update``). Server-side apply (``PATCH`` with
``application/apply-patch+yaml``) sends a manager's whole intent instead: its values
win, the fields it stops sending are removed unless another manager owns them, and
changing a field another manager owns is a conflict unless the request is forced.
This is what lets a person, a CI job and a controller share one object safely.

A field set is a set of paths in the notation of structured-merge-diff (the library
behind the Kubernetes API server), each path a tuple of elements:

* ``f:<name>``   a field of an object;
* ``k:<json>``   an element of a list that has a merge key (``k:{"name":"web"}``);
* ``v:<json>``   an element of a list of primitives that merges as a set.

Other lists, and objects marked atomic (label selectors), are owned as a whole.
Which lists are which comes from the strategic-merge-patch tables in ``patch.py``.
Sets travel as ``fieldsV1``: a trie of those elements where ``"."`` marks a path
that is itself a member and ``{}`` is a member leaf.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

import orjson

from ..kinds.meta import now_rfc3339
from .patch import KIND_SCHEMAS, REPLACE, MergeList

Obj = dict[str, Any]
Path = tuple[str, ...]

APPLY, UPDATE = "Apply", "Update"
FIELDS_V1 = "FieldsV1"
MAX_UPDATE_MANAGERS = 10  # beyond this, the oldest Update entries merge (as in Kubernetes)
ANCIENT_CHANGES = "ancient-changes"
BEFORE_FIRST_APPLY = "before-first-apply"

# Fields nobody owns: they name the object or only the server sets them.
_IGNORED_TOP = frozenset({"apiVersion", "kind"})
_IGNORED_META = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                           "selfLink", "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds"})
# LabelSelector is an atomic struct upstream: owned and replaced as one value.
_ATOMIC_SELECTOR_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job")
_MISSING = object()


# --------------------------------------------------------------------------- schema

@functools.lru_cache(maxsize=None)
def schema_of(kind: str) -> Mapping[str, Any]:
    """The list/merge schema of a kind: patch.py's table plus atomic label selectors."""
    schema = dict(KIND_SCHEMAS.get(kind, {}))
    if kind in _ATOMIC_SELECTOR_KINDS:
        schema["spec"] = {**schema.get("spec", {}), "selector": REPLACE}
    return schema


def _sub(spec: Any, name: str) -> Any:
    if type(spec) is dict:  # nearly always; isinstance against Mapping is an ABC check, ~10x slower
        return spec.get(name)
    return spec.get(name) if isinstance(spec, Mapping) else None


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _copy(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value))


def _list_keys(items: list, spec: MergeList) -> list[str] | None:
    """Each element's path element, or None when the list cannot be keyed (then it is atomic)."""
    keys = []
    for item in items:
        if spec.key is None:
            if isinstance(item, (dict, list)):
                return None
            keys.append("v:" + _json(item))
        else:
            if not isinstance(item, dict) or item.get(spec.key) is None:
                return None
            keys.append("k:" + _json({spec.key: item[spec.key]}))
    return keys if len(set(keys)) == len(keys) else None


# --------------------------------------------------------------------------- field sets

def _collect(value: Any, spec: Any, path: Path, out: set[Path]) -> None:
    """Add the member paths of ``value`` (found at ``path``) to ``out``."""
    if isinstance(value, dict) and value and spec != REPLACE:
        _collect_fields(value, spec, path, out)
        return
    if isinstance(value, list) and value and isinstance(spec, MergeList):
        keys = _list_keys(value, spec)
        if keys is not None:
            for key, item in zip(keys, value):
                here = path + (key,)
                out.add(here)
                if spec.key is not None:
                    _collect_fields(item, spec.item, here, out)
            return
    out.add(path)  # a scalar, an empty object, an atomic list or object


def _collect_fields(obj: Mapping[str, Any], spec: Any, path: Path, out: set[Path]) -> None:
    for name, value in obj.items():
        _collect(value, _sub(spec, name), path + ("f:" + name,), out)


def _tracked(obj: Mapping[str, Any] | None, only: str | None = None, skip: str | None = None) -> Obj:
    """The part of an object whose fields have owners (a shallow view, not a copy)."""
    view: Obj = {}
    for name, value in (obj or {}).items():
        if name in _IGNORED_TOP or name == skip or (only is not None and name != only):
            continue
        if name == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _IGNORED_META}
            if not value:
                continue
        view[name] = value
    return view


def _scope(subresource: str | None, status_subresource: bool) -> tuple[str | None, str | None]:
    """(only, skip): the top-level field an endpoint is limited to, or must leave alone."""
    if subresource == "status":
        return "status", None
    if subresource is None and status_subresource:
        return None, "status"
    return None, None


def field_set(obj: Mapping[str, Any], kind: str, *, subresource: str | None = None,
              status_subresource: bool = False) -> set[Path]:
    """The paths an object (or an applied configuration) specifies."""
    out: set[Path] = set()
    _collect_fields(_tracked(obj, *_scope(subresource, status_subresource)), schema_of(kind), (), out)
    return out


def _diff(old: Any, new: Any, spec: Any, path: Path, changed: set[Path], removed: set[Path]) -> None:
    """Paths added or modified (``changed``) and removed between two values at ``path``.

    Equal subtrees are skipped with one ``==`` (Python's, so 1 == 1.0 == True: a
    change between those alone does not move ownership).
    """
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and old and new and spec != REPLACE:
        _diff_fields(old, new, spec, path, changed, removed)
        return
    if isinstance(old, list) and isinstance(new, list) and old and new and isinstance(spec, MergeList):
        old_keys, new_keys = _list_keys(old, spec), _list_keys(new, spec)
        if old_keys is not None and new_keys is not None:
            by_key = dict(zip(old_keys, old))
            for key, item in zip(new_keys, new):
                here = path + (key,)
                if key not in by_key:
                    changed.add(here)
                    if spec.key is not None:
                        _collect_fields(item, spec.item, here, changed)
                elif spec.key is not None:
                    _diff(by_key[key], item, spec.item, here, changed, removed)
            kept = set(new_keys)
            for key, item in zip(old_keys, old):
                if key not in kept:
                    removed.add(path + (key,))
                    if spec.key is not None:
                        _collect_fields(item, spec.item, path + (key,), removed)
            return
    before: set[Path] = set()
    after: set[Path] = set()
    _collect(old, spec, path, before)
    _collect(new, spec, path, after)
    changed |= after
    removed |= before - after


def _diff_fields(old: Mapping[str, Any], new: Mapping[str, Any], spec: Any, path: Path,
                 changed: set[Path], removed: set[Path]) -> None:
    for name, value in new.items():
        here = path + ("f:" + name,)
        if name in old:
            _diff(old[name], value, _sub(spec, name), here, changed, removed)
        else:
            _collect(value, _sub(spec, name), here, changed)
    for name, value in old.items():
        if name not in new:
            _collect(value, _sub(spec, name), path + ("f:" + name,), removed)


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any], kind: str,
         skip: str | None = None) -> tuple[set[Path], set[Path]]:
    """(changed, removed) owned paths between two versions of an object, leaving out the
    top-level field ``skip``."""
    changed: set[Path] = set()
    removed: set[Path] = set()
    _diff_fields(_tracked(old, skip=skip), _tracked(new, skip=skip), schema_of(kind), (), changed, removed)
    return changed, removed


def path_string(path: Path) -> str:
    """A path as Kubernetes prints it: .spec.containers[name="web"].image"""
    out = []
    for element in path:
        tag, _, arg = element.partition(":")
        if tag == "f":
            out.append("." + arg)
        elif tag == "k":
            try:
                keys = orjson.loads(arg)
                out.append("[" + ",".join(f"{k}={_json(v)}" for k, v in sorted(keys.items())) + "]")
            except (orjson.JSONDecodeError, AttributeError):
                out.append(f"[{arg}]")
        elif tag == "v":
            out.append(f"[={arg}]")
        elif tag == "i":
            out.append(f"[{arg}]")
        else:
            out.append("." + element)
    return "".join(out)


# --------------------------------------------------------------------------- fieldsV1

def encode_fields(paths: Iterable[Path]) -> dict[str, Any]:
    """A field set as a fieldsV1 trie (keys sorted, "." first)."""
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})
        node["."] = {}

    def finish(node: dict[str, Any]) -> dict[str, Any]:
        if set(node) == {"."}:
            return {}
        return {k: ({} if k == "." else finish(node[k])) for k in sorted(node)}
    return finish(root)


def decode_fields(trie: Any, prefix: Path = ()) -> set[Path]:
    """The paths of a fieldsV1 trie. Raises ValueError when it is not one."""
    if not isinstance(trie, dict):
        raise ValueError("fieldsV1 must be an object")
    out: set[Path] = set()
    if not trie and prefix:
        out.add(prefix)
    for element, child in trie.items():
        if element == ".":
            if prefix:
                out.add(prefix)
            continue
        out |= decode_fields(child, prefix + (element,))
    return out


def _trie_has(trie: Any, path: Path) -> bool:
    """Whether a fieldsV1 trie holds ``path`` as a member, without decoding it."""
    node = trie
    for element in path:
        node = node.get(element) if isinstance(node, dict) else None
        if node is None:
            return False
    return isinstance(node, dict) and (not node or "." in node)


class Entry:
    """One metadata.managedFields entry. Its field set is decoded only when needed:
    most writes touch few entries, and the others are passed through as stored."""

    def __init__(self, manager: str, operation: str, api_version: str, fields: set[Path] | None = None,
                 time: str | None = None, subresource: str = "", trie: dict[str, Any] | None = None):
        self.manager, self.operation, self.api_version = manager, operation, api_version
        self.time, self.subresource = time, subresource
        self._fields = fields if fields is not None or trie is not None else set()
        self._trie = trie if fields is None else None

    @property
    def fields(self) -> set[Path]:
        if self._fields is None:
            self._fields = decode_fields(self._trie)
        return self._fields

    @fields.setter
    def fields(self, value: set[Path]) -> None:
        self._fields, self._trie = value, None

    def owns_any(self, paths: set[Path]) -> bool:
        if self._fields is not None:
            return not self._fields.isdisjoint(paths)
        return any(_trie_has(self._trie, p) for p in paths)

    def owns_all(self, paths: set[Path]) -> bool:
        if self._fields is not None:
            return paths <= self._fields
        return all(_trie_has(self._trie, p) for p in paths)

    def is_empty(self) -> bool:
        return not self._trie if self._fields is None else not self._fields

    @property
    def ident(self) -> tuple[str, str, str, str]:
        """Who the entry belongs to; appliers keep one entry whatever the version they use."""
        version = "" if self.operation == APPLY else self.api_version
        return self.manager, self.operation, version, self.subresource

    def describe(self) -> str:
        """How Kubernetes names a manager in a conflict message."""
        text = orjson.dumps(self.manager).decode()
        if self.subresource:
            text += f" with subresource {orjson.dumps(self.subresource).decode()}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text

    def encode(self) -> Obj:
        out: Obj = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = FIELDS_V1
        out["fieldsV1"] = self._trie if self._fields is None else encode_fields(self._fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def decode_entries(raw: Any, check: bool = True) -> list[Entry]:
    """metadata.managedFields as entries; entries of the same manager merge. ValueError if
    malformed; ``check=False`` trusts the tries (ours, as stored) and decodes them lazily."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("managedFields must be a list")
    entries: dict[tuple, Entry] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("a managedFields entry must be an object")
        if item.get("fieldsType") not in (None, "", FIELDS_V1):
            raise ValueError(f"unknown fieldsType {item.get('fieldsType')!r}")
        trie = item.get("fieldsV1") or {}
        if not isinstance(trie, dict):
            raise ValueError("fieldsV1 must be an object")
        e = Entry(str(item.get("manager") or ""), str(item.get("operation") or ""),
                  str(item.get("apiVersion") or ""), decode_fields(trie) if check else None,
                  item.get("time") if isinstance(item.get("time"), str) else None,
                  str(item.get("subresource") or ""), None if check else trie)
        if e.ident in entries:
            entries[e.ident].fields = entries[e.ident].fields | e.fields
        else:
            entries[e.ident] = e
    return list(entries.values())


def encode_entries(entries: Iterable[Entry]) -> list[Obj]:
    """Entries with fields, in Kubernetes' order (Apply first, then oldest first)."""
    kept = [e for e in entries if not e.is_empty()]
    kept.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    return [e.encode() for e in kept]


def _store(obj: Obj, entries: list[Entry]) -> None:
    meta = obj.setdefault("metadata", {})
    encoded = encode_entries(_cap_updates(entries))
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


def _cap_updates(entries: list[Entry]) -> list[Entry]:
    """Keep at most MAX_UPDATE_MANAGERS Update entries: the oldest fold into "ancient-changes"."""
    updates = [e for e in entries if e.operation == UPDATE and not e.is_empty()]
    if len(updates) <= MAX_UPDATE_MANAGERS:
        return entries
    bucket = next((e for e in updates if e.manager == ANCIENT_CHANGES and not e.subresource), None)
    oldest = sorted((e for e in updates if e is not bucket), key=lambda e: e.time or "")
    fold = oldest[:len(updates) - MAX_UPDATE_MANAGERS + (bucket is None)]
    if bucket is None:
        bucket = Entry(ANCIENT_CHANGES, UPDATE, fold[-1].api_version)
        entries = entries + [bucket]
    for e in fold:
        bucket.fields = bucket.fields | e.fields
        bucket.time = max(bucket.time or "", e.time or "") or None
    return [e for e in entries if e not in fold]


# --------------------------------------------------------------------------- Update

def _stored(obj: Obj | None) -> Any:
    return ((obj or {}).get("metadata") or {}).get("managedFields")


def _stored_entries(obj: Obj | None) -> list[Entry]:
    try:
        return decode_entries(_stored(obj), check=False)
    except ValueError:
        return []  # unreadable: start afresh rather than refuse every write


def record_update(old: Obj | None, new: Obj, manager: str, kind: str, subresource: str | None = None, *,
                  api_version: str | None = None, now: str | None = None, status_subresource: bool = False) -> Obj:
    """Record an ordinary write in ``new``'s managedFields (in place; returns ``new``).

    The fields it added or changed become ``manager``'s (one Update entry per manager,
    version and subresource) and leave every other entry; removed fields leave all.
    A client that sends managedFields different from the stored ones replaces them
    (that is how they are reset); one that drops them loses nothing.
    ``status_subresource``: the kind's status is written through /status, so a write of
    the main resource owns none of it (Kubernetes' reset fields: the status a pod is
    created with is the server's, and its creator's entry has no f:status).
    """
    old_raw, new_raw = _stored(old), _stored(new)
    from_client = not subresource and isinstance(new_raw, list) and bool(new_raw) and new_raw != old_raw
    changed, removed = diff(old, new, kind, skip=_scope(subresource, status_subresource)[1])
    if not changed and not removed and not from_client:
        if old_raw:
            new.setdefault("metadata", {})["managedFields"] = old_raw  # untouched: a no-op stays one
        else:
            new.get("metadata", {}).pop("managedFields", None)
        return new
    entries = None
    if from_client:
        try:
            entries = decode_entries(new_raw)
        except ValueError:
            pass  # unreadable: keep the stored ones, as Kubernetes does
    if entries is None:
        entries = _stored_entries(old)
    api_version = api_version or new.get("apiVersion", "")
    ident = (manager, UPDATE, api_version, subresource or "")
    touched = changed | removed
    mine = None
    for e in entries:
        if e.ident == ident:
            mine = e
            if removed and e.owns_any(removed):
                e.fields = e.fields - removed
        elif e.owns_any(touched):
            e.fields = e.fields - touched
    if changed:
        if mine is None:
            mine = Entry(manager, UPDATE, api_version, subresource=subresource or "")
            entries.append(mine)
        if not mine.owns_all(changed):  # a writer changing only its own fields (a Lease renewal,
            mine.fields = mine.fields | changed  # a node's status) keeps its stored trie: only the time moves
        mine.time = now or now_rfc3339()
    _store(new, entries)
    return new


# --------------------------------------------------------------------------- Apply

class ApplyConflict(Exception):
    """Applying would change fields other managers own. ``conflicts``: (manager, path)."""

    def __init__(self, conflicts: list[tuple[str, Path]]):
        self.conflicts = sorted(conflicts)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if len(self.conflicts) == 1:
            who, path = self.conflicts[0]
            return f"Apply failed with 1 conflict: conflict with {who}: {path_string(path)}"
        lines = []
        for who in sorted({w for w, _ in self.conflicts}):
            lines.append(f"conflicts with {who}:")
            lines += [f"- {path_string(p)}" for w, p in self.conflicts if w == who]
        return f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[dict[str, str]]:
        return [{"reason": "FieldManagerConflict", "message": f"conflict with {who}", "field": path_string(p)}
                for who, p in self.conflicts]


def _without_nulls(value: Any) -> Any:
    """A fresh copy of an applied configuration; a null says nothing, so it is dropped."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def _merge(live: Any, cfg: Any, spec: Any) -> Any:
    """``cfg`` merged over ``live`` (both ours to reuse): objects merge, keyed lists merge
    by key, everything else is replaced by the applied value."""
    if isinstance(cfg, dict):
        if isinstance(live, dict) and spec != REPLACE:
            for name, value in cfg.items():
                live[name] = _merge(live.get(name, _MISSING), value, _sub(spec, name))
            return live
        return cfg
    if isinstance(cfg, list) and isinstance(live, list) and isinstance(spec, MergeList):
        live_keys, cfg_keys = _list_keys(live, spec), _list_keys(cfg, spec)
        if live_keys is not None and cfg_keys is not None:
            return _merge_list(live, live_keys, cfg, cfg_keys, spec)
    return cfg


def _merge_list(live: list, live_keys: list[str], cfg: list, cfg_keys: list[str], spec: MergeList) -> list:
    """Merge two keyed lists the way structured-merge-diff orders them: live-only elements
    keep their place, applied elements come in the applied order."""
    live_by = dict(zip(live_keys, live))
    cfg_by = dict(zip(cfg_keys, cfg))
    shared = [k for k in cfg_keys if k in live_by]
    done: set[str] = set()
    out: list = []

    def take(key: str) -> None:
        item = cfg_by[key]
        if spec.key is not None and key in live_by:
            item = _merge(live_by[key], item, spec.item)
        out.append(item)
        done.add(key)

    li = ci = si = 0
    while li < len(live_keys) or ci < len(cfg_keys):
        while si < len(shared) and shared[si] in done:
            si += 1
        if li < len(live_keys):
            key = live_keys[li]
            if ci < len(cfg_keys) and key == cfg_keys[ci]:
                take(key)
                li += 1
                ci += 1
                continue
            if key not in cfg_by:
                out.append(live[li])
                li += 1
                continue
            if key in done or (si < len(shared) and key != shared[si]) or ci >= len(cfg_keys):
                li += 1  # an applied element: it goes where the applied list puts it
                continue
        take(cfg_keys[ci])
        ci += 1
    return out


def _find(items: list, element: str) -> int | None:
    tag, _, arg = element.partition(":")
    try:
        want = orjson.loads(arg)
    except orjson.JSONDecodeError:
        return None
    for i, item in enumerate(items):
        if tag == "k" and isinstance(item, dict) and isinstance(want, dict):
            if all(_json(item.get(k)) == _json(v) for k, v in want.items()):
                return i
        elif tag == "v" and _json(item) == _json(want):
            return i
    return None


def _is_element_key(path: Path) -> bool:
    """Whether ``path`` is a merge-key field of a list element (it goes only with its element)."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    try:
        return path[-1][2:] in orjson.loads(path[-2][2:])
    except (orjson.JSONDecodeError, TypeError):
        return False


def _remove_path(obj: Obj, path: Path, keep: set[Path]) -> None:
    """Remove the value at ``path``, and the objects and lists this leaves empty
    (except the object's metadata and fields someone still owns, listed in ``keep``)."""
    trail: list[tuple[Any, Any]] = []
    node: Any = obj
    for element in path:
        tag, _, arg = element.partition(":")
        if tag == "f" and isinstance(node, dict) and arg in node:
            where: Any = arg
        elif tag in ("k", "v") and isinstance(node, list):
            where = _find(node, element)
            if where is None:
                return
        else:
            return
        trail.append((node, where))
        node = node[where]
    depth = len(path)
    while trail:
        container, where = trail.pop()
        del container[where]
        depth -= 1
        if container or not trail or path[:depth] in keep or path[:depth] == ("f:metadata",):
            return


def apply(live: Obj | None, applied: Obj, manager: str, kind: str, force: bool = False, *,
          subresource: str | None = None, status_subresource: bool = False,
          api_version: str | None = None, now: str | None = None) -> Obj:
    """Server-side apply: the object after ``manager`` applies ``applied`` to ``live``.

    Neither input is changed. Raises ApplyConflict when a field another manager owns
    would change value and ``force`` is false; with ``force`` the field changes owner.
    ``status_subresource``: the kind's status is written only through /status, so a
    main-resource apply neither sets nor owns it.
    """
    only, skip = _scope(subresource, status_subresource)
    schema = schema_of(kind)
    config = _without_nulls(applied)
    if isinstance(config.get("metadata"), dict):
        config["metadata"].pop("managedFields", None)
    if only is not None:  # /status: the rest of the object is not this endpoint's to change
        config = {k: v for k, v in config.items() if k in (only, "apiVersion", "kind")}
    if skip is not None:  # status has its own endpoint: a main-resource apply leaves it alone
        config.pop(skip, None)
    entries = _stored_entries(live)
    if live is not None and not entries:
        # written before fields were tracked: someone set all of it, so applying over it can conflict
        entries = [Entry(BEFORE_FIRST_APPLY, UPDATE, live.get("apiVersion", ""), field_set(live, kind))]
    ident = (manager, APPLY, "", subresource or "")
    mine = next((e for e in entries if e.ident == ident), None)
    applied_set: set[Path] = set()
    _collect_fields(_tracked(config, only, skip), schema, (), applied_set)

    result = _merge(_copy(live) if live else {}, config, schema)
    if mine is not None:
        others: set[Path] = set()
        for e in entries:
            if e is not mine:
                others |= e.fields
        owned = applied_set | others
        above_owned = {p[:i] for p in owned for i in range(1, len(p))}
        for path in sorted(mine.fields - owned, key=len):
            if path not in above_owned and not _is_element_key(path):
                _remove_path(result, path, owned)

    changed: set[Path] = set()
    removed: set[Path] = set()
    _diff_fields(_tracked(live, only, skip), _tracked(result, only, skip), schema, (), changed, removed)
    conflicts = [(e.describe(), p) for e in entries if e is not mine and e.owns_any(changed)
                 for p in e.fields & changed]
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    touched = changed | removed
    for e in entries:
        if e is not mine and e.owns_any(touched):
            e.fields = e.fields - touched
    if mine is None:
        mine = Entry(manager, APPLY, "", subresource=subresource or "")
        entries.append(mine)
    mine.api_version = api_version or result.get("apiVersion") or (live or {}).get("apiVersion", "")
    mine.fields = applied_set
    if changed or removed or mine.time is None:
        mine.time = now or now_rfc3339()
    _store(result, entries)
    return result
