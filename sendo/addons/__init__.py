"""The add-on catalogue: which add-ons exist, what they take, what they render to.

Each add-on is one YAML file in ``catalogue/``: its name, a description, its options
(``spec.config`` of an ``Addon``: type, default, format, description), and either

- ``manifests``: Kubernetes objects with ``${option}`` placeholders, rendered with the
  Addon's config over the defaults and with values the add-on controller computes from
  the cluster (``generate``: placeholder -> generator in ``generators.py``); or
- ``builtin``: a sentence saying that the piece is part of sendo itself and how it is
  switched (there is nothing to apply).

``defaultEnabled`` marks a piece sendo runs when no Addon exists, ``adoptLabels`` the labels
sendo gives the objects it makes for it itself, which disabling deletes too.

Nothing here talks to the API: the kind's validation (``kinds/addons.py``), the add-on
controller (``controllers/addons.py``) and the CLI all read the same entries.
"""
from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

CATALOGUE_DIR = Path(__file__).parent / "catalogue"
GROUP, VERSION, KIND, PLURAL = "sendo.dev", "v1alpha1", "Addon", "addons"
API_VERSION = f"{GROUP}/{VERSION}"
LABEL = "addons.sendo.dev/name"  # on every object an add-on applies: which add-on it belongs to
FINALIZER = "addons.sendo.dev/cleanup"  # held while an enabled add-on may have objects in the cluster
FIELD_MANAGER_PREFIX = "sendo-addons/"

OPTION_TYPES = {"string": str, "integer": int, "boolean": bool, "stringList": list}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h))+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

Obj = dict[str, Any]


@dataclass(frozen=True)
class Option:
    name: str
    type: str  # a key of OPTION_TYPES
    default: Any = None
    description: str = ""
    format: str = ""  # duration, dnsLabel, dnsSubdomain, absolutePath, httpURL


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    builtin: str = ""  # for a piece of sendo itself: how it is switched; empty for applied add-ons
    summary: str = ""  # a built-in piece's switch in a few words (`sendo addons list`)
    options: dict[str, Option] = field(default_factory=dict)
    one_of: tuple[str, ...] = ()  # exactly one of these options must be set
    generate: dict[str, str] = field(default_factory=dict)  # placeholder -> generator name
    manifests: tuple[Obj, ...] = ()
    default_enabled: bool = False  # sendo runs it when no Addon says otherwise
    adopt_labels: dict[str, str] = field(default_factory=dict)  # labels of objects sendo makes itself

    def owns(self, obj: Obj) -> bool:
        """Whether an object in the cluster is this add-on's to delete: it carries the add-on's
        label, or (for a piece sendo also makes itself) the labels sendo gives it."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL) == self.name:
            return True
        return bool(self.adopt_labels) and all(labels.get(k) == v for k, v in self.adopt_labels.items())

    def defaults(self) -> dict[str, Any]:
        return {k: copy.deepcopy(o.default) for k, o in self.options.items() if o.default is not None}


def _entry(doc: Obj) -> Entry:
    options = {k: Option(k, str(v.get("type", "string")), v.get("default"), str(v.get("description", "")),
                         str(v.get("format", "")))
               for k, v in (doc.get("options") or {}).items()}
    for o in options.values():
        if o.type not in OPTION_TYPES:
            raise ValueError(f"add-on {doc.get('name')}: option {o.name} has unknown type {o.type}")
    return Entry(str(doc["name"]), " ".join(str(doc.get("description", "")).split()),
                 " ".join(str(doc.get("builtin") or "").split()), str(doc.get("summary") or ""), options, tuple(doc.get("oneOf") or ()),
                 dict(doc.get("generate") or {}), tuple(doc.get("manifests") or ()),
                 bool(doc.get("defaultEnabled", False)), dict(doc.get("adoptLabels") or {}))


@functools.cache
def catalogue() -> dict[str, Entry]:
    """Every add-on by name, read once from the package's catalogue files."""
    entries = [_entry(yaml.safe_load(p.read_text())) for p in sorted(CATALOGUE_DIR.glob("*.yaml"))]
    return {e.name: e for e in entries}


# ----------------------------------------------------------------- checking a config

def _format_error(fmt: str, value: str) -> str | None:
    if fmt == "duration" and not _DURATION.match(value):
        return "must be a Prometheus duration such as 30s, 1m or 1h30m"
    if fmt == "dnsLabel" and not _DNS_LABEL.match(value):
        return "must be a DNS-1123 label (lower case letters, digits and '-', at most 63 characters)"
    if fmt == "dnsSubdomain" and (len(value) > 253 or not _DNS_SUBDOMAIN.match(value)):
        return "must be a DNS-1123 subdomain (lower case letters, digits, '-' and '.')"
    if fmt == "absolutePath" and (not value.startswith("/") or "\x00" in value):
        return "must be an absolute path"
    if fmt == "httpURL":
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return "must be an http:// or https:// URL"
    return None


def config_errors(entry: Entry, config: Any) -> list[tuple[str, str, str]]:
    """What is wrong with an Addon's spec.config for this entry, as (key, reason, message);
    key "" for the config as a whole. reason is a Kubernetes cause reason."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        return [("", "FieldValueInvalid", "must be an object of option: value")]
    out: list[tuple[str, str, str]] = []
    for key, value in config.items():
        opt = entry.options.get(key)
        if opt is None:
            known = ", ".join(f'"{k}"' for k in entry.options) or "none"
            out.append((key, "FieldValueNotSupported",
                        f'Unsupported value: "{key}": add-on {entry.name} has no such option; options: {known}'))
            continue
        if value is None:
            continue
        want = OPTION_TYPES[opt.type]
        if isinstance(value, bool) and want is not bool or not isinstance(value, want):
            out.append((key, "FieldValueTypeInvalid", f"Invalid value: {value!r}: must be a {opt.type}"))
            continue
        if isinstance(value, list):
            bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
            if bad:
                out.append((f"{key}[{bad[0]}]", "FieldValueTypeInvalid", "must be a string"))
            continue
        if isinstance(value, str) and opt.format:
            why = _format_error(opt.format, value)
            if why:
                out.append((key, "FieldValueInvalid", f'Invalid value: "{value}": {why}'))
    if entry.one_of:
        given = [k for k in entry.one_of if config.get(k) not in (None, "")]
        if len(given) != 1:
            names = ", ".join(entry.one_of)
            out.append((entry.one_of[0] if not given else given[1], "FieldValueRequired" if not given
                        else "FieldValueForbidden", f"exactly one of {names} must be set"))
    return out


# ----------------------------------------------------------------- rendering

def substitute(node: Any, values: dict[str, Any]) -> Any:
    """The template with its ${name} placeholders filled in. A string that is exactly one
    placeholder becomes the value itself (a list stays a list); inside a longer string the
    value is spliced in as text. An unknown placeholder is an error of the catalogue."""
    if isinstance(node, dict):
        return {substitute(k, values): substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values) for v in node]
    if not isinstance(node, str):
        return node
    whole = _PLACEHOLDER.fullmatch(node)
    if whole:
        return copy.deepcopy(values[whole.group(1)])
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)


def values_of(entry: Entry, config: Obj | None, generated: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values a template sees: defaults, then the Addon's config, then generated ones."""
    vals = entry.defaults()
    vals.update({k: v for k, v in (config or {}).items() if v is not None})
    for k in entry.options:
        vals.setdefault(k, None)
    vals.update(generated or {})
    return vals


def render(entry: Entry, values: dict[str, Any]) -> list[Obj]:
    """The objects an enabled add-on applies, each labelled with the add-on's name."""
    out = []
    for template in entry.manifests:
        obj = substitute(template, values)
        meta = obj.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), LABEL: entry.name}
        out.append(obj)
    return out


def ref_of(obj: Obj) -> Obj:
    """How status.applied names an object."""
    meta = obj.get("metadata") or {}
    ref = {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""), "name": meta.get("name", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


def ref_key(ref: Obj) -> tuple[str, str, str, str]:
    return (str(ref.get("apiVersion", "")), str(ref.get("kind", "")), str(ref.get("namespace") or ""),
            str(ref.get("name", "")))
