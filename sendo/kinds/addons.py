"""sendo.dev/v1alpha1 Addon: a cluster-scoped switch for one add-on of the catalogue
(``sendo/addons``), named after it.

``spec.enabled`` (default true) and ``spec.config`` (the add-on's options) are the
user's; ``status`` is the add-on controller's: conditions Applied, Healthy and
Progressing, the objects it applied (``status.applied``), a one-line message. The kind
is built in (served by every API server, no CRD to install) and carries an
openAPIV3Schema like a custom kind, so pruning, ``fieldValidation``, ``kubectl explain``
and the OpenAPI documents work as for a CRD; the rules a schema cannot say — the name
must be an add-on of the catalogue, ``config`` may hold only that add-on's options with
their types and formats, a built-in piece cannot be switched off — are checked here and
refused with a 422 naming the field.
"""
from __future__ import annotations

from typing import Any

from ..addons import GROUP, KIND, PLURAL, VERSION, catalogue, config_errors
from .base import Cause, Column, Obj, Printer, Resource, forbidden, set_default
from .printing import age_column, as_dict, dicts, name_column, name_of, object_age
from .schema import normalize, validate_object
from .validation import KindStrategy

_STR = {"type": "string"}
_REF = {"type": "object", "properties": {"apiVersion": _STR, "kind": _STR, "namespace": _STR, "name": _STR}}
_CONDITION = {"type": "object", "required": ["type", "status"],
              "properties": {"type": _STR, "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                             "reason": _STR, "message": _STR,
                             "lastTransitionTime": {"type": "string", "format": "date-time"},
                             "observedGeneration": {"type": "integer", "format": "int64"}}}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Addon turns one add-on of sendo's catalogue on or off; its name is the add-on's.",
    "properties": {
        "apiVersion": _STR, "kind": _STR, "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "enabled": {"type": "boolean", "default": True,
                        "description": "Whether the add-on's objects should exist (default true)."},
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                       "description": "The add-on's options (`sendo addons list` shows them)."}}},
        "status": {"type": "object", "properties": {
            "conditions": {"type": "array", "items": _CONDITION},
            "applied": {"type": "array", "items": _REF,
                        "description": "The objects the add-on applied, pruned when no longer rendered."},
            "message": _STR,
            "observedGeneration": {"type": "integer", "format": "int64"}}},
    },
}


def condition(obj: Obj, ctype: str) -> Obj:
    return next((c for c in dicts(as_dict(obj.get("status")).get("conditions")) if c.get("type") == ctype), {})


class AddonStrategy(KindStrategy):
    schema = SCHEMA  # read by the OpenAPI documents and fieldValidation, as a custom kind's

    def default(self, obj: Obj) -> None:
        normalize(obj, self.schema)
        set_default(obj, "spec", {})
        set_default(obj["spec"], "enabled", True)

    def prepare_create(self, obj: Obj) -> None:
        obj.pop("status", None)

    def validate_object(self, obj: Obj) -> list[Cause]:
        normalize(obj, self.schema)  # writes to /status do not pass through default()
        causes = validate_object(obj, self.schema)
        if causes:
            return causes
        name = name_of(obj)
        entry = catalogue().get(name)
        if entry is None:
            known = ", ".join(f'"{n}"' for n in catalogue())
            return [Cause("metadata.name", f'Unsupported value: "{name}": not an add-on of the catalogue; '
                                           f"supported values: {known}", "FieldValueNotSupported")]
        spec = as_dict(obj.get("spec"))
        if entry.builtin:
            if spec.get("enabled") is False:
                causes.append(forbidden("spec.enabled", f"{name} is built into sendo and cannot be disabled "
                                                        f"through an Addon: {entry.builtin}"))
            if spec.get("config"):
                causes.append(forbidden("spec.config", f"{name} is built into sendo and takes no config"))
            return causes
        for key, reason, message in config_errors(entry, spec.get("config")):
            causes.append(Cause(f"spec.config.{key}" if key else "spec.config", message, reason))
        return causes


def addon_row(obj: Obj) -> list[Any]:
    healthy = condition(obj, "Healthy").get("status") or "Unknown"
    enabled = as_dict(obj.get("spec")).get("enabled")
    return [name_of(obj), "true" if enabled is not False else "false", healthy,
            as_dict(obj.get("status")).get("message") or "", object_age(obj)]


ADDON_PRINTER = Printer(
    columns=[name_column(),
             Column("Enabled", description="Whether the add-on's objects should exist."),
             Column("Healthy", description="Whether what the add-on runs is Ready (its Healthy condition)."),
             Column("Message", description="What the add-on controller last said."),
             age_column()],
    row=addon_row,
)


RESOURCES = [
    Resource(GROUP, VERSION, KIND, PLURAL, False, subresources={"status"}, strategy=AddonStrategy(),
             printer=ADDON_PRINTER, categories=["sendo"], custom=True),
]
