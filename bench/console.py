"""The web console in headless Chromium (tests/browser.py) against `sendo server` on loopback:

* first render: the page opened at /console/#pods (token already in the tab's
  sessionStorage) until its 1,000-pod table is in the DOM — the console's
  `pods-rendered` performance mark, in ms since navigation start: page, script, namespace
  list, pod list (JSON parse) and the table built, all in the browser's own clock;
* live update: a pod created through the API (wall clock taken before the POST) until its
  row is in the page (wall clock of a MutationObserver in the page; same machine, same
  clock): write + watch fan-out + the browser's stream read and row insert.

The server runs no agent, so the pods stay Pending: this measures the API and the page,
not pod start-up. Bounded: --pods creates (16 at a time), --updates one by one, every
wait with a deadline.

    .venv/bin/python -m bench.console [--pods 1000] [--updates 20] [--runs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import percentile, start_server
from sendo.client import kind
from tests.browser import Browser

PODS = kind("pods")
CONCURRENCY = 16
ROWS = "document.querySelectorAll('#pods-body tr').length"


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "console"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


async def create_pods(client, names: list[str]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(name: str) -> None:
        async with gate:
            await client.create(PODS, pod(name), "default")
    await asyncio.gather(*(one(n) for n in names))


def first_render(page: Browser, url: str, pods: int) -> list[float]:
    """ms from navigation start to the table built, and to the pod list's last byte."""
    page.navigate("about:blank")
    page.wait("location.href === 'about:blank'", what="a blank page")
    page.navigate(url + "#pods")
    page.wait(f"{ROWS} === {pods}", timeout=120, what=f"{pods} pod rows")
    return page.evaluate("[performance.getEntriesByName('pods-rendered')[0].startTime, performance"
                         ".getEntriesByType('resource').find(e => /\\/pods$/.test(e.name)).responseEnd]")


async def measure(cluster, tmp: Path, a) -> dict:
    """The browser is synchronous: its calls run in a thread, so this loop keeps serving the
    client's connections meanwhile."""
    client = cluster.client()
    page = None
    try:
        t0 = time.perf_counter()
        await create_pods(client, [f"bench-{i:04d}" for i in range(a.pods)])
        create_s = time.perf_counter() - t0
        page = await asyncio.to_thread(Browser, tmp / "chromium")
        url = cluster.url + "/console/"
        page.navigate(url)
        await asyncio.to_thread(page.wait, "document.readyState === 'complete'", what="the console page")
        page.evaluate(f"sessionStorage.setItem('sendo-console-token', {json.dumps(cluster.admin_token)})")
        runs = [await asyncio.to_thread(first_render, page, url, a.pods) for _ in range(a.runs)]
        renders = [r for r, _ in runs]
        lists = [listed for _, listed in runs]
        await asyncio.to_thread(page.wait, "document.getElementById('pods-live').textContent === 'live'",
                                what="the pods watch")
        page.evaluate("window.seen = {}; new MutationObserver(ms => { for (const m of ms) for (const n of m.addedNodes) "
                      "if (n.dataset && !(n.dataset.key in seen)) seen[n.dataset.key] = Date.now(); })"
                      ".observe(document.getElementById('pods-body'), {childList: true})")
        latencies = []
        for i in range(a.updates):
            name = f"live-{i:03d}"
            sent = time.time()
            await client.create(PODS, pod(name), "default")
            seen = await asyncio.to_thread(page.wait, f"seen[{json.dumps(name)}]", timeout=30,
                                           what=f"the row of {name}")
            latencies.append(seen - sent * 1000)
        assert page.evaluate(ROWS) == a.pods + a.updates
    finally:
        await client.close()
        if page is not None:
            page.close()
    return {
        "pods": a.pods,
        "create_pods_s": round(create_s, 1),
        "first_render_ms_runs": [round(r) for r in renders],
        "first_render_ms_median": round(percentile(renders, 50)),
        "pod_list_received_ms_median": round(percentile(lists, 50)),
        "parse_and_table_ms_median": round(percentile([r - listed for r, listed in runs], 50)),
        "live_updates": a.updates,
        "live_update_ms_p50": round(percentile(latencies, 50)),
        "live_update_ms_p95": round(percentile(latencies, 95)),
        "live_update_ms_max": round(max(latencies)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sendo-bench-console-"))
    cluster = start_server(str(tmp / "data"), extra=("--no-controllers",))
    try:
        figures = asyncio.run(measure(cluster, tmp, a))
    finally:
        cluster.server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for k, v in figures.items():
        print(f"{k:28} {v}")


if __name__ == "__main__":
    main()
