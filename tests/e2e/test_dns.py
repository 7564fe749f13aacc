"""Service discovery by name: pods get the DNS server and Service variables in their env,
and the cluster DNS answers Service names with their ClusterIPs (queried with dnspython)."""
import json

import dns.message
import dns.query
import dns.rcode

from .harness import poll


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: my-db}
spec:
  selector: {app: my-db}
  ports: [{name: sql, port: 15432, targetPort: 15432}]
"""

POD = """
apiVersion: v1
kind: Pod
metadata: {name: envdump}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: python:3.11
    command: ["python3", "-c", "import json, os; print(json.dumps(dict(os.environ)), flush=True)"]
"""


def test_pods_find_services_by_env_and_dns(cluster):
    cluster.kubectl("apply", "-f", "-", input=SERVICE)
    ip = cluster.kubectl("get", "svc", "my-db", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    cluster.kubectl("apply", "-f", "-", input=POD)
    poll(lambda: cluster.kubectl("get", "pod", "envdump", "-o", "jsonpath={.status.phase}").stdout == "Succeeded",
         timeout=30, what="env pod to finish")
    env = json.loads(cluster.kubectl("logs", "envdump").stdout.strip().splitlines()[-1])
    assert env["MY_DB_SERVICE_HOST"] == ip and env["MY_DB_SERVICE_PORT"] == "15432"
    assert env["MY_DB_PORT_15432_TCP"] == f"tcp://{ip}:15432"
    host, port = env["SENDO_DNS"].rsplit(":", 1)
    assert host.startswith("127.")  # loopback only

    def ask(name):
        return dns.query.udp(dns.message.make_query(name, "A"), host, port=int(port), timeout=2)
    answer = ask("my-db.default.svc.cluster.local")
    assert [r.address for rrset in answer.answer for r in rrset] == [ip]
    assert ask("missing.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN
