"""The web console in headless Chromium against one `sendo up`: log in with the admin token
from the URL `sendo up` prints, see a pod made by kubectl appear live and stream its logs,
scale a Deployment and see kubectl report it, apply a YAML edit, and read the events,
nodes and autoscalers views. Everything the console shows comes from the API with the
token typed in: the tests never read the server's state another way for the page.

Screenshots of each step are saved in the module's tmp directory (printed on failure and
in the test's output), as a reviewer's record of what the browser showed.
"""
from __future__ import annotations

import json
import re

import pytest

from tests.browser import Browser

from .harness import poll, shared_cluster, to_yaml, unique_port, web_deployment

LOG_POD = "console-logs"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with shared_cluster(tmp_path_factory.mktemp("console"), ("--no-ingress", "--metrics-interval", "1")) as c:
        yield c


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    d = tmp_path_factory.mktemp("console-screenshots")
    print(f"console screenshots in {d}")
    return d


@pytest.fixture(scope="module")
def page(cluster, tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium"))
    try:
        yield b
    finally:
        b.close()


def console_url(cluster) -> str:
    """The console URL in what `sendo up` printed to its terminal (its log here), after the
    KUBECONFIG line the harness waits for, so polled."""
    def printed():
        m = re.search(r"Web console: (https://\S+/console/)", cluster.log_path.read_text(errors="replace"))
        assert m, "sendo up printed no console URL:\n" + cluster.log_tail()
        return m.group(1)
    return poll(printed, timeout=30, what="the console URL")


def admin_token(cluster) -> str:
    return cluster.kubeconfig_data()["users"][0]["user"]["token"]


def text(page: Browser, selector: str) -> str:
    return page.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent ?? ''")


def row(key: str) -> str:
    """A JavaScript expression: the table row of the object key (the console's data-key)."""
    return f"document.querySelector('tr[data-key={json.dumps(key)}]')"


def cells(page: Browser, key: str) -> list[str]:
    return page.evaluate(f"[...({row(key)}?.cells ?? [])].map(c => c.textContent)")


def login(page: Browser, token: str) -> None:
    """Focus the token field, type the token and press Enter, as a keyboard user does."""
    page.evaluate("document.getElementById('token').focus()")
    page.type(token)
    page.press("Enter")


def test_login_with_the_url_sendo_up_prints(cluster, page, screens):
    url = console_url(cluster)
    assert f"127.0.0.1:{cluster.port}" in url
    page.navigate(url)
    page.wait("document.readyState === 'complete' && document.activeElement?.id === 'token'",
              what="the login form, focused")
    login(page, "not-a-token")
    page.wait("document.getElementById('login-error').textContent.includes('401')", what="the refusal")
    assert page.evaluate("document.getElementById('app').hidden")
    login(page, admin_token(cluster))
    page.wait("!document.getElementById('app').hidden", what="the console after login")
    names = page.wait("[...document.getElementById('namespace').options].map(o => o.value)"
                      ".filter(n => n === 'default' || n === 'kube-system').length === 2 && "
                      "[...document.getElementById('namespace').options].map(o => o.value)", what="namespaces")
    assert names and "default" in names
    assert page.evaluate("sessionStorage.getItem('sendo-console-token')") == admin_token(cluster)
    page.screenshot(screens / "1-workloads.png")


def test_a_pod_made_by_kubectl_appears_live_and_streams_its_logs(cluster, page, screens):
    page.evaluate("location.hash = '#pods'")
    page.wait("document.getElementById('pods-live').textContent === 'live'", what="the pods watch")
    page.evaluate("window.notReloaded = true")
    code = "import time\nfor i in range(300):\n    print('console line', i, flush=True)\n    time.sleep(0.2)\ntime.sleep(600)\n"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": LOG_POD},
           "spec": {"containers": [{"name": "talk", "image": "python:3.11", "command": ["python3", "-c", code]}]}}
    cluster.kubectl("apply", "-f", "-", input=to_yaml(pod))
    page.wait("!!" + row(LOG_POD), what="the new pod's row")
    page.wait(f"{row(LOG_POD)}.cells[1].textContent === 'Running'", timeout=90, what="the pod Running, live")
    assert page.evaluate("window.notReloaded === true"), "the page reloaded: the row did not come from the watch"
    node = cluster.kubectl("get", "pod", LOG_POD, "-o", "jsonpath={.spec.nodeName}").stdout
    assert cells(page, LOG_POD)[4] == node
    page.screenshot(screens / "2-pods.png")

    page.evaluate(f"{row(LOG_POD)}.querySelector('button[aria-label=\"Logs of pod {LOG_POD}\"]').click()")
    page.wait("location.hash === '#logs' && document.getElementById('logs-out').textContent.includes('console line 2\\n')",
              timeout=60, what="the first log lines")
    seen = len(text(page, "#logs-out"))
    # follow=true: lines printed later arrive on the same stream
    page.wait(f"document.getElementById('logs-out').textContent.length > {seen} + 40", timeout=60,
              what="more log lines, streamed")
    lines = text(page, "#logs-out").splitlines()
    numbers = [int(l.split()[-1]) for l in lines if l.startswith("console line ")]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "lines lost or out of order"
    page.screenshot(screens / "3-logs.png")


def test_scale_a_deployment_from_the_console(cluster, page, screens):
    cluster.kubectl("apply", "-f", "-", input=to_yaml(web_deployment("console-web", unique_port(), replicas=1)))
    page.evaluate("location.hash = '#workloads'")
    key = "Deployment/console-web"
    page.wait("!!" + row(key), what="the Deployment's row")
    page.wait(f"{row(key)}.cells[6].textContent === 'Complete'", timeout=90, what="its rollout complete")
    # the keyboard way: focus the replicas field, replace its value, press Enter
    page.evaluate(f"(() => {{ const i = {row(key)}.querySelector('input'); i.focus(); i.select(); }})()")
    page.type("2")
    page.press("Enter")
    poll(lambda: cluster.kubectl("get", "deployment", "console-web", "-o", "jsonpath={.spec.replicas}").stdout == "2",
         timeout=60, what="kubectl to report 2 replicas")
    page.wait(f"{row(key)}.cells[2].textContent === '2'", what="the desired count updated live")
    page.wait(f"{row(key)}.cells[3].textContent === '2'", timeout=90, what="2 ready replicas, live")
    assert "scaled to 2" in text(page, "#status")
    page.screenshot(screens / "4-scaled.png")


def test_yaml_view_and_apply(cluster, page, screens):
    key = "Deployment/console-web"
    page.evaluate("location.hash = '#workloads'")
    page.wait("!!" + row(key), what="the Deployment's row")
    page.evaluate(f"{row(key)}.querySelector('button[aria-label=\"YAML of Deployment console-web\"]').click()")
    page.wait("document.getElementById('yaml-text').value.includes('kind: Deployment')", what="the YAML")
    original = page.evaluate("document.getElementById('yaml-text').value")
    assert "managedFields" not in original and "\nstatus:" not in original
    assert "  labels:\n    app: console-web\n" in original, original
    edited = original.replace("  labels:\n    app: console-web\n",
                              "  labels:\n    app: console-web\n    tier: edited-in-console\n", 1)
    page.evaluate(f"document.getElementById('yaml-text').value = {json.dumps(edited)}")
    page.evaluate("document.querySelector('#yaml-form button[type=submit]').click()")
    result = page.wait("(t => t.startsWith('applied') || t.startsWith('not applied') ? t : '')"
                       "(document.getElementById('yaml-result').textContent)", what="the apply's answer")
    assert result.startswith("applied"), result
    d = cluster.kubectl_json("get", "deployment", "console-web", "--show-managed-fields")
    assert d["metadata"]["labels"]["tier"] == "edited-in-console"
    assert d["spec"]["replicas"] == 2  # the rest of the object is as it was
    managers = {(m["manager"], m["operation"]) for m in d["metadata"]["managedFields"]}
    assert ("sendo-console", "Apply") in managers, managers
    page.screenshot(screens / "5-yaml.png")


# strings a YAML writer must quote or escape, or they come back as something else
TRICKY = {"bool-word": "yes", "number": "0123", "float": "1e3", "null-word": "null", "colon": "a: b",
          "hash": "#not a comment", "lead-space": "  x", "empty": "", "lines": "one\ntwo\n", "dash": "- item",
          "quote": 'say "hi"', "unicode": "船頭 ✓", "tab": "a\tb", "brace": "{x}", "star": "*ref"}


def test_yaml_round_trip_conflict_and_force(cluster, page, screens):
    """A ConfigMap of awkward strings survives the console's YAML unchanged; a changed value
    that kubectl's apply owns is a conflict until Force is ticked."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "console-cm"}, "data": TRICKY}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(cm))
    page.evaluate("location.hash = '#yaml'")
    page.wait("document.activeElement?.id === 'h-yaml'", what="the YAML view")
    page.evaluate("document.getElementById('yaml-path').value = '/api/v1/namespaces/default/configmaps/console-cm'")
    page.evaluate("document.getElementById('yaml-load').click()")
    page.wait("document.getElementById('yaml-text').value.includes('kind: ConfigMap')", what="the ConfigMap's YAML")

    def apply(force: bool) -> str:
        page.evaluate("document.getElementById('yaml-result').textContent = ''")
        page.evaluate(f"document.getElementById('yaml-force').checked = {json.dumps(force)}")
        page.evaluate("document.querySelector('#yaml-form button[type=submit]').click()")
        return page.wait("(t => t.startsWith('applied') || t.startsWith('not applied') ? t : '')"
                         "(document.getElementById('yaml-result').textContent)", what="the apply's answer")

    assert apply(False).startswith("applied")
    assert cluster.kubectl_json("get", "configmap", "console-cm")["data"] == TRICKY
    text_now = page.evaluate("document.getElementById('yaml-text').value")
    edited = text_now.replace('bool-word: "yes"', 'bool-word: "no"')
    assert edited != text_now, text_now
    page.evaluate(f"document.getElementById('yaml-text').value = {json.dumps(edited)}")
    refused = apply(False)
    assert refused.startswith("not applied: 409"), refused
    assert cluster.kubectl_json("get", "configmap", "console-cm")["data"]["bool-word"] == "yes"
    page.screenshot(screens / "6-conflict.png")
    assert apply(True).startswith("applied")
    assert cluster.kubectl_json("get", "configmap", "console-cm")["data"] == {**TRICKY, "bool-word": "no"}


def test_events_nodes_and_autoscalers(cluster, page, screens):
    page.evaluate("location.hash = '#events'")
    page.wait("[...document.querySelectorAll('#events-body tr')].some(r => r.cells[3].textContent === "
              "'Deployment/console-web' && r.cells[2].textContent === 'ScalingReplicaSet')", what="the scaling event")
    node = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout
    page.evaluate("location.hash = '#nodes'")
    page.wait(f"{row(node)}?.cells[1].textContent === 'Ready'", what="the node, Ready")
    # usage comes from metrics.k8s.io (sampled every second here); Refresh reads it again
    page.wait(f"(document.getElementById('nodes-refresh').click(), {row(node)}?.cells[4].textContent"
              ".match(/^[1-9][0-9]*Mi \\//))", timeout=60, what="the node's memory usage")
    page.screenshot(screens / "7-nodes.png")
    cluster.kubectl("autoscale", "deployment", "console-web", "--min=1", "--max=3", "--cpu-percent=50")
    page.evaluate("location.hash = '#hpa'")
    page.wait(f"{row('console-web')}?.cells[1].textContent === 'Deployment/console-web'", what="the HPA row")
    page.wait(f"{row('console-web')}.cells[7].textContent.includes('AbleToScale=True')", timeout=60,
              what="the HPA's conditions, live")
    assert cells(page, "console-web")[3:5] == ["1", "3"]
    page.screenshot(screens / "8-hpa.png")
