"""Tests for sendo.api.patch: JSON merge patch, JSON patch and strategic merge patch."""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendo.api.patch import (
    KIND_SCHEMAS,
    PatchError,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)

# --------------------------------------------------------------------------- RFC 7386

RFC7386_EXAMPLES = [  # RFC 7386, Appendix A
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("target,patch,expected", RFC7386_EXAMPLES)
def test_json_merge_patch_rfc_examples(target, patch, expected):
    before = copy.deepcopy((target, patch))
    assert json_merge_patch(target, patch) == expected
    assert (target, patch) == before


def test_json_merge_patch_result_shares_nothing_with_inputs():
    target = {"keep": {"deep": [1]}, "x": 1}
    patch = {"new": {"list": [{"a": 1}]}}
    result = json_merge_patch(target, patch)
    result["keep"]["deep"].append(2)
    result["new"]["list"][0]["a"] = 99
    assert target == {"keep": {"deep": [1]}, "x": 1}
    assert patch == {"new": {"list": [{"a": 1}]}}


# --------------------------------------------------------------------------- RFC 6902


def test_json_patch_add_object_member():  # A.1
    assert json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "foo": "bar",
        "baz": "qux",
    }


def test_json_patch_add_array_element():  # A.2
    doc = {"foo": ["bar", "baz"]}
    assert json_patch(doc, [{"op": "add", "path": "/foo/1", "value": "qux"}]) == {
        "foo": ["bar", "qux", "baz"]
    }


def test_json_patch_remove_member_and_element():  # A.3, A.4
    assert json_patch({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}]) == {
        "foo": "bar"
    }
    doc = {"foo": ["bar", "qux", "baz"]}
    assert json_patch(doc, [{"op": "remove", "path": "/foo/1"}]) == {"foo": ["bar", "baz"]}


def test_json_patch_replace():  # A.5
    doc = {"baz": "qux", "foo": "bar"}
    assert json_patch(doc, [{"op": "replace", "path": "/baz", "value": "boo"}]) == {
        "baz": "boo",
        "foo": "bar",
    }


def test_json_patch_move():  # A.6, A.7
    doc = {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}
    ops = [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]
    assert json_patch(doc, ops) == {
        "foo": {"bar": "baz"},
        "qux": {"corge": "grault", "thud": "fred"},
    }
    doc = {"foo": ["all", "grass", "cows", "eat"]}
    ops = [{"op": "move", "from": "/foo/1", "path": "/foo/3"}]
    assert json_patch(doc, ops) == {"foo": ["all", "cows", "eat", "grass"]}


def test_json_patch_test_success_and_failure():  # A.8, A.9
    doc = {"baz": "qux", "foo": ["a", 2, "c"]}
    ops = [
        {"op": "test", "path": "/baz", "value": "qux"},
        {"op": "test", "path": "/foo/1", "value": 2},
    ]
    assert json_patch(doc, ops) == doc
    with pytest.raises(PatchError) as err:
        json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    assert "/baz" in err.value.message and "test failed" in err.value.message
    assert err.value.field == "/baz"


def test_json_patch_add_nested_member_and_ignores_unknown_members():  # A.10, A.11
    doc = {"foo": "bar"}
    ops = [{"op": "add", "path": "/child", "value": {"grandchild": {}}, "xyz": 123}]
    assert json_patch(doc, ops) == {"foo": "bar", "child": {"grandchild": {}}}


def test_json_patch_add_to_missing_parent_fails():  # A.12
    with pytest.raises(PatchError) as err:
        json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}])
    assert '"/baz" does not exist' in err.value.message
    assert err.value.field == "/baz/bat"


def test_json_patch_pointer_escapes():  # A.14
    doc = {"/": 9, "~1": 10}
    assert json_patch(doc, [{"op": "test", "path": "/~01", "value": 10}]) == doc
    assert json_patch(doc, [{"op": "remove", "path": "/~1"}]) == {"~1": 10}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/~2", "value": 10}])


def test_json_patch_compares_strings_and_numbers_strictly():  # A.15
    with pytest.raises(PatchError):
        json_patch({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}])
    with pytest.raises(PatchError):
        json_patch({"a": True}, [{"op": "test", "path": "/a", "value": 1}])
    assert json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 1.0}]) == {"a": 1}


def test_json_patch_append_with_dash():  # A.16
    doc = {"foo": ["bar"]}
    ops = [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]
    assert json_patch(doc, ops) == {"foo": ["bar", ["abc", "def"]]}


def test_json_patch_copy_is_deep():
    doc = {"a": {"b": [1]}}
    result = json_patch(doc, [
        {"op": "copy", "from": "/a", "path": "/c"},
        {"op": "add", "path": "/c/b/-", "value": 2},
    ])
    assert result == {"a": {"b": [1]}, "c": {"b": [1, 2]}}


def test_json_patch_whole_document():
    assert json_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}]) == [1]
    assert json_patch({"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}]) == {"b": 2}
    with pytest.raises(PatchError):
        json_patch({"a": 1}, [{"op": "remove", "path": ""}])


@pytest.mark.parametrize(
    "ops,words",
    [
        ([{"op": "remove", "path": "/spec/nope"}], '"/spec/nope" does not exist'),
        ([{"op": "replace", "path": "/spec/nope", "value": 1}], '"/spec/nope" does not exist'),
        ([{"op": "remove", "path": "/items/5"}], "out of range"),
        ([{"op": "add", "path": "/items/01", "value": 1}], "not an array index"),
        ([{"op": "remove", "path": "/items/-"}], "not an array index"),
        ([{"op": "add", "path": "/items/3", "value": 1}], "out of range"),
        ([{"op": "move", "from": "/spec", "path": "/spec/x"}], "its own children"),
        ([{"op": "copy", "from": "/missing", "path": "/x"}], '"/missing" does not exist'),
        ([{"op": "add", "path": "/spec/replicas/x", "value": 1}], "not an object or array"),
        ([{"op": "frobnicate", "path": "/spec"}], "unknown op"),
        ([{"path": "/spec"}], '"op"'),
        ([{"op": "add", "path": "/x"}], '"value"'),
        ([{"op": "add", "value": 1}], '"path"'),
        ([{"op": "add", "path": "x", "value": 1}], 'start with "/"'),
    ],
)
def test_json_patch_errors_name_the_problem(ops, words):
    doc = {"spec": {"replicas": 1}, "items": [1, 2]}
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError) as err:
        json_patch(doc, ops)
    assert words in err.value.message
    assert not err.value.malformed
    assert doc == before


def test_json_patch_is_all_or_nothing_and_reports_operation_index():
    doc = {"a": 1}
    ops = [{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/zz"}]
    with pytest.raises(PatchError) as err:
        json_patch(doc, ops)
    assert "operation 1" in err.value.message
    assert doc == {"a": 1}


def test_json_patch_malformed_documents():
    for bad in ({"op": "add"}, "x", None):
        with pytest.raises(PatchError) as err:
            json_patch({}, bad)
        assert err.value.malformed
    with pytest.raises(PatchError) as err:
        json_patch({}, ["not an object"])
    assert err.value.malformed


# --------------------------------------------------------------------------- SMP


def make_pod():
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "labels": {"app": "web", "tier": "front"},
            "finalizers": ["a.example/x", "b.example/y"],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:1",
                    "args": ["--port", "80"],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                },
                {"name": "sidecar", "image": "side:1"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
        },
    }


def smp(target, patch, kind="Pod"):
    before = copy.deepcopy((target, patch))
    result = strategic_merge_patch(target, patch, kind)
    assert (target, patch) == before, "inputs must not be mutated"
    assert not _has_directives(result), result
    return result


def _has_directives(value):
    if isinstance(value, dict):
        return any(
            k == "$patch" or k == "$retainKeys" or k.startswith(("$setElementOrder/", "$deleteFromPrimitiveList/"))
            or _has_directives(v)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_has_directives(v) for v in value)
    return False


def names(items):
    return [c["name"] for c in items]


def test_smp_container_image_change_keeps_other_containers():
    pod = make_pod()
    result = smp(pod, {"spec": {"containers": [{"name": "sidecar", "image": "side:2"}]}})
    containers = result["spec"]["containers"]
    assert names(containers) == ["app", "sidecar"]
    assert containers[1] == {"name": "sidecar", "image": "side:2"}
    assert containers[0] == pod["spec"]["containers"][0]


def test_smp_env_merges_by_name():
    patch = {"spec": {"containers": [{"name": "app", "env": [
        {"name": "B", "value": "two"},
        {"name": "C", "value": "3"},
    ]}]}}
    env = smp(make_pod(), patch)["spec"]["containers"][0]["env"]
    assert {e["name"]: e["value"] for e in env} == {"A": "1", "B": "two", "C": "3"}
    assert names(env)[0] == "A"  # an untouched live element that came first stays first


def test_smp_new_elements_go_where_kubernetes_puts_them():
    # The API server interleaves: patch elements in patch order, live-only elements in
    # live order; a brand-new element lands before the live-only elements after it.
    pod = make_pod()
    result = smp(pod, {"spec": {"containers": [{"name": "logger", "image": "log:1"}]}})
    assert names(result["spec"]["containers"]) == ["logger", "app", "sidecar"]
    patch = {"spec": {"containers": [{"name": "sidecar", "image": "s"}, {"name": "logger", "image": "l"}]}}
    assert names(smp(pod, patch)["spec"]["containers"]) == ["app", "sidecar", "logger"]


def test_smp_patch_delete_removes_a_container():
    patch = {"spec": {"containers": [{"$patch": "delete", "name": "sidecar"}]}}
    result = smp(make_pod(), patch)
    assert names(result["spec"]["containers"]) == ["app"]


def test_smp_patch_replace_on_a_list():
    patch = {"spec": {"containers": [{"name": "only", "image": "o:1"}, {"$patch": "replace"}]}}
    result = smp(make_pod(), patch)
    assert result["spec"]["containers"] == [{"name": "only", "image": "o:1"}]


def test_smp_patch_replace_and_delete_on_a_map():
    pod = make_pod()
    result = smp(pod, {"metadata": {"labels": {"$patch": "replace", "only": "this"}}})
    assert result["metadata"]["labels"] == {"only": "this"}
    result = smp(pod, {"metadata": {"labels": {"$patch": "delete"}}})
    assert "labels" not in result["metadata"]
    assert result["metadata"]["name"] == "web"


def test_smp_set_element_order():
    pod = make_pod()
    patch = {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
        "containers": [{"name": "app", "image": "app:2"}],
    }}
    containers = smp(pod, patch)["spec"]["containers"]
    assert names(containers) == ["sidecar", "app"]
    assert containers[1]["image"] == "app:2" and containers[1]["env"]  # merged, not replaced


def test_smp_set_element_order_alone_reorders_and_checks_consistency():
    pod = make_pod()
    order = {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}]}}
    assert names(smp(pod, order)["spec"]["containers"]) == ["sidecar", "app"]
    env_order = {"spec": {"containers": [{"name": "app", "$setElementOrder/env": [{"name": "B"}, {"name": "A"}]}]}}
    assert names(smp(pod, env_order)["spec"]["containers"][0]["env"]) == ["B", "A"]
    bad = {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"name": "intruder", "image": "x"}],
    }}
    with pytest.raises(PatchError) as err:
        strategic_merge_patch(pod, bad, "Pod")
    assert "spec.containers" in err.value.message


def test_smp_set_element_order_for_primitive_merge_list():
    pod = make_pod()
    patch = {"metadata": {"$setElementOrder/finalizers": ["b.example/y", "c.example/z", "a.example/x"],
                          "finalizers": ["c.example/z"]}}
    assert smp(pod, patch)["metadata"]["finalizers"] == ["b.example/y", "c.example/z", "a.example/x"]


def test_smp_finalizers_union_and_delete_from_primitive_list():
    pod = make_pod()
    added = smp(pod, {"metadata": {"finalizers": ["b.example/y", "c.example/z"]}})
    assert sorted(added["metadata"]["finalizers"]) == ["a.example/x", "b.example/y", "c.example/z"]
    removed = smp(pod, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/x"]}})
    assert removed["metadata"]["finalizers"] == ["b.example/y"]
    both = smp(pod, {"metadata": {
        "finalizers": ["c.example/z"],
        "$deleteFromPrimitiveList/finalizers": ["a.example/x", "b.example/y"],
    }})
    assert both["metadata"]["finalizers"] == ["c.example/z"]
    nothing_there = smp({"metadata": {}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert nothing_there == {"metadata": {}}


def test_smp_null_deletes():
    pod = make_pod()
    result = smp(pod, {"metadata": {"labels": {"tier": None}}, "spec": {"tolerations": None}})
    assert result["metadata"]["labels"] == {"app": "web"}
    assert "tolerations" not in result["spec"]
    new = smp(pod, {"spec": {"containers": [{"name": "app", "resources": {"limits": None, "requests": {"cpu": "1"}}}]}})
    assert new["spec"]["containers"][0]["resources"] == {"requests": {"cpu": "1"}}


def test_smp_retain_keys_switches_a_union_member():
    deployment = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert smp(deployment, patch, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}

    pod = make_pod()
    patch = {"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "data", "configMap": {"name": "cm"}}]}}
    assert smp(pod, patch)["spec"]["volumes"] == [{"name": "data", "configMap": {"name": "cm"}}]

    with pytest.raises(PatchError):
        strategic_merge_patch(deployment, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, "Deployment")
    with pytest.raises(PatchError) as err:
        strategic_merge_patch(deployment, {"spec": {"strategy": {"$retainKeys": "type"}}}, "Deployment")
    assert err.value.malformed


def test_smp_lists_without_merge_strategy_are_replaced():
    pod = make_pod()
    result = smp(pod, {"spec": {"containers": [{"name": "app", "args": ["--debug"]}],
                                "tolerations": [{"key": "other", "operator": "Exists"}]}})
    assert result["spec"]["containers"][0]["args"] == ["--debug"]
    assert result["spec"]["tolerations"] == [{"key": "other", "operator": "Exists"}]


def test_smp_ports_merge_by_container_port_and_service_port():
    pod = make_pod()
    result = smp(pod, {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}})
    assert sorted(p["containerPort"] for p in result["spec"]["containers"][0]["ports"]) == [80, 443]
    assert {"containerPort": 80, "protocol": "TCP", "name": "http"} in result["spec"]["containers"][0]["ports"]

    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}
    result = smp(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}, "Service")
    assert result["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}]


def test_smp_status_conditions_merge_by_type():
    node = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.2"}]}}
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}],
                        "addresses": [{"type": "Hostname", "address": "n1"}]}}
    result = smp(node, patch, "Node")
    assert result["status"]["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]
    assert len(result["status"]["addresses"]) == 2


def test_smp_owner_references_merge_by_uid():
    cm = {"metadata": {"ownerReferences": [{"uid": "1", "kind": "A"}]}}
    result = smp(cm, {"metadata": {"ownerReferences": [{"uid": "2", "kind": "B"}]}}, "ConfigMap")
    assert sorted(r["uid"] for r in result["metadata"]["ownerReferences"]) == ["1", "2"]


def test_smp_templates_in_workloads_share_the_pod_spec_table():
    container = {"name": "c", "image": "i:1", "env": [{"name": "A", "value": "1"}]}
    template = {"spec": {"containers": [container, {"name": "d", "image": "d:1"}]}}
    patch_c = {"name": "c", "env": [{"name": "B", "value": "2"}]}
    cases = {
        "Deployment": ({"spec": {"template": template}}, lambda p: {"spec": {"template": p}}, ("spec", "template")),
        "StatefulSet": ({"spec": {"template": template}}, lambda p: {"spec": {"template": p}}, ("spec", "template")),
        "DaemonSet": ({"spec": {"template": template}}, lambda p: {"spec": {"template": p}}, ("spec", "template")),
        "ReplicaSet": ({"spec": {"template": template}}, lambda p: {"spec": {"template": p}}, ("spec", "template")),
        "Job": ({"spec": {"template": template}}, lambda p: {"spec": {"template": p}}, ("spec", "template")),
        "CronJob": (
            {"spec": {"jobTemplate": {"spec": {"template": template}}}},
            lambda p: {"spec": {"jobTemplate": {"spec": {"template": p}}}},
            ("spec", "jobTemplate", "spec", "template"),
        ),
    }
    for kind, (obj, wrap, where) in cases.items():
        result = smp(obj, wrap({"spec": {"containers": [patch_c]}}), kind)
        for step in where:
            result = result[step]
        assert names(result["spec"]["containers"]) == ["c", "d"], kind
        assert sorted(names(result["spec"]["containers"][0]["env"])) == ["A", "B"], kind


def test_smp_atomic_lists_upstream_tags():
    # containerStatuses, node taints and resizePolicy carry no patch strategy upstream.
    pod = {"status": {"containerStatuses": [{"name": "a", "ready": True}, {"name": "b", "ready": True}]}}
    result = smp(pod, {"status": {"containerStatuses": [{"name": "a", "ready": False}]}})
    assert result["status"]["containerStatuses"] == [{"name": "a", "ready": False}]
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}
    assert smp(node, {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}, "Node")["spec"]["taints"] == [
        {"key": "b", "effect": "NoSchedule"}
    ]


def test_smp_unknown_kind_behaves_like_merge_patch():
    obj = {"metadata": {"finalizers": ["a"], "labels": {"x": "1"}}, "spec": {"items": [{"name": "a"}], "n": 1}}
    patch = {"metadata": {"finalizers": ["b"], "labels": {"y": "2"}}, "spec": {"items": [{"name": "b"}], "n": None}}
    result = smp(obj, patch, "Widget")
    assert result == json_merge_patch(obj, patch)
    assert result["metadata"]["finalizers"] == ["b"]
    assert result["spec"] == {"items": [{"name": "b"}]}


def test_smp_kubectl_apply_style_patch_on_deployment():
    last_applied = json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "u-1",
            "resourceVersion": "7",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"},
                        {"name": "metrics", "image": "exporter:1"},
                    ],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]},
    }
    # What kubectl apply sends after the user bumped replicas and the web image.
    patch = {
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied + "\n"}},
        "spec": {
            "replicas": 3,
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "metrics"}],
                "containers": [{"image": "nginx:1.27", "name": "web"}],
            }},
        },
    }
    result = smp(deployment, patch, "Deployment")
    assert result["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied + "\n",
        "team": "a",
    }
    assert result["metadata"]["uid"] == "u-1"
    assert result["spec"]["replicas"] == 3
    web, metrics = result["spec"]["template"]["spec"]["containers"]
    assert web == {**deployment["spec"]["template"]["spec"]["containers"][0], "image": "nginx:1.27"}
    assert metrics == {"name": "metrics", "image": "exporter:1"}
    assert result["spec"]["strategy"] == deployment["spec"]["strategy"]
    assert result["status"] == deployment["status"]


def test_smp_errors():
    pod = make_pod()
    with pytest.raises(PatchError) as err:
        strategic_merge_patch(pod, {"spec": {"containers": [{"image": "no-name"}]}}, "Pod")
    assert "spec.containers" in err.value.message and "name" in err.value.message
    assert err.value.field == "spec.containers"
    with pytest.raises(PatchError) as err:
        strategic_merge_patch(pod, {"spec": {"$patch": "explode"}}, "Pod")
    assert "explode" in err.value.message
    with pytest.raises(PatchError) as err:
        strategic_merge_patch(pod, ["not", "a", "map"], "Pod")
    assert err.value.malformed
    with pytest.raises(PatchError):
        strategic_merge_patch(pod, {"spec": {"containers": [{"$patch": "delete"}]}}, "Pod")


def test_smp_new_values_are_cleaned_of_directives_and_nulls():
    pod = {"metadata": {"name": "p"}}
    patch = {"spec": {
        "containers": [{"name": "a", "image": "i", "env": [{"name": "X", "value": "1"}, {"$patch": "delete", "name": "Y"}]}],
        "securityContext": {"runAsUser": None, "fsGroup": 1},
        "tolerations": [{"key": "k"}, {"$patch": "replace"}],
    }}
    result = smp(pod, patch)
    assert result["spec"] == {
        "containers": [{"name": "a", "image": "i", "env": [{"name": "X", "value": "1"}]}],
        "securityContext": {"fsGroup": 1},
        "tolerations": [{"key": "k"}],
    }


def test_smp_result_shares_nothing_with_inputs():
    pod = make_pod()
    patch = {"spec": {"containers": [{"name": "new", "image": "n", "args": ["a"]}]}}
    result = strategic_merge_patch(pod, patch, "Pod")
    for c in result["spec"]["containers"]:
        c.setdefault("args", []).append("mutated")
    assert pod == make_pod()
    assert patch == {"spec": {"containers": [{"name": "new", "image": "n", "args": ["a"]}]}}


def test_kind_schemas_cover_the_promised_kinds():
    for kind in ("Pod", "Deployment", "ReplicaSet", "Service", "ConfigMap", "Secret", "Namespace", "Node",
                 "Event", "Lease", "Job", "CronJob", "DaemonSet", "StatefulSet", "Endpoints",
                 "ServiceAccount", "PersistentVolumeClaim"):
        assert "metadata" in KIND_SCHEMAS[kind], kind


# --------------------------------------------------------------------------- properties

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
keys = st.text(alphabet="abcxyz~/$", min_size=0, max_size=4)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(keys, json_values, max_size=5)
# Values a merge patch can produce exactly: no null as an object member.
no_null_members = st.recursive(
    scalars.filter(lambda v: v is not None),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


def merge_diff(a, b):
    """The RFC 7386 patch that turns a into b."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return b
    patch = {k: None for k in a if k not in b}
    for k, v in b.items():
        if k not in a:
            patch[k] = v
        elif json.dumps(a[k], sort_keys=True) != json.dumps(v, sort_keys=True):
            patch[k] = merge_diff(a[k], v)
    return patch


@given(json_objects)
def test_merge_patch_with_empty_patch_is_identity(doc):
    assert json_merge_patch(doc, {}) == doc


@given(json_values, json_values)
def test_merge_patch_does_not_mutate_and_is_idempotent(target, patch):
    before = copy.deepcopy((target, patch))
    once = json_merge_patch(target, patch)
    assert (target, patch) == before
    assert json_merge_patch(once, patch) == once


@given(json_values, no_null_members)
def test_merge_patch_of_a_diff_reaches_the_goal(a, b):
    assert json_merge_patch(a, merge_diff(a, b)) == b


plain_keys = st.text(alphabet="abcxyz", min_size=1, max_size=4)
plain_objects = st.dictionaries(
    plain_keys,
    st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(plain_keys, c, max_size=3), max_leaves=15),
    max_size=5,
)


@given(plain_objects, plain_objects)
def test_smp_for_unknown_kinds_equals_merge_patch(target, patch):
    assert strategic_merge_patch(target, patch, "SomethingCustom") == json_merge_patch(target, patch)


@given(plain_objects)
def test_smp_with_empty_patch_is_identity(doc):
    assert strategic_merge_patch(doc, {}, "Pod") == doc


def _containers(doc):
    """Every (pointer, container) pair in doc, the root first."""
    found = [("", doc)]
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return []
    for k, v in items:
        if isinstance(v, (dict, list)):
            token = str(k).replace("~", "~0").replace("/", "~1")
            found += [("/" + token + p, c) for p, c in _containers(v)]
    return found


@settings(max_examples=150)
@given(json_objects, st.data())
def test_json_patch_of_generated_add_remove_sequence(doc, data):
    model = copy.deepcopy(doc)
    ops = []
    for _ in range(data.draw(st.integers(0, 8))):
        pointer, node = data.draw(st.sampled_from(_containers(model)))
        value = data.draw(json_values)
        if isinstance(node, dict):
            if node and data.draw(st.booleans()):
                key = data.draw(st.sampled_from(sorted(node)))
                del node[key]
                op = "remove"
            else:
                key = data.draw(keys)
                node[key] = copy.deepcopy(value)
                op = "add"
            token = key.replace("~", "~0").replace("/", "~1")
        else:
            if node and data.draw(st.booleans()):
                index = data.draw(st.integers(0, len(node) - 1))
                node.pop(index)
                op, token = "remove", str(index)
            else:
                index = data.draw(st.integers(0, len(node)))
                node.insert(index, copy.deepcopy(value))
                op = "add"
                token = "-" if index == len(node) - 1 and data.draw(st.booleans()) else str(index)
        entry = {"op": op, "path": f"{pointer}/{token}"}
        if op == "add":
            entry["value"] = value
        ops.append(entry)
    before = copy.deepcopy((doc, ops))
    result = json_patch(doc, ops)
    assert result == model
    assert (doc, ops) == before
    # Every value we added is still where the test op says it is, or was removed later.
    assert json_patch(result, [{"op": "test", "path": "", "value": model}]) == model
