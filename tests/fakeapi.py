"""A fake API for reconcile-level unit tests, in kubernetes/sample-controller's style.

A test seeds objects, calls a controller's `reconcile(key)` directly and asserts the
API calls it made: no server, no watch, no timing. Two pieces:

* `FakeClient` is the real `sendo.client.Client` with only `request()` replaced, so
  every verb builds its URL and body exactly as in production. Each call is recorded
  as a `Call`; a small in-memory object map answers like the API server would (names
  from generateName, uid, resourceVersion, 404, 409 on a stale resourceVersion, merge
  and JSON patches through the server's own patch code).
* `FakeInformers` is an `InformerFactory` whose informers are never started: their
  caches hold what the test seeds, and `sync()` brings them up to the fake server's
  state (firing the controller's handlers) the way a watch would.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Any

from sendo.api.patch import json_merge_patch, json_patch, strategic_merge_patch
from sendo.client import ApiError, Client, Informer, obj_key, path
from sendo.client.factory import InformerFactory
from sendo.client.rest import ServerList
from sendo.kinds.base import Resource

Obj = dict[str, Any]


@dataclass(frozen=True)
class Call:
    """One API request a controller made."""
    method: str
    path: str
    body: Any = None
    content_type: str = "application/json"

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


def _error(code: int, reason: str, message: str) -> ApiError:
    return ApiError(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                           "reason": reason, "message": message})


class FakeClient(Client):
    """Records every request and answers from an in-memory map of object paths."""

    def __init__(self) -> None:  # no session, no TLS: nothing here opens a socket
        self.servers = ServerList("https://fake.invalid")
        self.token, self.user_agent, self.timeout = "fake", "test", 1.0
        self.ssl, self._session = None, None
        self.calls: list[Call] = []
        self.objects: dict[str, Obj] = {}  # object path -> stored object
        self.failures: dict[tuple[str, str], ApiError] = {}  # (method, path) -> error, raised once
        self._rv = itertools.count(1000)
        self._names = itertools.count(1)

    # ------------------------------------------------------------- what tests use
    def put(self, r: Resource, obj: Obj) -> Obj:
        """Store obj as the server would hold it (uid, resourceVersion filled in)."""
        obj = copy.deepcopy(obj)
        m = obj.setdefault("metadata", {})
        m.setdefault("uid", f"uid-{m['name']}")
        m.setdefault("resourceVersion", str(next(self._rv)))
        m.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        m.setdefault("generation", 1)
        obj.setdefault("apiVersion", r.api_version)
        obj.setdefault("kind", r.kind)
        self.objects[path(r, m.get("namespace"), m["name"])] = obj
        return obj

    def remove(self, r: Resource, ns: str | None, name: str) -> None:
        """The object is gone from the server (deleted by someone else)."""
        del self.objects[path(r, ns, name)]

    def writes(self) -> list[Call]:
        """Every call that changes something, without Events (those go out in the background)."""
        return [c for c in self.calls if c.method != "GET" and "/events" not in c.path]

    def fail(self, method: str, url: str, code: int = 500, reason: str = "InternalError") -> None:
        """Make the next `method url` answer an error."""
        self.failures[(method, url)] = _error(code, reason, f"injected by the test: {method} {url}")

    async def close(self) -> None:
        pass

    # ------------------------------------------------------------- the fake server
    async def request(self, method: str, url: str, *, body: Any = None, params: dict | None = None,
                      content_type: str = "application/json") -> Any:
        self.calls.append(Call(method, url, copy.deepcopy(body), content_type))
        err = self.failures.pop((method, url), None)
        if err is not None:
            raise err
        return copy.deepcopy(getattr(self, "_" + method.lower())(url, copy.deepcopy(body), content_type))

    @staticmethod
    def _rest(url: str) -> list[str]:
        """The path after /api/v1 or /apis/<group>/<version>."""
        parts = url.strip("/").split("/")
        return parts[2:] if parts[0] == "api" else parts[3:]

    def _get(self, url: str, body: Any, content_type: str) -> Any:
        if url in self.objects:  # an object, or a discovery document a test stored
            return self.objects[url]
        rest = self._rest(url)
        if len(rest) == 1 or (len(rest) == 3 and rest[0] == "namespaces"):  # a collection
            items = [o for p, o in sorted(self.objects.items()) if p.rpartition("/")[0] == url]
            return {"kind": "List", "metadata": {"resourceVersion": str(next(self._rv))}, "items": items}
        raise _error(404, "NotFound", f"{url} not found")

    def _object(self, url: str) -> Obj | None:
        """The object stored at url (discovery documents stored by a test are not objects)."""
        obj = self.objects.get(url)
        return obj if obj is not None and "name" in (obj.get("metadata") or {}) else None

    def _is_subresource(self, url: str) -> bool:
        """Whether a POST url names a subresource (pods/x/binding) rather than a collection:
        plural/name/sub or namespaces/ns/plural/name/sub; namespaces/ns/plural is a collection."""
        rest = self._rest(url)
        return len(rest) == 5 or (len(rest) == 3 and rest[0] != "namespaces")

    def _post(self, url: str, body: Any, content_type: str) -> Any:
        if self._is_subresource(url):
            self._stored(url)  # 404 when the object is not there
            return {"kind": "Status", "status": "Success"}
        m = body.setdefault("metadata", {})
        if not m.get("name"):
            m["name"] = f"{m.get('generateName', 'obj-')}{next(self._names):05d}"
        key = f"{url}/{m['name']}"
        if key in self.objects:
            raise _error(409, "AlreadyExists", f"{m['name']} already exists")
        m.setdefault("uid", f"uid-{m['name']}")
        m["resourceVersion"] = str(next(self._rv))
        self.objects[key] = body
        return body

    def _stored(self, url: str) -> tuple[str, Obj]:
        """The object a write names (the object itself, or the parent of a subresource)."""
        for p in (url, url.rpartition("/")[0]):
            if self._object(p) is not None:
                return p, self.objects[p]
        raise _error(404, "NotFound", f"{url} not found")

    def _check_rv(self, cur: Obj, new: Obj) -> None:
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv and rv != cur["metadata"]["resourceVersion"]:
            raise _error(409, "Conflict", "the object has been modified; please apply your changes "
                                          "to the latest version and try again")

    def _put(self, url: str, body: Any, content_type: str) -> Any:
        key, cur = self._stored(url)
        self._check_rv(cur, body)
        new = copy.deepcopy(cur)
        if key == url:
            new = body
        elif url.endswith("/status"):
            new["status"] = body.get("status")
        else:  # finalize, scale: the sub-object the subresource names
            new["spec"] = {**(new.get("spec") or {}), **(body.get("spec") or {})}
        new.setdefault("metadata", {})["uid"] = cur["metadata"]["uid"]
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = new
        return new

    def _patch(self, url: str, body: Any, content_type: str) -> Any:
        key, cur = self._stored(url)
        if isinstance(body, dict):
            self._check_rv(cur, body)
        if content_type.endswith("json-patch+json"):
            new = json_patch(cur, body)
        elif content_type.endswith("strategic-merge-patch+json"):
            new = strategic_merge_patch(cur, body, cur.get("kind", ""))
        else:
            new = json_merge_patch(cur, body)
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = new
        return new

    def _delete(self, url: str, body: Any, content_type: str) -> Any:
        cur = self.objects.pop(url, None)
        if cur is None:
            raise _error(404, "NotFound", f"{url} not found")
        return {"kind": "Status", "status": "Success"}


class FakeInformers(InformerFactory):
    """Informers that never start: the test decides what their caches hold."""

    def __init__(self, client: FakeClient):
        super().__init__(client)
        self.fake = client

    async def start(self, timeout: float = 30.0) -> None:
        for inf in self._informers.values():
            inf.synced.set()

    async def stop(self) -> None:
        pass

    def add(self, r: Resource, *objs: Obj) -> list[Obj]:
        """Objects that exist on the server and that the informers have seen."""
        stored = [self.fake.put(r, o) for o in objs]
        self.sync()
        return stored

    def sync(self, *only: Resource) -> None:
        """What the watches would deliver: caches become the fake server's objects (only
        those of the given kinds, to play a watch that is behind for the others)."""
        for inf in self._informers.values():
            if only and not any((inf.r.group, inf.r.plural) == (r.group, r.plural) for r in only):
                continue
            want = {obj_key(o): o for p, o in self.fake.objects.items()
                    if self._holds(inf, p) and self.fake._object(p) is not None}
            for k, o in want.items():
                old = inf.cache.get(k)
                if old is None or old["metadata"]["resourceVersion"] != o["metadata"]["resourceVersion"]:
                    inf.cache[k] = copy.deepcopy(o)
                    self._emit(inf, "MODIFIED" if old else "ADDED", inf.cache[k], old)
            for k in set(inf.cache) - set(want):
                old = inf.cache.pop(k)
                self._emit(inf, "DELETED", old, old)

    async def run(self, controller: Any, key: str, *, sync: bool | tuple[Resource, ...] = True) -> list[Call]:
        """One reconcile pass on fresh caches (or only those of the `sync` kinds, to play a
        watch that is behind); returns the writes of that pass alone."""
        if sync:
            self.sync(*(sync if isinstance(sync, tuple) else ()))
        self.fake.calls.clear()
        await controller.reconcile(key)
        return self.fake.writes()

    @staticmethod
    def _holds(inf: Informer, url: str) -> bool:
        """Whether url is an object of inf's kind within its namespace (selectors are not applied)."""
        parent = url.rpartition("/")[0]
        if not parent.endswith("/" + inf.r.plural):
            return False
        if inf.namespace:
            return parent == path(inf.r, inf.namespace)
        group_version = path(inf.r).rpartition("/")[0]
        return parent.startswith(group_version + "/")

    @staticmethod
    def _emit(inf: Informer, typ: str, obj: Obj, old: Obj | None) -> None:
        for handler in inf.handlers:
            handler(typ, obj, old)
