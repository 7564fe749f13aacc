"""Secrets sealed at rest by the SQLite store: nothing of a Secret's value is in the files,
everything reads back (latest, past revisions, watch history), plaintext from before is
sealed on open, and a key rotation under load never fails a read."""
from __future__ import annotations

import asyncio
import base64
import os

import orjson
import pytest
import yaml

from sendo.store import encryption
from sendo.store.encryption import EncryptionError, Key, Transformer
from sendo.store.sqlite import SQLiteStore

SECRET = "/registry/core/secrets/default/db"
VALUE = b"correct-horse-battery-staple"


def secret(n: int = 0) -> bytes:
    return orjson.dumps({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "db", "namespace": "default"},
                         "data": {"password": base64.b64encode(VALUE + str(n).encode()).decode()},
                         "stringData": None, "note": (VALUE + str(n).encode()).decode()})


def files_of(path: str) -> bytes:
    return b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))


def leaks(path: str) -> bool:
    raw = files_of(path)
    return VALUE in raw or base64.b64encode(VALUE)[:20] in raw


async def opened(path: str, t: Transformer) -> SQLiteStore:
    s = SQLiteStore(path)
    s.transformer = t
    await s.start()
    return s


async def test_secret_values_never_reach_the_files_and_read_back(tmp_path):
    t, _ = encryption.load_or_create(str(tmp_path / "server"))
    path = str(tmp_path / "state.db")
    s = await opened(path, t)
    await s.create("/registry/core/namespaces/default", b'{"kind":"Namespace"}')  # so a watch can start before the Secret
    first = await s.create(SECRET, secret(0))
    await s.update(SECRET, secret(1))
    await s.create("/registry/core/configmaps/default/plain", b'{"kind":"ConfigMap","note":"visible-text"}')
    assert VALUE + b"1" in (await s.get(SECRET)).value
    past, _ = await s.list("/registry/core/secrets/", first.mod_rev)  # read from the file
    assert VALUE + b"0" in past[0].value
    s._ring.clear()  # the watch's history then comes from the file, not from the in-memory ring
    s._ring_revs.clear()
    w = s.watch("/registry/core/secrets/", first.mod_rev - 1)
    ev = await asyncio.wait_for(w.__anext__(), 10)
    assert VALUE + b"0" in ev.kv.value
    w.close()
    await s.close()
    assert not leaks(path) and b"visible-text" in files_of(path)  # only Secrets are sealed
    s = await opened(path, encryption.load(str(tmp_path / "server" / encryption.CONFIG_NAME)))
    assert VALUE + b"1" in (await s.get(SECRET)).value  # the key file is what it needs after a restart
    await s.close()


async def test_plaintext_from_before_is_sealed_when_the_store_opens(tmp_path):
    path = str(tmp_path / "state.db")
    s = await opened(path, encryption.IDENTITY)
    for i in range(3):
        await s.update(SECRET, secret(i)) if i else await s.create(SECRET, secret(i))
    await s.close()
    assert leaks(path)
    t, _ = encryption.load_or_create(str(tmp_path / "server"))
    s = await opened(path, t)  # every revision sealed, the freed bytes zeroed, the WAL truncated
    assert VALUE + b"2" in (await s.get(SECRET)).value
    await s.close()
    assert not leaks(path)


async def test_rotation_under_load_never_fails_a_read(tmp_path):
    server = str(tmp_path / "server")
    t, cfg = encryption.load_or_create(server)
    old_name = t.primary
    path = str(tmp_path / "state.db")
    s = await opened(path, t)
    keys = [f"/registry/core/secrets/default/s{i}" for i in range(300)]
    for k in keys:
        await s.create(k, secret(0))
    for k in keys[:100]:
        await s.update(k, secret(1))  # older revisions to seal too
    stop, reads, writes = asyncio.Event(), [0], [0]

    async def reader():
        rev = s.revision
        while not stop.is_set():
            got, _ = await s.list("/registry/core/secrets/", rev)  # from the file, mid-rotation
            assert len(got) == 300 and all(VALUE in kv.value for kv in got)
            reads[0] += 1
            await asyncio.sleep(0)

    async def writer():
        i = 0
        while not stop.is_set() and i < 2000:  # bounded
            await s.update(keys[i % 300], secret(i))
            writes[0] += 1
            i += 1
    tasks = [asyncio.create_task(reader()), asyncio.create_task(writer())]
    during, after, name = encryption.rotate(cfg)
    sealed = await s.reseal(during)
    encryption.drop_old_keys(cfg, name)
    s.transformer = after
    stop.set()
    await asyncio.gather(*tasks)  # a failed read raises here
    assert sealed >= 400 and reads[0] > 0 and writes[0] > 0
    doc = yaml.safe_load(open(cfg))
    names = [k["name"] for k in doc["resources"][0]["providers"][0]["aesgcm"]["keys"]]
    assert names == [name] and name != old_name
    got, _ = await s.list("/registry/core/secrets/", 1 + len(keys))  # an early revision opens with the new key
    assert got and all(VALUE in kv.value for kv in got)
    await s.close()
    assert not leaks(path) and old_name.encode() not in files_of(path)


def test_a_sealed_value_is_bound_to_its_key_and_key_name():
    t = Transformer([Key("k1", os.urandom(32))])
    blob = t.to_disk(SECRET, b"payload")
    assert blob.startswith(b"k8s:enc:aesgcm:v1:k1:") and b"payload" not in blob
    assert t.from_disk(SECRET, blob) == b"payload"
    with pytest.raises(EncryptionError, match="does not decrypt"):
        t.from_disk("/registry/core/secrets/default/other", blob)  # moved to another object
    with pytest.raises(EncryptionError, match="does not decrypt"):
        t.from_disk(SECRET, blob[:-1] + bytes([blob[-1] ^ 1]))  # tampered with
    with pytest.raises(EncryptionError, match="no longer lists"):
        Transformer([Key("k2", os.urandom(32))]).from_disk(SECRET, blob)
    assert t.to_disk("/registry/core/configmaps/default/x", b"plain") == b"plain"


@pytest.mark.parametrize("doc, where", [
    ({"kind": "Nope"}, "kind"),
    ({"kind": "EncryptionConfiguration", "resources": [{"resources": ["configmaps"], "providers": []}]},
     "resources[0].resources"),
    ({"kind": "EncryptionConfiguration", "resources": [{"resources": ["secrets"],
                                                        "providers": [{"kms": {}}]}]}, "providers[0]"),
    ({"kind": "EncryptionConfiguration", "resources": [{"resources": ["secrets"], "providers": [
        {"aesgcm": {"keys": [{"name": "k", "secret": base64.b64encode(b"short").decode()}]}}]}]},
     "keys[0].secret"),
])
def test_a_bad_configuration_names_the_field(doc, where):
    with pytest.raises(EncryptionError, match=where.replace("[", r"\[").replace("]", r"\]")):
        encryption.parse_config(doc)
