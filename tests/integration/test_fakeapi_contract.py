"""The fake API of the reconcile tests answers as the real API server does.

One scenario of calls runs against both; what a controller could observe (status
codes, names, versions moving, what reads return) must match, or the fast tests in
tests/unit/test_reconcile_*.py would be testing against a fiction.
"""
from sendo.client import ApiError, kind
from tests.fakeapi import FakeClient

PODS, CMS = kind("pods"), kind("configmaps")


def _pod(**meta):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "default", **meta},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}


async def _code(call) -> int:
    try:
        await call
    except ApiError as e:
        return e.status
    return 200


async def scenario(c) -> list:
    seen = []
    made = await c.create(PODS, _pod(generateName="web-"))
    name, rv = made["metadata"]["name"], made["metadata"]["resourceVersion"]
    seen += [name.startswith("web-") and len(name) > 4, bool(made["metadata"]["uid"]), bool(rv)]
    seen.append(await _code(c.create(PODS, _pod(name=name))))  # 409: exists
    seen.append(await _code(c.get(PODS, "default", "missing")))  # 404
    # a status write replaces status only and moves the version
    body = await c.get(PODS, "default", name)
    body["status"] = {"phase": "Running"}
    body["spec"]["activeDeadlineSeconds"] = 5  # not through the status endpoint
    after = await c.update_status(PODS, body)
    seen += [after["status"]["phase"], after["spec"].get("activeDeadlineSeconds"),
             after["metadata"]["resourceVersion"] != rv]
    seen.append(await _code(c.update_status(PODS, body)))  # 409: the version it carries is stale
    # a merge patch, guarded by the current version, then by a stale one
    cur = after["metadata"]["resourceVersion"]
    patched = await c.patch(PODS, "default", name, {"metadata": {"labels": {"a": "b"}, "resourceVersion": cur}})
    seen.append(patched["metadata"]["labels"])
    seen.append(await _code(c.patch(PODS, "default", name, {"metadata": {"labels": {"a": "c"},
                                                                          "resourceVersion": cur}})))
    # a JSON patch
    patched = await c.patch(PODS, "default", name, [{"op": "add", "path": "/metadata/labels/x", "value": "y"}],
                            type="json")
    seen.append(patched["metadata"]["labels"])
    # lists hold what exists; delete makes it 404; a second delete is None
    await c.create(CMS, {"metadata": {"name": "cm", "namespace": "default"}, "data": {"k": "v"}})
    seen.append([i["metadata"]["name"] for i in (await c.list(CMS, "default"))["items"]])
    await c.delete(CMS, "default", "cm")
    seen += [await _code(c.get(CMS, "default", "cm")), await c.delete(CMS, "default", "cm")]
    return seen


async def test_the_fake_answers_like_the_server(client):
    real = await scenario(client)
    fake = await scenario(FakeClient())
    assert fake == real
    assert real == [True, True, True, 409, 404, "Running", None, True, 409, {"a": "b"}, 409,
                    {"a": "b", "x": "y"}, ["cm"], 404, None]
