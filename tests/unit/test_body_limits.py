"""The nesting bound on request bodies (api/limits.py)."""
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
