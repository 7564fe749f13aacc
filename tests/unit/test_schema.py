"""OpenAPI v3 schemas of custom resources: pruning, defaulting, validation, structural checks."""
import copy

from hypothesis import given, settings, strategies as st

from sendo.kinds.schema import (apply_defaults, check_schema, json_type, normalize, prune, unknown_fields,
                                validate, validate_object)

json_scalars = (st.none() | st.booleans() | st.integers(-10 ** 12, 10 ** 12)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)

TYPE_OF = {"boolean": bool, "string": str, "array": list, "object": dict}


def texts(causes):
    return [c.text() for c in causes]


# ----------------------------------------------------------------- types


@given(value=json_values, stype=st.sampled_from(["object", "array", "string", "integer", "number", "boolean"]))
def test_a_value_passes_the_type_check_exactly_when_its_json_type_matches(value, stype):
    causes = validate(value, {"type": stype}, "spec.x")
    actual = json_type(value)
    ok = actual == stype or (stype == "number" and actual == "integer")
    assert (causes == []) == ok
    if not ok:
        assert causes[0].field == "spec.x" and causes[0].reason == "FieldValueTypeInvalid"
        assert causes[0].message == (f'Invalid value: "{actual}": spec.x in body must be of type {stype}: '
                                     f'"{actual}"')


def test_type_error_is_worded_like_kubernetes():
    [c] = validate("string", {"type": "integer"}, "spec.replicas")
    assert c.text() == 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'


def test_booleans_are_not_integers_and_whole_floats_are():
    assert validate(True, {"type": "integer"})
    assert validate(3.0, {"type": "integer"}) == []
    assert validate(3.5, {"type": "integer"})
    assert validate(3, {"type": "number"}) == []


@given(value=json_values)
def test_int_or_string_accepts_integers_and_strings_only(value):
    causes = validate(value, {"x-kubernetes-int-or-string": True}, "spec.port")
    assert (causes == []) == (json_type(value) in ("integer", "string"))


def test_null_needs_nullable():
    assert texts(validate(None, {"type": "string"}, "spec.a")) == [
        'spec.a: Invalid value: "null": spec.a in body must be of type string: "null"']
    assert validate(None, {"type": "string", "nullable": True}, "spec.a") == []


# ----------------------------------------------------------------- enums, ranges, strings, arrays


@given(value=st.sampled_from(["S", "M", "L", "XL", "s", "", 1, None, True]))
def test_enum_accepts_only_listed_values(value):
    schema = {"type": "string", "enum": ["S", "M", "L"], "nullable": True}
    causes = validate(value, schema, "spec.size")
    assert (causes == []) == (value in ("S", "M", "L") or value is None)


def test_enum_error_lists_the_supported_values():
    assert texts(validate("XL", {"type": "string", "enum": ["S", "M", "L"]}, "spec.size")) == [
        'spec.size: Unsupported value: "XL": supported values: "S", "M", "L"']
    [c] = validate(3, {"type": "integer", "enum": [1, 2]}, "spec.n")
    assert c.text() == 'spec.n: Unsupported value: 3: supported values: "1", "2"'
    assert validate(1, {"enum": [True]}) and validate(True, {"enum": [1]})  # true is not 1


@given(value=st.integers(-50, 50), lo=st.integers(-20, 20), span=st.integers(0, 20),
       exclusive=st.booleans())
def test_minimum_and_maximum(value, lo, span, exclusive):
    hi = lo + span
    schema = {"type": "integer", "minimum": lo, "maximum": hi,
              "exclusiveMinimum": exclusive, "exclusiveMaximum": exclusive}
    inside = lo < value < hi if exclusive else lo <= value <= hi
    assert (validate(value, schema, "spec.n") == []) == inside


def test_range_messages():
    assert texts(validate(0, {"type": "integer", "minimum": 1}, "spec.replicas")) == [
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"]
    assert texts(validate(11, {"type": "integer", "maximum": 10}, "spec.replicas")) == [
        "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"]
    assert texts(validate(10, {"type": "integer", "maximum": 10, "exclusiveMaximum": True}, "r")) == [
        "r: Invalid value: 10: r in body should be less than 10"]
    assert texts(validate(7, {"type": "integer", "multipleOf": 5}, "r")) == [
        "r: Invalid value: 7: r in body should be a multiple of 5"]


@given(text=st.text(max_size=12), lo=st.integers(0, 5), hi=st.integers(5, 10))
def test_string_lengths(text, lo, hi):
    causes = validate(text, {"type": "string", "minLength": lo, "maxLength": hi}, "spec.s")
    assert (causes == []) == (lo <= len(text) <= hi)


def test_string_messages_and_pattern():
    assert texts(validate("abcdef", {"type": "string", "maxLength": 5}, "spec.s")) == [
        "spec.s: Too long: may not be more than 5 bytes"]
    assert texts(validate("", {"type": "string", "minLength": 1}, "spec.s")) == [
        'spec.s: Invalid value: "": spec.s in body should be at least 1 chars long']
    schema = {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"}
    assert validate("* * * * */5", schema) == []
    assert texts(validate("* * * *", schema, "spec.cronSpec")) == [
        f"spec.cronSpec: Invalid value: \"* * * *\": spec.cronSpec in body should match '{schema['pattern']}'"]



def test_patterns_match_as_go_and_re2_do():
    """`$` is the end of the text (Python's re also matches before a final newline)."""
    schema = {"type": "string", "pattern": "^[a-z]+$"}
    assert validate("abc", schema) == []
    assert texts(validate("abc\n", schema, "spec.s")) == [
        "spec.s: Invalid value: \"abc\\n\": spec.s in body should match '^[a-z]+$'"]
    assert validate("xx-abc", {"type": "string", "pattern": "abc"}) == []  # unanchored, as JSON Schema says

def test_formats():
    dt = {"type": "string", "format": "date-time"}
    for good in ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123+02:00"):
        assert validate(good, dt) == []
    assert texts(validate("yesterday", dt, "spec.when")) == [
        'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"']
    assert validate("2024-13-01T00:00:00Z", dt)
    i32 = {"type": "integer", "format": "int32"}
    assert validate(2 ** 31 - 1, i32) == [] and validate(2 ** 31, i32)
    assert validate(2 ** 63, {"type": "integer", "format": "int64"})
    assert validate("not-a-uuid", {"type": "string", "format": "uuid"})
    assert validate("10.0.0.1", {"type": "string", "format": "ipv4"}) == []
    assert validate("whatever", {"type": "string", "format": "password"}) == []  # not checked, as in Kubernetes


@given(items=st.lists(st.integers(0, 3), max_size=6), lo=st.integers(0, 3), hi=st.integers(3, 5))
def test_item_counts_and_uniqueness(items, lo, hi):
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": lo, "maxItems": hi, "uniqueItems": True}
    ok = lo <= len(items) <= hi and len(set(items)) == len(items)
    assert (validate(items, schema, "spec.l") == []) == ok


def test_array_messages_and_list_types():
    schema = {"type": "array", "items": {"type": "string"}, "maxItems": 2}
    assert texts(validate(["a", "b", "c"], schema, "spec.tags")) == [
        "spec.tags: Too many: 3: must have at most 2 items"]
    assert texts(validate(["a", 1], schema, "spec.tags")) == [
        'spec.tags[1]: Invalid value: "integer": spec.tags[1] in body must be of type string: "integer"']
    sets = {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}
    assert texts(validate(["a", "b", "a"], sets, "spec.tags")) == ['spec.tags[2]: Duplicate value: "a"']
    maps = {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}
    [c] = validate([{"name": "a", "port": 1}, {"name": "a", "port": 2}], maps, "spec.ports")
    assert c.field == "spec.ports[1]" and c.reason == "FieldValueDuplicate"


# ----------------------------------------------------------------- objects


def test_required_and_nested_paths():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object", "required": ["id"],
                                             "properties": {"id": {"type": "integer"}}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}}
    obj = {"spec": {"items": [{"id": 1}, {}], "labels": {"a": "x", "b": 2}}}
    assert texts(validate(obj, schema)) == [
        "spec.name: Required value", "spec.items[1].id: Required value",
        'spec.labels.b: Invalid value: "integer": spec.labels.b in body must be of type string: "integer"']


def test_validate_object_leaves_metadata_to_the_api_server_except_name_rules():
    schema = {"type": "object", "required": ["spec"], "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 5}}},
        "spec": {"type": "object"}}}
    obj = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "toolong", "labels": {"a": "b"}}}
    assert texts(validate_object(obj, schema)) == ["spec: Required value",
                                                   "metadata.name: Too long: may not be more than 5 bytes"]


def test_junctors():
    any_of = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert validate(1, any_of) == [] and validate("a", any_of) == []
    assert "must validate at least one schema (anyOf)" in validate(True, any_of, "x")[0].message
    one_of = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "integer", "maximum": 10}]}
    assert validate(20, one_of) == [] and validate(5, one_of)
    assert validate(5, {"not": {"type": "integer"}}) and validate("5", {"not": {"type": "integer"}}) == []
    assert validate(5, {"allOf": [{"minimum": 1}, {"maximum": 3}]})


def test_embedded_resources_need_apiversion_and_kind():
    schema = {"type": "object", "properties": {"template": {
        "type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True}}}
    assert texts(validate({"template": {"spec": {}}}, schema)) == [
        "template.apiVersion: Required value: must not be empty", "template.kind: Required value: must not be empty"]
    obj = {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1}, "spec": {"x": 1}}}
    prune(obj, schema)
    assert obj == {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}}}


# ----------------------------------------------------------------- pruning and defaulting


def test_unknown_fields_are_pruned_unless_preserved():
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
        "json": {"x-kubernetes-preserve-unknown-fields": True, "type": "object", "properties": {
            "spec": {"type": "object", "properties": {"foo": {"type": "string"}}}}},
        "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"k": {"type": "string"}}}}}}
    obj = {"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "extra": 1,
           "spec": {"a": "x", "b": "gone"},
           "json": {"spec": {"foo": "abc", "something": "x"}, "status": {"something": "x"}},
           "map": {"one": {"k": "v", "z": 1}}}
    prune(obj, schema)
    assert obj == {"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": "x"},
                   "json": {"spec": {"foo": "abc"}, "status": {"something": "x"}}, "map": {"one": {"k": "v"}}}


def test_nulls_are_pruned_before_defaulting_unless_nullable():
    # the example of the Kubernetes documentation, "Defaulting and Nullable"
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "foo": {"type": "string", "nullable": False, "default": "default"},
        "bar": {"type": "string", "nullable": True},
        "baz": {"type": "string"}}}}}
    obj = {"spec": {"foo": None, "bar": None, "baz": None}}
    assert normalize(obj, schema) == {"spec": {"foo": "default", "bar": None}}


def test_defaults_fill_missing_fields_and_descend_into_defaults():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
        "replicas": {"type": "integer", "default": 1},
        "strategy": {"type": "object", "default": {}, "properties": {"type": {"type": "string", "default": "Roll"}}},
        "ports": {"type": "array", "items": {"type": "object", "properties": {
            "protocol": {"type": "string", "default": "TCP"}}}}}}}}
    assert apply_defaults({}, schema) == {"spec": {"replicas": 1, "strategy": {"type": "Roll"}}}
    obj = {"spec": {"replicas": 3, "ports": [{}, {"protocol": "UDP"}]}}
    assert apply_defaults(obj, schema)["spec"] == {"replicas": 3, "strategy": {"type": "Roll"},
                                                   "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}]}


DEFAULTING_SCHEMA = {"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
    "replicas": {"type": "integer", "default": 1},
    "size": {"type": "string", "enum": ["S", "M"], "default": "M"},
    "opts": {"type": "object", "default": {"a": 1}, "properties": {"a": {"type": "integer"},
                                                                   "b": {"type": "string", "default": "x"}}},
    "list": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "string", "default": "q"}}}},
    "free": {"x-kubernetes-preserve-unknown-fields": True}}}}}


@settings(max_examples=200)
@given(spec=st.dictionaries(st.sampled_from(["replicas", "size", "opts", "list", "free", "junk"]), json_values,
                            max_size=5))
def test_normalizing_is_idempotent_and_never_overrides_given_values(spec):
    obj = {"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "spec": copy.deepcopy(spec)}
    once = normalize(copy.deepcopy(obj), DEFAULTING_SCHEMA)
    twice = normalize(copy.deepcopy(once), DEFAULTING_SCHEMA)
    assert once == twice
    for key, value in spec.items():
        if key != "junk" and value is not None and not isinstance(value, (dict, list)):
            assert once["spec"][key] == value
    assert "junk" not in once["spec"]


# ----------------------------------------------------------------- is a schema structural?


P = "spec.versions[0].schema.openAPIV3Schema"


def test_a_good_schema_passes():
    schema = {"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
        "spec": {"type": "object", "required": ["a"], "properties": {
            "a": {"type": "string", "pattern": "^a", "default": "abc"},
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "any": {"x-kubernetes-preserve-unknown-fields": True},
            "list": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-list-type": "set"},
            "map": {"type": "object", "additionalProperties": {"type": "string"}}}}}}
    assert check_schema(schema, P) == []


def test_non_structural_schemas_are_refused_with_the_path_at_fault():
    schema = {"properties": {
        "metadata": {"type": "object", "properties": {"finalizers": {"type": "array", "items": {"type": "string"}}}},
        "foo": {"pattern": "abc"},
        "arr": {"type": "array"},
        "u": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "m": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
        "f": {"type": "object", "additionalProperties": False},
        "t": {"type": "strnig"},
        "r": {"$ref": "#/definitions/x"},
        "d": {"type": "integer", "default": "one"},
        "p": {"type": "string", "pattern": "("}}}
    fields = [c.field for c in check_schema(schema, P)]
    for want in [f"{P}.type", f"{P}.properties[metadata].properties[finalizers]", f"{P}.properties[foo].type",
                 f"{P}.properties[arr].items", f"{P}.properties[u].uniqueItems",
                 f"{P}.properties[m].additionalProperties", f"{P}.properties[f].additionalProperties",
                 f"{P}.properties[t].type", f"{P}.properties[r].$ref", f"{P}.properties[d].default",
                 f"{P}.properties[p].pattern"]:
        assert want in fields, want
    assert check_schema({"type": "string"}, P)[0].text() == (
        f'{P}.type: Invalid value: "string": must be object at the root')


def test_defaults_must_be_pruned():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "default": {"replicas": 1, "badger": 1},
                                                        "properties": {"replicas": {"type": "integer"}}}}}
    [c] = check_schema(schema, P)
    assert c.field == f"{P}.properties[spec].default" and "must not have unknown fields" in c.message


def test_unknown_fields_lists_what_pruning_drops_without_touching_the_object():
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}}}}}}
    obj = {"apiVersion": "a/v1", "kind": "K", "metadata": {}, "junk": 1,
           "spec": {"items": [{"a": "x"}, {"b": 1}], "c": None}}
    before = copy.deepcopy(obj)
    assert unknown_fields(obj, schema) == ["junk", "spec.items[1].b", "spec.c"]
    assert obj == before
