"""The nesting bound on request bodies (api/limits.py) and what a status write validates."""
import orjson
import pytest

from sendo.api import limits
from sendo.api.errors import APIError


def test_json_depth_check_is_skipped_only_when_the_bytes_cannot_nest_that_deep():
    shallow = b'{"a": [{"b": "{[{["}]}'  # brackets inside strings only make the count larger
    assert limits.check_json_depth(shallow, orjson.loads(shallow)) == orjson.loads(shallow)
    deep = b"[" * (limits.MAX_DEPTH + 1) + b"]" * (limits.MAX_DEPTH + 1)
    with pytest.raises(APIError):
        limits.check_json_depth(deep, orjson.loads(deep))
    wide = b"[" + b",".join([b"{}"] * (limits.MAX_DEPTH + 1)) + b"]"  # many brackets, shallow: walked, accepted
    assert limits.check_json_depth(wide, orjson.loads(wide)) == orjson.loads(wide)


def test_a_pod_status_write_checks_the_spec_only_if_it_changed():
    from sendo.kinds.pod import PodStrategy
    s = PodStrategy()
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "Not_A_Name", "image": "x"}]}}
    assert s.validate(bad)  # invalid as a create
    assert not s.validate_status({**bad, "status": {"phase": "Running"}}, bad)  # the stored spec is not re-checked
    changed = {**bad, "spec": {"containers": [{"name": "Still_Bad", "image": "x"}]}}
    assert s.validate_status(changed, bad)
    bad_label = {**bad, "metadata": {"name": "p", "labels": {"a": "-bad-"}}}
    assert s.validate_status(bad_label, bad)  # labels are checked on every write
