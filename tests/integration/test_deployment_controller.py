"""Deployment controller against a real API server (no agent: pod status is set by the test)."""
from conftest import wait_until

from sendo.client import kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.deployment import DeploymentController
from sendo.controllers.replicaset import ReplicaSetController

DEPLOY, RS, PODS = kind("deployments", "apps"), kind("replicasets", "apps"), kind("pods")


def deployment(name, replicas=2, **spec):
    body = {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]}}}
    body.update(spec)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": body}


async def run_controllers(client):
    informers = InformerFactory(client)
    loops = [DeploymentController(client, informers), ReplicaSetController(client, informers)]
    await informers.start()
    for loop in loops:
        await loop.start()
    return informers, loops


async def stop(informers, loops):
    for loop in loops:
        await loop.stop()
    await informers.stop()


def condition(d, type_):
    return next((c for c in (d.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


async def test_progress_deadline_exceeded_when_pods_never_become_ready(client):
    informers, loops = await run_controllers(client)
    try:
        await client.create(DEPLOY, deployment("slow", progressDeadlineSeconds=2))

        async def pods_created():
            return len((await client.list(PODS, "default", labelSelector="app=slow"))["items"]) == 2
        await wait_until(pods_created, 10, what="pods created")

        async def timed_out():
            c = condition(await client.get(DEPLOY, "default", "slow"), "Progressing")
            return c.get("status") == "False" and c.get("reason") == "ProgressDeadlineExceeded"
        await wait_until(timed_out, 10, what="ProgressDeadlineExceeded")
        d = await client.get(DEPLOY, "default", "slow")
        assert condition(d, "Available")["status"] == "False"
        assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    finally:
        await stop(informers, loops)


async def test_paused_deployment_does_not_roll_out_until_resumed(client):
    informers, loops = await run_controllers(client)
    try:
        await client.create(DEPLOY, deployment("p", replicas=1))

        async def one_rs():
            return len((await client.list(RS, "default", labelSelector="app=p"))["items"]) == 1
        await wait_until(one_rs, 10, what="first ReplicaSet")
        await client.patch(DEPLOY, "default", "p", {"spec": {"paused": True}})
        await client.patch(DEPLOY, "default", "p", {"spec": {"template": {"metadata": {"labels": {"app": "p",
                                                                                               "v": "2"}}}}})

        async def paused_condition():
            return condition(await client.get(DEPLOY, "default", "p"), "Progressing").get("reason") == \
                "DeploymentPaused"
        await wait_until(paused_condition, 10, what="DeploymentPaused")
        assert len((await client.list(RS, "default", labelSelector="app=p"))["items"]) == 1
        await client.patch(DEPLOY, "default", "p", {"spec": {"paused": False}})

        async def two_rs():
            return len((await client.list(RS, "default", labelSelector="app=p"))["items"]) == 2
        await wait_until(two_rs, 10, what="a new ReplicaSet after resume")
    finally:
        await stop(informers, loops)
