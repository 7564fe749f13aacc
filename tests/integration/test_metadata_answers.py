"""Metadata-only answers (Accept ...;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1) for
get, list and watch of any kind, and 406 for a form the read does not have."""
import asyncio
import ssl

import aiohttp
import orjson
import pytest

from sendo.api.errors import APIError
from sendo.api.table import METADATA, METADATA_LIST, TABLE, answer_form
from sendo.client import kind

CM = kind("configmaps")
META = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
META_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def test_accept_alternatives_are_taken_in_order():
    assert answer_form(None, "list") is None
    assert answer_form("application/json", "get") is None
    assert answer_form(META_LIST, "list") == METADATA_LIST
    assert answer_form("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io", "list") == METADATA_LIST
    assert answer_form(META, "get") == METADATA and answer_form(META, "watch") == METADATA
    # client-go's metadata client: protobuf first, then JSON, then plain
    assert answer_form("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                       + META_LIST + ",application/json", "list") == METADATA_LIST
    assert answer_form("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", "get") == TABLE
    # a form this read has not, with a plain fallback: the plain object
    assert answer_form(META + ",application/json", "list") is None
    for accept, read in ((META, "list"), (META_LIST, "get"), ("application/json;as=Pod;g=meta.k8s.io;v=v1", "get"),
                         ("application/json;as=Table;g=apps;v=v1", "list")):
        with pytest.raises(APIError) as e:
            answer_form(accept, read)
        assert e.value.code == 406, (accept, read)


async def _get(server, url, accept):
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    headers = {"Authorization": f"Bearer {server.admin_token}", "Accept": accept}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(server.cfg.url + url, headers=headers) as r:
            return r.status, orjson.loads(await r.read())


async def test_get_list_and_watch_answer_metadata_only(server, client):
    made = await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "data": {"secret": "x"},
                                    "metadata": {"name": "m1", "namespace": "default", "labels": {"a": "b"}}})
    status, got = await _get(server, "/api/v1/namespaces/default/configmaps/m1", META)
    assert status == 200 and got == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                     "metadata": made["metadata"]}
    status, lst = await _get(server, "/api/v1/namespaces/default/configmaps?labelSelector=a%3Db&limit=5", META_LIST)
    assert status == 200 and lst["kind"] == "PartialObjectMetadataList" and lst["apiVersion"] == "meta.k8s.io/v1"
    assert lst["metadata"]["resourceVersion"]
    assert lst["items"] == [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": made["metadata"]}]
    status, body = await _get(server, "/api/v1/namespaces/default/configmaps", META)  # a list has no such form
    assert status == 406 and body["kind"] == "Status" and body["reason"] == "NotAcceptable"
    status, _ = await _get(server, "/api/v1/namespaces/default/configmaps/m1", META_LIST)
    assert status == 406

    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    headers = {"Authorization": f"Bearer {server.admin_token}", "Accept": META}
    url = server.cfg.url + "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=30"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(url, headers=headers) as r:
            assert r.status == 200
            first = orjson.loads(await asyncio.wait_for(r.content.readline(), 60))
            await client.delete(CM, "default", "m1")
            second = orjson.loads(await asyncio.wait_for(r.content.readline(), 60))
    assert first["type"] == "ADDED" and first["object"]["kind"] == "PartialObjectMetadata"
    assert first["object"]["metadata"]["name"] == "m1" and "data" not in first["object"]
    assert second["type"] == "DELETED" and set(second["object"]) == {"kind", "apiVersion", "metadata"}
