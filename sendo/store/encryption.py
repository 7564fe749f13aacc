"""Secrets encrypted at rest: what a store writes to disk for a Secret is AES-GCM ciphertext.

The configuration is Kubernetes' EncryptionConfiguration (apiserver.config.k8s.io/v1),
kept in the server's directory (0600) and created with a fresh 256-bit key on first
start, so encryption is on by default (k3s makes it opt-in). Its providers are tried
in order: the first one encrypts every write, every one listed can decrypt. A value on
disk names the key that sealed it, as Kubernetes' does:

    k8s:enc:aesgcm:v1:<key name>:<12-byte nonce><ciphertext and tag>

and the key's name is bound to the ciphertext as associated data together with the
store key, so a sealed value cannot be moved to another object or key name. A value
without that prefix is plaintext from before encryption was on (or from the `identity`
provider) and is read as it is; the store re-seals such values, and values sealed by a
key that is no longer the first, when it opens and when the key is rotated.

The store's in-memory copy of the latest values stays plaintext: only bytes that reach
the disk (and so snapshots) are sealed.
"""
from __future__ import annotations

import base64
import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..configfile import ConfigFileError, load_yaml_file
from ..private import private_dir

PREFIX = b"k8s:enc:aesgcm:v1:"
ENCRYPTED_RESOURCES = ("secrets",)  # what Kubernetes' docs encrypt first; the keys below say where they live
CONFIG_NAME = "encryption-config.yaml"


class EncryptionError(Exception):
    """A configuration that cannot be used, or a value no configured key opens."""


def sealed_prefix(resource: str) -> str:
    return f"/registry/core/{resource}/"


@dataclass(frozen=True)
class Key:
    name: str
    secret: bytes  # 16, 24 or 32 bytes


class Transformer:
    """Seals and opens the values of the encrypted resources; other keys pass through."""

    def __init__(self, keys: list[Key], prefixes: tuple[str, ...] = tuple(sealed_prefix(r) for r in ENCRYPTED_RESOURCES),
                 encrypt: bool = True):
        """`keys`: the first seals (when `encrypt`), all open. encrypt=False: identity first."""
        self.keys = {k.name: AESGCM(k.secret) for k in keys}
        self.primary = keys[0].name if keys and encrypt else None
        self.prefixes = prefixes

    def applies(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    def to_disk(self, key: str, data: bytes | None) -> bytes | None:
        if data is None or self.primary is None or not self.applies(key):
            return data
        nonce = os.urandom(12)
        head = PREFIX + self.primary.encode() + b":"
        return head + nonce + self.keys[self.primary].encrypt(nonce, data, head + key.encode())

    def from_disk(self, key: str, blob: bytes | None) -> bytes | None:
        if blob is None or not blob.startswith(PREFIX):
            return blob
        name, sep, rest = blob[len(PREFIX):].partition(b":")
        aead = self.keys.get(name.decode(errors="replace"))
        if not sep or aead is None:
            raise EncryptionError(f"{key} is sealed with key {name.decode(errors='replace')!r}, which the "
                                  f"encryption configuration no longer lists")
        try:
            return aead.decrypt(rest[:12], rest[12:], blob[:len(PREFIX) + len(name) + 1] + key.encode())
        except InvalidTag:
            raise EncryptionError(f"{key} does not decrypt with key {name.decode()!r}: the key or the value "
                                  f"was changed")

    def stale(self, key: str, blob: bytes | None) -> bool:
        """Whether a value on disk should be sealed again (plaintext, or an older key)."""
        if blob is None or not self.applies(key):
            return False
        if self.primary is None:
            return blob.startswith(PREFIX)
        return not blob.startswith(PREFIX + self.primary.encode() + b":")


IDENTITY = Transformer([], encrypt=False)


# ----------------------------------------------------------------- the configuration file
def new_key_name() -> str:
    return "key-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S%f")


def _doc(keys: list[Key], encrypt: bool = True) -> dict[str, Any]:
    aes = {"aesgcm": {"keys": [{"name": k.name, "secret": base64.b64encode(k.secret).decode()} for k in keys]}}
    providers = [aes, {"identity": {}}] if encrypt else [{"identity": {}}, aes]
    return {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
            "resources": [{"resources": list(ENCRYPTED_RESOURCES), "providers": providers}]}


def write_config(path: str, keys: list[Key], encrypt: bool = True) -> None:
    """Replace the file atomically (0600): a server reading it sees the old or the new one."""
    private_dir(os.path.dirname(path))
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# sendo's encryption at rest; `sendo secrets rotate-key` changes it. Keep a copy of\n"
                "# this file with your snapshots: without it their Secrets cannot be read.\n")
        yaml.safe_dump(_doc(keys, encrypt), f, sort_keys=False)
    os.replace(tmp, path)


def parse_config(doc: Any, where: str = "the encryption configuration") -> tuple[list[Key], bool]:
    """(keys, whether aesgcm is the first provider) of an EncryptionConfiguration."""
    if not isinstance(doc, dict) or doc.get("kind") != "EncryptionConfiguration":
        raise EncryptionError(f"{where}: kind must be EncryptionConfiguration")
    entries = doc.get("resources")
    if not isinstance(entries, list) or not entries:
        raise EncryptionError(f"{where}: resources must list at least one entry")
    keys: list[Key] = []
    encrypt = None
    for i, entry in enumerate(entries):
        res = entry.get("resources") if isinstance(entry, dict) else None
        if not isinstance(res, list) or not set(res) <= {"secrets", "secrets."}:
            raise EncryptionError(f"{where}: resources[{i}].resources: sendo encrypts secrets only, got {res!r}")
        for j, p in enumerate(entry.get("providers") or []):
            at = f"{where}: resources[{i}].providers[{j}]"
            if not isinstance(p, dict) or len(p) != 1:
                raise EncryptionError(f"{at}: must name exactly one provider")
            kind, spec = next(iter(p.items()))
            if kind == "identity":
                encrypt = False if encrypt is None else encrypt
                continue
            if kind != "aesgcm":
                raise EncryptionError(f"{at}: provider {kind!r} is not supported (use aesgcm or identity)")
            encrypt = True if encrypt is None else encrypt
            for n, k in enumerate((spec or {}).get("keys") or []):
                try:
                    secret = base64.b64decode(k["secret"], validate=True)
                except (KeyError, TypeError, ValueError):
                    raise EncryptionError(f"{at}.aesgcm.keys[{n}].secret: must be base64")
                if len(secret) not in (16, 24, 32):
                    raise EncryptionError(f"{at}.aesgcm.keys[{n}].secret: must be 16, 24 or 32 bytes, "
                                          f"not {len(secret)}")
                if not isinstance(k.get("name"), str) or not k["name"] or ":" in k["name"]:
                    raise EncryptionError(f"{at}.aesgcm.keys[{n}].name: must be a non-empty name without ':'")
                keys.append(Key(k["name"], secret))
    if encrypt and not keys:
        raise EncryptionError(f"{where}: the aesgcm provider lists no key")
    return keys, bool(encrypt)


def load_or_create(server_dir: str) -> tuple[Transformer, str]:
    """The server's transformer from DIR/encryption-config.yaml, written with a new key on first
    start (encryption on by default). Returns (transformer, path)."""
    path = os.path.join(server_dir, CONFIG_NAME)
    if not os.path.exists(path):
        write_config(path, [Key(new_key_name(), AESGCM.generate_key(256))])
    return load(path), path


def _read(path: str) -> Any:
    try:
        return load_yaml_file(path, "the encryption configuration")
    except ConfigFileError as e:
        raise EncryptionError(str(e))


def load(path: str) -> Transformer:
    keys, encrypt = parse_config(_read(path), path)
    return Transformer(keys, encrypt=encrypt)


def rotate(path: str) -> tuple[Transformer, Transformer, str]:
    """A new first key, the old ones kept (to open what is still sealed with them): returns
    (the transformer during re-sealing, the one after it, the new key's name). The caller
    re-seals every value, then calls `drop_old_keys`."""
    keys, _ = parse_config(_read(path), path)
    new = Key(new_key_name(), AESGCM.generate_key(256))
    write_config(path, [new, *keys])
    return Transformer([new, *keys]), Transformer([new]), new.name


def drop_old_keys(path: str, keep: str) -> None:
    keys, _ = parse_config(_read(path), path)
    write_config(path, [k for k in keys if k.name == keep])
