"""Field ownership (managedFields) and server-side apply, as pure functions."""
import copy

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendo.api import fieldmanager as fm
from sendo.api.fieldmanager import ApplyConflict, apply, decode_fields, encode_fields, field_set, record_update

K = "Deployment"
WEB = 'k:{"name":"web"}'


def deployment(replicas=2, image="nginx", **labels):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": labels or {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                                           "ports": [{"containerPort": 80}]}]}}}}


def entries(obj):
    """{(manager, operation, subresource): field set} of an object."""
    return {(e.manager, e.operation, e.subresource): e.fields
            for e in fm.decode_entries(obj["metadata"].get("managedFields"))}


def owners(obj, path):
    return sorted(m for (m, _, _), fields in entries(obj).items() if path in fields)


# ----------------------------------------------------------------------------- field sets

def test_field_set_uses_merge_keys_sets_and_atomic_values():
    d = deployment()
    d["metadata"]["finalizers"] = ["x"]
    d["spec"]["template"]["spec"]["containers"][0]["command"] = ["sleep", "1"]
    s = field_set(d, K)
    c = ("f:spec", "f:template", "f:spec", "f:containers", WEB)
    assert ("f:metadata", "f:labels", "f:app") in s
    assert ("f:metadata", "f:finalizers", 'v:"x"') in s  # a set of primitives
    assert ("f:spec", "f:selector") in s  # a label selector is atomic
    assert not any(p[:2] == ("f:spec", "f:selector") and len(p) > 2 for p in s)
    assert c in s and c + ("f:image",) in s and c + ("f:command",) in s  # command: atomic list
    assert c + ("f:ports", 'k:{"containerPort":80}', "f:containerPort") in s
    assert not any(p[0] in ("f:apiVersion", "f:kind") or p[:2] == ("f:metadata", "f:name") for p in s)


def test_fields_v1_encoding_matches_kubernetes():
    paths = {("f:metadata", "f:labels", "f:app"), ("f:spec", "f:containers", WEB),
             ("f:spec", "f:containers", WEB, "f:image")}
    encoded = encode_fields(paths)
    assert encoded == {"f:metadata": {"f:labels": {"f:app": {}}},
                       "f:spec": {"f:containers": {WEB: {".": {}, "f:image": {}}}}}
    assert list(encoded["f:spec"]["f:containers"][WEB]) == [".", "f:image"]  # "." first
    assert decode_fields(encoded) == paths
    with pytest.raises(ValueError):
        decode_fields({"f:a": "not an object"})


def test_path_string_is_kubernetes_notation():
    assert fm.path_string(("f:spec", "f:replicas")) == ".spec.replicas"
    assert fm.path_string(("f:spec", "f:containers", WEB, "f:image")) == '.spec.containers[name="web"].image'
    assert fm.path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'


# ----------------------------------------------------------------------------- apply

def test_apply_creates_and_owns_exactly_the_applied_fields():
    obj = apply(None, deployment(), "kubectl", K, api_version="apps/v1", now="t1")
    assert obj["spec"]["replicas"] == 2
    [e] = obj["metadata"]["managedFields"]
    assert (e["manager"], e["operation"], e["apiVersion"], e["time"], e["fieldsType"]) == \
        ("kubectl", "Apply", "apps/v1", "t1", "FieldsV1")
    assert decode_fields(e["fieldsV1"]) == field_set(deployment(), K)


def test_reapply_with_a_field_removed_removes_it_unless_someone_else_owns_it():
    first = apply(None, deployment(), "kubectl", K)
    smaller = deployment()
    del smaller["spec"]["replicas"]
    del smaller["spec"]["template"]["spec"]["containers"][0]["ports"]
    after = apply(first, smaller, "kubectl", K)
    assert "replicas" not in after["spec"]
    assert "ports" not in after["spec"]["template"]["spec"]["containers"][0]
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx"

    # another applier that also sets replicas (same value: shared, no conflict) keeps it alive
    shared = apply(first, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                           "spec": {"replicas": 2}}, "other", K)
    assert owners(shared, ("f:spec", "f:replicas")) == ["kubectl", "other"]
    after = apply(shared, smaller, "kubectl", K)
    assert after["spec"]["replicas"] == 2 and owners(after, ("f:spec", "f:replicas")) == ["other"]


def test_conflict_with_a_different_value_unless_forced():
    live = apply(None, deployment(), "kubectl", K)
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    record_update(live, scaled, "kubectl-scale", K, "scale", api_version="apps/v1")
    with pytest.raises(ApplyConflict) as e:
        apply(scaled, deployment(), "kubectl", K)
    assert e.value.message == ('Apply failed with 1 conflict: conflict with "kubectl-scale" with subresource '
                               '"scale" using apps/v1: .spec.replicas')
    assert e.value.causes() == [{"reason": "FieldManagerConflict", "field": ".spec.replicas",
                                 "message": 'conflict with "kubectl-scale" with subresource "scale" using apps/v1'}]
    forced = apply(scaled, deployment(), "kubectl", K, force=True)
    assert forced["spec"]["replicas"] == 2
    assert owners(forced, ("f:spec", "f:replicas")) == ["kubectl"]
    assert ("kubectl-scale", "Update", "scale") not in entries(forced)  # emptied entries go


def test_several_conflicts_are_grouped_by_manager():
    live = apply(None, deployment(), "a", K)
    with pytest.raises(ApplyConflict) as e:
        apply(live, deployment(replicas=3, image="other"), "b", K)
    assert e.value.message == ('Apply failed with 2 conflicts: conflicts with "a":\n- .spec.replicas\n'
                               '- .spec.template.spec.containers[name="web"].image')


def test_applying_the_same_values_shares_ownership_without_conflict():
    live = apply(None, deployment(), "a", K)
    both = apply(live, deployment(), "b", K)
    assert owners(both, ("f:spec", "f:replicas")) == ["a", "b"]
    with pytest.raises(ApplyConflict):  # now changing it conflicts with the co-owner
        apply(both, deployment(replicas=9), "b", K)


def test_apply_merges_keyed_lists_and_keeps_other_managers_elements():
    live = apply(None, deployment(), "a", K)
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"template": {"spec": {"containers": [{"name": "log", "image": "busybox"}]}}}}
    both = apply(live, sidecar, "b", K)
    assert [c["name"] for c in both["spec"]["template"]["spec"]["containers"]] == ["web", "log"]
    again = apply(both, deployment(), "a", K)  # a's apply does not remove b's container
    assert [c["name"] for c in again["spec"]["template"]["spec"]["containers"]] == ["web", "log"]


def test_dropping_a_list_element_removes_it_unless_another_manager_owns_part_of_it():
    live = apply(None, deployment(), "a", K)
    no_containers = deployment()
    no_containers["spec"]["template"]["spec"]["containers"] = [{"name": "other", "image": "x"}]
    gone = apply(live, no_containers, "a", K)
    assert [c["name"] for c in gone["spec"]["template"]["spec"]["containers"]] == ["other"]

    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    record_update(live, edited, "kubectl-set", K)
    kept = apply(edited, no_containers, "a", K)
    web = kept["spec"]["template"]["spec"]["containers"][0]
    assert web == {"name": "web", "image": "nginx:2"}  # b's image and the key stay; a's ports go


def test_apply_to_status_subresource_only_touches_status():
    live = apply(None, deployment(), "a", K, status_subresource=True)
    cfg = {**deployment(replicas=7), "status": {"replicas": 3}}
    main = apply(live, cfg, "a", K, status_subresource=True, force=True)
    assert not any(p[0] == "f:status" for p in entries(main)[("a", "Apply", "")])
    status = apply(live, cfg, "ctl", K, subresource="status", status_subresource=True)
    assert status["status"] == {"replicas": 3} and status["spec"]["replicas"] == 2
    assert entries(status)[("ctl", "Apply", "status")] == {("f:status", "f:replicas")}


def test_apply_over_an_untracked_object_conflicts_with_before_first_apply():
    live = deployment()
    with pytest.raises(ApplyConflict) as e:
        apply(live, deployment(replicas=4), "kubectl", K)
    assert '"before-first-apply" using apps/v1: .spec.replicas' in e.value.message
    assert apply(live, deployment(), "kubectl", K)["spec"]["replicas"] == 2


def test_apply_does_not_change_its_inputs():
    live, cfg = apply(None, deployment(), "a", K), deployment(replicas=1)
    live_copy, cfg_copy = copy.deepcopy(live), copy.deepcopy(cfg)
    apply(live, cfg, "a", K)
    assert live == live_copy and cfg == cfg_copy


# ----------------------------------------------------------------------------- record_update

def test_update_moves_changed_fields_to_the_writer():
    live = apply(None, deployment(), "kubectl", K)
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 3
    new["metadata"]["labels"]["tier"] = "web"
    record_update(live, new, "kubectl-edit", K, api_version="apps/v1", now="t9")
    mine = entries(new)[("kubectl-edit", "Update", "")]
    assert mine == {("f:spec", "f:replicas"), ("f:metadata", "f:labels", "f:tier")}
    assert ("f:spec", "f:replicas") not in entries(new)[("kubectl", "Apply", "")]
    e = next(e for e in new["metadata"]["managedFields"] if e["manager"] == "kubectl-edit")
    assert e["time"] == "t9" and e["apiVersion"] == "apps/v1" and "subresource" not in e


def test_create_owns_everything_and_noop_keeps_managed_fields_untouched():
    obj = record_update(None, deployment(), "kubectl-create", K)
    assert entries(obj) == {("kubectl-create", "Update", ""): field_set(deployment(), K)}
    same = copy.deepcopy(obj)
    del same["metadata"]["managedFields"]  # a client that drops them loses nothing
    record_update(obj, same, "other", K)
    assert same["metadata"]["managedFields"] == obj["metadata"]["managedFields"]


def test_main_resource_writes_own_no_status_when_status_has_its_own_endpoint():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "x"}]},
           "status": {"phase": "Pending", "qosClass": "BestEffort"}}  # what the server sets on create
    created = record_update(None, copy.deepcopy(pod), "creator", "Pod", status_subresource=True)
    assert not any(p[0] == "f:status" for p in entries(created)[("creator", "Update", "")])
    running = copy.deepcopy(created)
    running["status"]["phase"] = "Running"
    record_update(created, running, "kubelet", "Pod", "status", status_subresource=True)
    assert owners(running, ("f:status", "f:phase")) == ["kubelet"]
    assert entries(running)[("creator", "Update", "")] == entries(created)[("creator", "Update", "")]
    # a kind without a status endpoint: the writer owns the status it writes, as before
    assert ("f:status", "f:phase") in entries(record_update(None, copy.deepcopy(pod), "w", "Pod"))[("w", "Update", "")]


def test_removed_fields_leave_every_owner_and_empty_entries_go():
    obj = record_update(None, deployment(), "a", K)
    new = copy.deepcopy(obj)
    new["metadata"]["labels"] = {"app": "web", "x": "1"}
    record_update(obj, new, "b", K)
    newer = copy.deepcopy(new)
    del newer["metadata"]["labels"]["x"]
    record_update(new, newer, "c", K)
    assert set(entries(newer)) == {("a", "Update", "")}  # b owned only x; c changed nothing it keeps


def test_client_can_reset_managed_fields():
    obj = record_update(None, deployment(), "a", K)
    reset = copy.deepcopy(obj)
    reset["metadata"]["managedFields"] = [{}]
    record_update(obj, reset, "b", K)
    assert "managedFields" not in reset["metadata"]


def test_update_managers_are_capped():
    obj = record_update(None, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, "m0", "x",
                        now="t00")
    for i in range(1, 14):
        new = copy.deepcopy(obj)
        new.setdefault("data", {})[f"k{i}"] = "v"
        obj = record_update(obj, new, f"m{i}", "x", now=f"t{i:02d}")
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(managers) == fm.MAX_UPDATE_MANAGERS and fm.ANCIENT_CHANGES in managers and "m13" in managers
    everything = set().union(*entries(obj).values())
    assert everything == field_set(obj, "x")  # folding loses no ownership


# ----------------------------------------------------------------------------- properties

names = st.sampled_from(["a", "b", "c"])
values = st.sampled_from(["1", "2"])
env = st.lists(st.fixed_dictionaries({"name": names, "value": values}), max_size=3, unique_by=lambda e: e["name"])
container = st.fixed_dictionaries({"name": names}, optional={
    "image": st.sampled_from(["i1", "i2"]), "env": env, "command": st.lists(st.sampled_from(["sh", "-c"]), max_size=2),
    "resources": st.dictionaries(st.sampled_from(["cpu", "memory"]), values, max_size=2)})
spec = st.fixed_dictionaries({}, optional={
    "replicas": st.integers(0, 3), "paused": st.booleans(),
    "selector": st.fixed_dictionaries({"matchLabels": st.dictionaries(names, values, max_size=2)}),
    "template": st.fixed_dictionaries({"spec": st.fixed_dictionaries({}, optional={
        "containers": st.lists(container, max_size=3, unique_by=lambda c: c["name"])})})})
metadata = st.fixed_dictionaries({"name": st.just("o")}, optional={
    "labels": st.dictionaries(names, values, max_size=3),
    "finalizers": st.lists(st.sampled_from(["f1", "f2", "f3"]), unique=True, max_size=3)})
objects = st.fixed_dictionaries({"apiVersion": st.just("apps/v1"), "kind": st.just(K), "metadata": metadata},
                                optional={"spec": spec})


def value_at(obj, path):
    """The value at a field path, or KeyError."""
    node = obj
    for element in path:
        tag, _, arg = element.partition(":")
        if tag == "f" and isinstance(node, dict):
            node = node[arg]
        elif tag in ("k", "v") and isinstance(node, list):
            want = orjson.loads(arg)
            node = next(i for i in node if (all(i.get(k) == v for k, v in want.items()) if tag == "k" else i == want))
        else:
            raise KeyError(element)
    return node


def without_managed_fields(obj):
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("managedFields", None)
    return obj


@settings(max_examples=150, deadline=None)
@given(objects)
def test_applying_the_same_config_twice_is_idempotent(cfg):
    once = apply(None, cfg, "m", K, now="t1")
    assert apply(once, cfg, "m", K, now="t2") == once


@settings(max_examples=150, deadline=None)
@given(objects, objects)
def test_a_lone_applier_converges_to_its_latest_config(first, second):
    """Fields dropped from the config are removed; the object becomes the new config."""
    after = apply(apply(None, first, "m", K), second, "m", K)
    assert without_managed_fields(after) == without_managed_fields(apply(None, second, "m", K))
    expected = field_set(second, K)
    assert entries(after) == ({("m", "Apply", ""): expected} if expected else {})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(objects, st.sampled_from(["a", "b", "c"])), min_size=2, max_size=5))
def test_record_update_moves_only_changed_fields(history):
    """Through any history of writes: every owned field exists, the writer owns what it
    changed, and nobody loses a field whose value did not change."""
    obj = None
    for new, manager in history:
        new = copy.deepcopy(new)
        before = entries(obj) if obj else {}
        record_update(obj, new, manager, K, now="t")
        after = entries(new)
        present = field_set(new, K)
        assert set().union(*after.values()) <= present
        for path in present:
            changed = obj is None or _differs(obj, new, path)
            if changed:
                assert after[(manager, "Update", "")] >= {path}
                assert owners(new, path) == [manager]
            else:
                for who, fields in before.items():
                    if path in fields:
                        assert path in after.get(who, set()), (who, path)
        obj = new


def _differs(old, new, path):
    try:
        old_value = value_at(old, path)
    except (KeyError, StopIteration):
        return True
    if path[-1][0] in "kv":  # an element's identity: present in both, so unchanged
        return False
    return old_value != value_at(new, path)
