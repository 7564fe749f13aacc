"""`POST /sendo/v1/encryption/rotate`: seal every Secret with a new key, online.

What `sendo secrets rotate-key` calls (k3s offers its own endpoint for the same job).
The steps keep every read working throughout: the configuration file gets the new key
first with the old ones behind it, so new writes are sealed with the new key and old
values still open; the store seals every stored value again (all revisions, in
batches, writes going on meanwhile); only then are the old keys dropped from the file
and from the store's transformer. Only `system:masters` may ask.
"""
from __future__ import annotations

import asyncio
from typing import Any

from ..store import encryption
from .errors import APIError

PATH = "/sendo/v1/encryption/rotate"
_lock = asyncio.Lock()  # one rotation at a time


async def rotate(store: Any, config_path: str | None, user) -> dict[str, Any]:
    if "system:masters" not in user.groups:
        raise APIError(403, f'forbidden: User "{user.name}" cannot rotate the encryption key: only '
                            'members of system:masters may', "Forbidden", {})
    if not config_path or not hasattr(store, "reseal"):
        raise APIError(501, f"this server's {type(store).__name__} does not seal Secrets at rest, so there "
                            "is no key to rotate", "NotImplemented", {})
    async with _lock:
        try:
            during, after, name = encryption.rotate(config_path)
        except (OSError, encryption.EncryptionError) as e:
            raise APIError(500, f"cannot write a new key to {config_path}: {e}", "InternalError", {})
        sealed = await store.reseal(during)
        encryption.drop_old_keys(config_path, name)
        await store.reseal(after)  # the old keys go from the store too (nothing is left to seal)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200,
            "message": f"every Secret is sealed with key {name} ({sealed} stored values sealed again)",
            "details": {"name": name, "kind": "encryptionkey"}}
