"""What admission webhooks cost API writes: ConfigMap creates per second against an in-process
API server (SQLite, HTTPS, no controllers), same run, four ways:

* ``before``: the webhook step replaced by nothing (the API server as it was without webhooks);
* ``none``: no webhook configuration stored (the in-memory cache says so);
* ``unmatched``: a ValidatingWebhookConfiguration for Secrets only (rules checked, nothing called);
* ``called``: a validating webhook on ConfigMaps that allows everything, called over HTTPS on
  loopback for every write.

Usage: python -m bench.webhooks [writes per phase]; prints one JSON line. The load runs in the
same process as the server, so the absolute figures are lower than bench.run's; the ratios are
the point. All traffic is on loopback; every loop is bounded.
"""
from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

from sendo.api import webhooks
from sendo.pki import ensure_tls
from sendo.server import Server, ServerConfig, free_port

CONCURRENCY = 16
VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


async def allow(request: web.Request) -> web.Response:
    review = await request.json()
    return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                              "response": {"uid": review["request"]["uid"], "allowed": True}})


async def writes(session: aiohttp.ClientSession, url: str, phase: str, count: int) -> float:
    """Creates per second of ``count`` ConfigMaps, CONCURRENCY at a time."""
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            body = orjson.dumps({"metadata": {"name": f"{phase}-{i}"}, "data": {"i": str(i)}})
            async with session.post(url + "/api/v1/namespaces/default/configmaps", data=body) as r:
                if r.status != 201:
                    raise RuntimeError(f"{phase}: {r.status} {await r.text()}")
    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return count / (time.perf_counter() - t)


async def step_cost_us(hooks: webhooks.Webhooks, r, n: int = 100_000) -> float:
    """Microseconds the webhook step adds to one write when no configuration matches: the
    machine's load does not blur this one."""
    obj, opts = {"metadata": {"name": "x", "namespace": "default"}}, webhooks.RequestOptions()
    t = time.perf_counter()
    for _ in range(n):
        a = webhooks.Attributes("CREATE", r, "", "default", "x", obj, None, opts)
        await hooks.mutate(a)
        await hooks.validate(a)
    return (time.perf_counter() - t) / n * 1e6


async def configure(session, url: str, name: str, hook: dict) -> None:
    body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name}, "webhooks": [hook]}
    async with session.post(url + VWC, data=orjson.dumps(body)) as r:
        assert r.status == 201, await r.text()
    await asyncio.sleep(0.5)  # the server's cache follows the store's watch


async def main(count: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        server = Server(ServerConfig(data_dir=str(Path(d) / "data"), port=free_port(), controllers=False))
        await server.start()
        tls = ensure_tls(str(Path(d) / "hook"))
        hook_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        hook_ctx.load_cert_chain(tls.cert, tls.key)
        app = web.Application()
        app.router.add_post("/allow", allow)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        hook_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", hook_port, ssl_context=hook_ctx).start()
        bundle = base64.b64encode(Path(tls.ca_cert).read_bytes()).decode()
        ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
        out: dict[str, float] = {}
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=CONCURRENCY),
                                             headers={"Authorization": f"Bearer {server.admin_token}",
                                                      "Content-Type": "application/json"}) as s:
                url = server.cfg.url
                await writes(s, url, "warmup", count // 4)
                real = (webhooks.Webhooks.mutate, webhooks.Webhooks.validate)

                async def nothing(self, a) -> None:
                    return None
                rounds: dict[str, list[float]] = {"before": [], "none": []}
                for r in range(3):  # alternate, so load on the machine hits both alike
                    webhooks.Webhooks.mutate = webhooks.Webhooks.validate = nothing  # type: ignore[method-assign]
                    rounds["before"].append(await writes(s, url, f"before{r}", count))
                    webhooks.Webhooks.mutate, webhooks.Webhooks.validate = real  # type: ignore[method-assign]
                    rounds["none"].append(await writes(s, url, f"none{r}", count))
                out = {k: round(max(v), 1) for k, v in rounds.items()}
                out.update({f"{k}_rounds": [round(x, 1) for x in v] for k, v in rounds.items()})
                configmaps = server.registry.get("", "v1", "configmaps")
                out["step_us_none"] = round(await step_cost_us(server.api.api.webhooks, configmaps), 2)
                rule = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"]}
                await configure(s, url, "secrets-only", {
                    "name": "secrets.bench.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                    "clientConfig": {"url": f"https://127.0.0.1:{hook_port}/allow", "caBundle": bundle},
                    "rules": [{**rule, "resources": ["secrets"]}]})
                out["unmatched"] = round(await writes(s, url, "unmatched", count), 1)
                out["step_us_unmatched"] = round(await step_cost_us(server.api.api.webhooks, configmaps), 2)
                await configure(s, url, "configmaps", {
                    "name": "configmaps.bench.io", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                    "clientConfig": {"url": f"https://127.0.0.1:{hook_port}/allow", "caBundle": bundle},
                    "rules": [{**rule, "resources": ["configmaps"]}]})
                out["called"] = round(await writes(s, url, "called", count), 1)
        finally:
            await runner.cleanup()
            await server.stop()
    return {"bench": "webhooks", "writes_per_phase": count, "concurrency": CONCURRENCY, "creates_per_s": out,
            "none_vs_before": round(out["none"] / out["before"], 3)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 600))))
