"""A small `apply` for `sendo up --apply`: create what is missing, replace what exists."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..client import ApiError, Client
from ..kinds.registry import builtin_registry


async def apply_files(client: Client, paths: list[Path]) -> list[str]:
    registry = builtin_registry()
    out = []
    for p in paths:
        for doc in yaml.safe_load_all(p.read_text()):
            if not doc:
                continue
            r = registry.by_kind(doc.get("apiVersion", ""), doc.get("kind", ""))
            if r is None:
                raise SystemExit(f"{p}: unknown kind {doc.get('apiVersion')}/{doc.get('kind')}")
            meta = doc.setdefault("metadata", {})
            if r.namespaced:
                meta.setdefault("namespace", "default")
            what = f"{r.singular}/{meta.get('name')}"
            try:
                await client.create(r, doc)
                out.append(f"{what} created")
            except ApiError as e:
                if e.status != 409:
                    raise SystemExit(f"{p}: {what}: {e.body.get('message')}")
                cur = await client.get(r, meta.get("namespace"), meta["name"])
                meta["resourceVersion"] = cur["metadata"]["resourceVersion"]
                await client.update(r, doc)
                out.append(f"{what} configured")
    return out
