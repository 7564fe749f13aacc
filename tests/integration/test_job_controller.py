"""Job controller against a real API server (no agent: the test plays the kubelet and
sets pod phases), stopped and started again mid-way: the tracking finalizer and
status.uncountedTerminatedPods make every pod count exactly once."""
from conftest import wait_until

from sendo.client import kind
from sendo.controllers.base import InformerFactory
from sendo.controllers.job import TRACKING_FINALIZER, JobController

JOBS, PODS = kind("jobs", "batch"), kind("pods")
NS = "default"


async def start(client):
    informers = InformerFactory(client)
    loop = JobController(client, informers, backoff_base=0.0)
    await informers.start()
    await loop.start()
    return informers, loop


async def stop(informers, loop):
    await loop.stop()
    await informers.stop()


async def pods_of(client, name):
    return (await client.list(PODS, NS, labelSelector=f"batch.kubernetes.io/job-name={name}"))["items"]


async def finish(client, pod, phase="Succeeded"):
    code = 0 if phase == "Succeeded" else 1
    await client.patch(PODS, NS, pod["metadata"]["name"], {"status": {"phase": phase, "containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 0, "image": "x", "imageID": "",
         "state": {"terminated": {"exitCode": code, "finishedAt": "2026-01-01T00:00:00Z"}}}]}}, sub="status")


async def test_a_restarted_controller_counts_every_pod_exactly_once(client):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "four", "namespace": NS},
           "spec": {"completions": 4, "parallelism": 4, "template": {"spec": {
               "restartPolicy": "Never", "containers": [{"name": "c", "image": "x", "command": ["true"]}]}}}}
    await client.create(JOBS, job)
    informers, loop = await start(client)
    try:
        async def four_pods():
            pods = await pods_of(client, "four")
            return pods if len(pods) == 4 else None
        pods = await wait_until(four_pods, 30, what="four pods")
        assert all(p["metadata"]["finalizers"] == [TRACKING_FINALIZER] for p in pods)
        await finish(client, pods[0])
        await finish(client, pods[1])

        async def counted(n):
            return ((await client.get(JOBS, NS, "four")).get("status") or {}).get("succeeded") == n
        await wait_until(lambda: counted(2), 30, what="two counted")
    finally:
        await stop(informers, loop)

    # while it is down: one pod is recorded as uncounted and released (a crash between
    # the two status writes), another finishes with its finalizer still on
    j = await client.get(JOBS, NS, "four")
    j["status"]["uncountedTerminatedPods"] = {"succeeded": [pods[2]["metadata"]["uid"]]}
    await client.update_status(JOBS, j)
    await finish(client, pods[2])
    await client.patch(PODS, NS, pods[2]["metadata"]["name"],
                       {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}}, type="strategic")
    await finish(client, pods[3])

    informers, loop = await start(client)
    try:
        async def complete():
            st = (await client.get(JOBS, NS, "four")).get("status") or {}
            done = any(c["type"] == "Complete" and c["status"] == "True" for c in st.get("conditions") or [])
            return st if done else None
        st = await wait_until(complete, 30, what="the Job Complete")
        assert st["succeeded"] == 4 and not st.get("failed") and st["uncountedTerminatedPods"] == {}
        pods = await pods_of(client, "four")
        assert len(pods) == 4 and not any(p["metadata"].get("finalizers") for p in pods)
    finally:
        await stop(informers, loop)
