"""batch/v1 kinds: Jobs and CronJobs.

A Job runs pods to completion, so its template must not restart forever
(restartPolicy OnFailure or Never). On create the server gives every Job a selector
of its own, ``batch.kubernetes.io/controller-uid=<uid>``, and stamps the matching
labels on the template, as Kubernetes does: no two Jobs can then claim each other's
pods. A CronJob carries a Job template, checked with the same rules, and a schedule
in cron syntax (five fields or a descriptor such as ``@hourly``), parsed here with the
rules of the parser Kubernetes uses, so the same schedules are accepted and refused.
"""
from __future__ import annotations

import copy
import datetime as dt
import re
import zoneinfo
from typing import Any

from .apps import default_template
from .base import (Cause, Column, Obj, Printer, Resource, duplicate, required, set_default, strip_nulls,
                   unsupported)
from .printing import (age_column, as_dict, as_list, container_cells, dicts, human_age, human_duration, name_column,
                       name_of, object_age, parse_timestamp, selector_string)
from .validation import (KindStrategy, check_enum, check_int, fits, get, go_selector, go_value, invalid_value,
                         is_dns1123_label, is_dns1123_subdomain, is_qualified_name, is_type, normalized_selector,
                         required_because, selector_matches, type_invalid, validate_label_selector,
                         validate_object_meta)
from .podspec import validate_pod_template

JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_UID_LABEL = "controller-uid"
LEGACY_NAME_LABEL = "job-name"

COMPLETION_MODES = ["Indexed", "NonIndexed"]
JOB_RESTART_POLICIES = ["OnFailure", "Never"]
POD_REPLACEMENT_POLICIES = ["Failed", "TerminatingOrFailed"]
POD_FAILURE_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
EXIT_CODE_OPERATORS = ["In", "NotIn"]
CONDITION_STATUSES = ["False", "True", "Unknown"]
CONCURRENCY_POLICIES = ["Allow", "Forbid", "Replace"]

MAX_PARALLELISM_INDEXED = 100_000
MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
PARALLELISM_LIMIT_HIGH_COMPLETIONS = 10_000
MAX_FAILED_INDEXES_HIGH_COMPLETIONS = 10_000
MAX_POD_FAILURE_RULES = 20
MAX_EXIT_CODE_VALUES = 255
MAX_POD_CONDITION_PATTERNS = 20
MAX_SUCCESS_RULES = 20
MAX_MANAGED_BY = 63
CRONJOB_NAME_MAX = 52  # the CronJob controller appends "-<11 digits>" to make a Job (63) name


def _too_many(path: str, n: int, limit: int) -> Cause:
    return Cause(path, f"Too many: {n}: must have at most {limit} items", "FieldValueTooMany")


# ======================================================================= cron schedules

_CRON_BOUNDS = [  # (lowest, highest, names) of minute, hour, day of month, month, day of week
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun",
                                             "jul", "aug", "sep", "oct", "nov", "dec"))}),
    (0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
]
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_GO_INT = re.compile(r"^[+-]?[0-9]+$")
_GO_DURATION = re.compile(r"^[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+$")


def _cron_number(text: str, names: dict[str, int]) -> tuple[int | None, str | None]:
    if text.lower() in names:
        return names[text.lower()], None
    if not _GO_INT.match(text):
        return None, f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
    n = int(text)
    if n < 0:
        return None, f"negative number ({n}) not allowed: {text}"
    return n, None


def _cron_range_error(expr: str, lo: int, hi: int, names: dict[str, int]) -> str | None:
    """One comma-separated part of a field: "*", "5", "1-5", "*/15", "10/5", "mon-fri"."""
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    if low_high[0] in ("*", "?"):
        start, end = lo, hi
    else:
        start, err = _cron_number(low_high[0], names)
        if err:
            return err
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end, err = _cron_number(low_high[1], names)
            if err:
                return err
        else:
            return f"too many hyphens: {expr}"
    step = 1
    if len(range_and_step) == 2:
        step, err = _cron_number(range_and_step[1], {})
        if err:
            return err
        if len(low_high) == 1:
            end = hi  # "N/step" means "N-max/step"
    elif len(range_and_step) > 2:
        return f"too many slashes: {expr}"
    if start < lo:
        return f"beginning of range ({start}) below minimum ({lo}): {expr}"
    if end > hi:
        return f"end of range ({end}) above maximum ({hi}): {expr}"
    if start > end:
        return f"beginning of range ({start}) beyond end of range ({end}): {expr}"
    if step == 0:
        return f"step of range should be a positive number: {expr}"
    return None


def valid_time_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def cron_schedule_error(spec: str) -> str | None:
    """Why a standard cron schedule is not valid (the wording of robfig/cron), or None."""
    if not spec:
        return "empty spec string"
    if spec.startswith(("TZ=", "CRON_TZ=")):
        i = spec.find(" ")
        if i == -1:
            return f"invalid location descriptor: {spec}"
        tz = spec[spec.find("=") + 1:i]
        if not valid_time_zone(tz):
            return f"provided bad location {tz}: unknown time zone {tz}"
        spec = spec[i:].strip()
    if spec.startswith("@"):
        if spec in CRON_DESCRIPTORS:
            return None
        if spec.startswith("@every "):
            duration = spec[len("@every "):]
            if duration in ("0", "+0", "-0") or _GO_DURATION.match(duration):
                return None
            return f'failed to parse duration {spec}: time: invalid duration "{duration}"'
        return f"unrecognized descriptor: {spec}"
    fields = spec.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    for text, (lo, hi, names) in zip(fields, _CRON_BOUNDS):
        for expr in text.split(","):
            err = _cron_range_error(expr, lo, hi, names)
            if err:
                return err
    return None


_TZ_PART = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


def validate_time_zone(tz: Any, path: str) -> list[Cause]:
    if tz is None:
        return []
    if not isinstance(tz, str):
        return [type_invalid(path, tz, str)]
    if tz == "":
        return [invalid_value(path, tz, "timeZone must be nil or non-empty string")]
    for part in tz.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TZ_PART.match(part):
            return [invalid_value(path, tz, f"unknown time zone {tz}")]
    if tz.lower() == "local":
        return [invalid_value(path, tz, "timeZone must be an explicit time zone as defined in "
                                        "https://www.iana.org/time-zones")]
    if not valid_time_zone(tz):
        return [invalid_value(path, tz, f"unknown time zone {tz}")]
    return []


def validate_schedule(schedule: Any, path: str) -> list[Cause]:
    if schedule is None or schedule == "":
        return [required(path)]
    if not isinstance(schedule, str):
        return [type_invalid(path, schedule, str)]
    causes = []
    err = cron_schedule_error(schedule)
    if err:
        causes.append(invalid_value(path, schedule, err))
    if "TZ" in schedule:
        causes.append(invalid_value(path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    return causes


# ======================================================================= Job spec rules


def _template_containers(spec: dict) -> set[str]:
    tspec = as_dict(as_dict(spec.get("template")).get("spec"))
    names = (c.get("name") for c in dicts(tspec.get("containers")) + dicts(tspec.get("initContainers")))
    return {n for n in names if isinstance(n, str)}  # the pod spec's validation reports the others


def _validate_exit_codes(req: Any, path: str, containers: set[str]) -> list[Cause]:
    if not isinstance(req, dict):
        return [type_invalid(path, req, dict)]
    causes: list[Cause] = []
    op = req.get("operator")
    if not op:
        causes.append(required_because(f"{path}.operator", 'valid values: ["In" "NotIn"]'))
    elif op not in EXIT_CODE_OPERATORS:
        causes.append(unsupported(f"{path}.operator", op, EXIT_CODE_OPERATORS))
    name = req.get("containerName")
    if name is not None and name not in containers:
        causes.append(invalid_value(f"{path}.containerName", name,
                                    "must be one of the container or initContainer names in the pod template"))
    values = req.get("values")
    if not isinstance(values, list) or not values:
        causes.append(invalid_value(f"{path}.values", values if isinstance(values, list) else None,
                                    "at least one value is required"))
        return causes
    if len(values) > MAX_EXIT_CODE_VALUES:
        causes.append(_too_many(f"{path}.values", len(values), MAX_EXIT_CODE_VALUES))
    seen: set[int] = set()
    ordered = True
    prev = None
    for j, v in enumerate(values):
        p = f"{path}.values[{j}]"
        if not is_type(v, int):
            causes.append(type_invalid(p, v, int))
            continue
        if not fits(v, p, causes):
            continue
        if op == "In" and v == 0:
            causes.append(invalid_value(p, v, "must not be 0 for the In operator"))
        if v in seen:
            causes.append(duplicate(p, v))
        seen.add(v)
        if prev is not None and prev > v:
            ordered = False
        prev = v
    if not ordered:
        causes.append(invalid_value(f"{path}.values", values, "must be ordered"))
    return causes


def _validate_pod_conditions(patterns: Any, path: str) -> list[Cause]:
    if not isinstance(patterns, list):
        return [type_invalid(path, patterns, list)]
    causes: list[Cause] = []
    if len(patterns) > MAX_POD_CONDITION_PATTERNS:
        causes.append(_too_many(path, len(patterns), MAX_POD_CONDITION_PATTERNS))
    for j, pattern in enumerate(patterns):
        p = f"{path}[{j}]"
        if not isinstance(pattern, dict):
            causes.append(type_invalid(p, pattern, dict))
            continue
        ctype = pattern.get("type")
        if not ctype:
            causes.append(required(f"{p}.type"))
        elif not isinstance(ctype, str):
            causes.append(type_invalid(f"{p}.type", ctype, str))
        else:
            causes += [invalid_value(f"{p}.type", ctype, m) for m in is_qualified_name(ctype)]
        status = pattern.get("status")
        if not status:
            causes.append(required_because(f"{p}.status", 'valid values: ["False" "True" "Unknown"]'))
        elif status not in CONDITION_STATUSES:
            causes.append(unsupported(f"{p}.status", status, CONDITION_STATUSES))
    return causes


def _validate_pod_failure_policy(spec: dict, path: str) -> list[Cause]:
    policy = spec.get("podFailurePolicy")
    if not isinstance(policy, dict):
        return [type_invalid(path, policy, dict)]
    rules = policy.get("rules")
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [type_invalid(f"{path}.rules", rules, list)]
    causes: list[Cause] = []
    if len(rules) > MAX_POD_FAILURE_RULES:
        causes.append(_too_many(f"{path}.rules", len(rules), MAX_POD_FAILURE_RULES))
    containers = _template_containers(spec)
    for i, rule in enumerate(rules):
        p = f"{path}.rules[{i}]"
        if not isinstance(rule, dict):
            causes.append(type_invalid(p, rule, dict))
            continue
        action = rule.get("action")
        if not action:
            causes.append(required_because(f"{p}.action", 'valid values: ["Count" "FailIndex" "FailJob" "Ignore"]'))
        elif action == "FailIndex":
            if spec.get("backoffLimitPerIndex") is None:
                causes.append(invalid_value(f"{p}.action", action, "requires the backoffLimitPerIndex to be set"))
        elif action not in POD_FAILURE_ACTIONS:
            causes.append(unsupported(f"{p}.action", action, POD_FAILURE_ACTIONS))
        codes, conds = rule.get("onExitCodes"), rule.get("onPodConditions")
        if codes is not None:
            causes += _validate_exit_codes(codes, f"{p}.onExitCodes", containers)
        if conds:
            causes += _validate_pod_conditions(conds, f"{p}.onPodConditions")
        if codes is not None and conds:
            causes.append(Cause(p, "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported"))
        if codes is None and not conds:
            causes.append(Cause(p, "Invalid value: specifying one of OnExitCodes and OnPodConditions is required"))
    return causes


def parse_indexes(text: str, completions: int) -> tuple[int, str | None]:
    """How many indexes "1,3-5,7" names, or why it is malformed (ascending, below completions)."""
    total, prev = 0, -1
    if text == "":
        return 0, None
    for fragment in text.split(","):
        parts = fragment.split("-")
        if len(parts) > 2:
            return 0, (f'the fragment "{fragment}" violates the requirement that an index interval can have '
                       "at most two parts")
        nums = []
        for part in parts:
            if not re.match(r"^[0-9]+$", part):
                return 0, f'cannot convert string to integer for index: "{part}"'
            n = int(part)
            if n >= completions:
                return 0, f'too large index: "{part}"'
            nums.append(n)
        lo, hi = nums[0], nums[-1]
        if lo > hi:
            return 0, f'first index is larger than the second: "{fragment}"'
        if lo <= prev:
            return 0, f"non-increasing order, previous: {prev}, current: {lo}"
        total += hi - lo + 1
        prev = hi
    return total, None


def _validate_success_policy(spec: dict, path: str) -> list[Cause]:
    policy = spec.get("successPolicy")
    if not isinstance(policy, dict):
        return [type_invalid(path, policy, dict)]
    rules = policy.get("rules")
    if not isinstance(rules, list) or not rules:
        return [required_because(f"{path}.rules", "at least one rules must be specified when the successPolicy "
                                                  "is specified")]
    causes: list[Cause] = []
    if len(rules) > MAX_SUCCESS_RULES:
        causes.append(_too_many(f"{path}.rules", len(rules), MAX_SUCCESS_RULES))
    completions = spec.get("completions") if is_type(spec.get("completions"), int) else 0
    for i, rule in enumerate(rules):
        p = f"{path}.rules[{i}]"
        if not isinstance(rule, dict):
            causes.append(type_invalid(p, rule, dict))
            continue
        count, indexes = rule.get("succeededCount"), rule.get("succeededIndexes")
        if count is None and indexes is None:
            causes.append(required_because(p, "at least one of succeededCount or succeededIndexes must be specified"))
        total = None
        if indexes is not None:
            if not isinstance(indexes, str):
                causes.append(type_invalid(f"{p}.succeededIndexes", indexes, str))
            else:
                total, err = parse_indexes(indexes, completions)
                if err:
                    causes.append(invalid_value(f"{p}.succeededIndexes", indexes,
                                                f"error parsing succeededIndexes: {err}"))
                    total = None
        if count is not None:
            cp = f"{p}.succeededCount"
            if not is_type(count, int):
                causes.append(type_invalid(cp, count, int))
                continue
            if count < 0:
                causes.append(invalid_value(cp, count, "must be greater than or equal to 0"))
            if count > completions:
                causes.append(invalid_value(cp, count, f"must be less than or equal to {completions} "
                                                       "(the number of specified completions)"))
            if total is not None and count > total:
                causes.append(invalid_value(cp, count, f"must be less than or equal to {total} (the number of "
                                                       "indexes in the specified succeededIndexes field)"))
    return causes


def _validate_indexed(spec: dict, path: str, causes: list[Cause]) -> None:
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    max_failed, per_index = spec.get("maxFailedIndexes"), spec.get("backoffLimitPerIndex")
    ints = {k: v for k, v in (("completions", completions), ("parallelism", parallelism),
                              ("maxFailedIndexes", max_failed)) if is_type(v, int)}
    if completions is None:
        causes.append(required_because(f"{path}.completions", "when completion mode is Indexed"))
    if ints.get("parallelism", 0) > MAX_PARALLELISM_INDEXED:
        causes.append(invalid_value(f"{path}.parallelism", parallelism, f"must be less than or equal to "
                                    f"{MAX_PARALLELISM_INDEXED} when completion mode is Indexed"))
    if "completions" in ints and "maxFailedIndexes" in ints and max_failed > completions:
        causes.append(invalid_value(f"{path}.maxFailedIndexes", max_failed,
                                    "must be less than or equal to completions"))
    if ints.get("maxFailedIndexes", 0) > MAX_FAILED_INDEXES:
        causes.append(invalid_value(f"{path}.maxFailedIndexes", max_failed,
                                    f"must be less than or equal to {MAX_FAILED_INDEXES}"))
    if ints.get("completions", 0) > COMPLETIONS_SOFT_LIMIT and per_index is not None:
        if max_failed is None:
            causes.append(required_because(f"{path}.maxFailedIndexes",
                                           f"must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"))
        why = f"when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"
        if ints.get("parallelism", 0) > PARALLELISM_LIMIT_HIGH_COMPLETIONS:
            causes.append(invalid_value(f"{path}.parallelism", parallelism,
                                        f"must be less than or equal to {PARALLELISM_LIMIT_HIGH_COMPLETIONS} {why}"))
        if ints.get("maxFailedIndexes", 0) > MAX_FAILED_INDEXES_HIGH_COMPLETIONS:
            causes.append(invalid_value(f"{path}.maxFailedIndexes", max_failed,
                                        f"must be less than or equal to {MAX_FAILED_INDEXES_HIGH_COMPLETIONS} {why}"))


def _validate_managed_by(value: Any, path: str) -> list[Cause]:
    if value is None:
        return []
    if not isinstance(value, str):
        return [type_invalid(path, value, str)]
    causes = []
    host, slash, rest = value.partition("/")
    if not slash or not rest or is_dns1123_subdomain(host):
        causes.append(invalid_value(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")'))
    if len(value) > MAX_MANAGED_BY:
        causes.append(Cause(path, f"Too long: may not be more than {MAX_MANAGED_BY} bytes", "FieldValueTooLong"))
    return causes


def validate_job_spec(spec: dict, path: str) -> list[Cause]:
    """What a Job and a CronJob's job template share (Kubernetes' validateJobSpec), under `path`."""
    causes: list[Cause] = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                "backoffLimitPerIndex", "maxFailedIndexes"):
        check_int(spec, key, f"{path}.{key}", causes, minimum=0, int64=key == "activeDeadlineSeconds")
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        causes.append(required_because(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    get(spec, "suspend", f"{path}.suspend", bool, causes)
    get(spec, "manualSelector", f"{path}.manualSelector", bool, causes)
    causes += _validate_managed_by(spec.get("managedBy"), f"{path}.managedBy")
    mode = spec.get("completionMode")
    if mode is not None and mode not in COMPLETION_MODES:
        causes.append(unsupported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed":
        _validate_indexed(spec, path, causes)
    else:
        for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(key) is not None:
                causes.append(invalid_value(f"{path}.{key}", spec[key], "requires indexed completion mode"))
    if spec.get("podFailurePolicy") is not None:
        causes += _validate_pod_failure_policy(spec, f"{path}.podFailurePolicy")
    if spec.get("successPolicy") is not None:
        if mode != "Indexed":
            causes.append(invalid_value(f"{path}.successPolicy", spec["successPolicy"],
                                        "requires indexed completion mode"))
        else:
            causes += _validate_success_policy(spec, f"{path}.successPolicy")
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        if spec.get("podFailurePolicy") is not None:
            if replacement != "Failed":
                causes.append(unsupported(f"{path}.podReplacementPolicy", replacement, ["Failed"]))
        elif replacement not in POD_REPLACEMENT_POLICIES:
            causes.append(unsupported(f"{path}.podReplacementPolicy", replacement, POD_REPLACEMENT_POLICIES))
    template = spec.get("template")
    causes += validate_pod_template(template, f"{path}.template")
    restart = as_dict(as_dict(template).get("spec")).get("restartPolicy")
    rp = f"{path}.template.spec.restartPolicy"
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        if restart in (None, "", "Always"):
            causes.append(required_because(rp, 'valid values: "OnFailure", "Never"'))
        elif restart not in JOB_RESTART_POLICIES:
            causes.append(unsupported(rp, restart, JOB_RESTART_POLICIES))
        elif spec.get("podFailurePolicy") is not None and restart != "Never":
            causes.append(invalid_value(rp, restart, 'only "Never" is supported when podFailurePolicy is specified'))
    return causes


def _template_labels(spec: dict) -> dict:
    return as_dict(as_dict(as_dict(spec.get("template")).get("metadata")).get("labels"))


# ======================================================================= Job


def default_job_spec(spec: dict) -> None:
    """Kubernetes' Job defaults: one pod to completion, six retries, NonIndexed, not suspended."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    set_default(spec, "parallelism", 1)
    set_default(spec, "backoffLimit", 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6)
    set_default(spec, "completionMode", "NonIndexed")
    set_default(spec, "suspend", False)
    set_default(spec, "manualSelector", False)
    set_default(spec, "podReplacementPolicy",
                "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed")
    policy = spec.get("podFailurePolicy")
    for rule in dicts(as_dict(policy).get("rules")):
        for pattern in dicts(rule.get("onPodConditions")):
            if not pattern.get("status"):
                pattern["status"] = "True"
    default_template(spec)


def generate_job_selector(job: Obj) -> None:
    """The selector and template labels that tie a Job to its own pods (unless manualSelector).

    Labels the user already set are left alone: validation then reports a conflict.
    The job-name labels need the name, so a Job created with generateName gets only the
    uid labels here (the API names it after this step).
    """
    spec, meta = job.get("spec"), as_dict(job.get("metadata"))
    if not isinstance(spec, dict) or spec.get("manualSelector") is True:
        return
    uid, name = meta.get("uid"), meta.get("name")
    if not isinstance(uid, str) or not uid:
        return
    template = spec.get("template")
    if not isinstance(template, dict):
        return
    tmeta = template.get("metadata")
    if tmeta is None:
        tmeta = template["metadata"] = {}
    if not isinstance(tmeta, dict):
        return
    labels = tmeta.get("labels")
    if labels is None:
        labels = tmeta["labels"] = {}
    if not isinstance(labels, dict):
        return
    if isinstance(name, str) and name:
        for key in (LEGACY_NAME_LABEL, JOB_NAME_LABEL):
            labels.setdefault(key, name)
    for key in (LEGACY_UID_LABEL, JOB_UID_LABEL):
        labels.setdefault(key, uid)
    selector = spec.get("selector")
    if selector is None:
        selector = spec["selector"] = {}
    if not isinstance(selector, dict):
        return
    match = selector.get("matchLabels")
    if match is None:
        match = selector["matchLabels"] = {}
    if isinstance(match, dict):
        match.setdefault(JOB_UID_LABEL, uid)


def _validate_generated_selector(job: Obj, spec: dict) -> list[Cause]:
    """With a generated selector, the template carries this Job's uid (and name) labels, and the selector them."""
    if spec.get("manualSelector") is True or not isinstance(spec.get("selector"), dict):
        return []
    meta = as_dict(job.get("metadata"))
    uid, name = meta.get("uid") or "", meta.get("name") or ""
    path = "spec.template.metadata"
    causes: list[Cause] = []
    if not uid:
        causes.append(required("metadata.uid"))
    labels = _template_labels(spec)
    for key in (LEGACY_UID_LABEL, JOB_UID_LABEL):
        if key not in labels:
            causes.append(required(f"{path}.labels[{key}]"))
        elif labels[key] != uid:
            causes.append(invalid_value(f"{path}.labels[{key}]", labels[key], f"must be '{uid}'"))
    for key in (LEGACY_NAME_LABEL, JOB_NAME_LABEL):
        if key in labels and labels[key] != name:
            causes.append(invalid_value(f"{path}.labels[{key}]", labels[key], f"must be '{name}'"))
    expected = {LEGACY_UID_LABEL: uid, JOB_UID_LABEL: uid, LEGACY_NAME_LABEL: name, JOB_NAME_LABEL: name}
    sel = spec["selector"]
    if not validate_label_selector(sel, "spec.selector") and not selector_matches(sel, expected):
        causes.append(Cause("spec.selector", f"Invalid value: {go_selector(sel)}: `selector` not auto-generated"))
    return causes


_JOB_COUNTERS = ("active", "ready", "succeeded", "failed", "terminating")


def validate_job_status(job: Obj) -> list[Cause]:
    """What a status write may hold (Kubernetes' job status rules): counters that are
    non-negative numbers, index lists that parse, uids listed once, times that parse.
    So no writer can hand the Job controller a status it cannot read."""
    status = job.get("status")
    if status is None:
        return []
    if not isinstance(status, dict):
        return [type_invalid("status", status, dict)]
    causes: list[Cause] = []
    for key in _JOB_COUNTERS:
        check_int(status, key, f"status.{key}", causes, minimum=0)
    for key in ("startTime", "completionTime"):
        value = status.get(key)
        if value is not None and (not isinstance(value, str) or parse_timestamp(value) is None):
            causes.append(invalid_value(f"status.{key}", value, "must be an RFC 3339 date-time"))
    spec = as_dict(job.get("spec"))
    completions = spec.get("completions") if is_type(spec.get("completions"), int) else None
    for key in ("completedIndexes", "failedIndexes"):
        value = status.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            causes.append(type_invalid(f"status.{key}", value, str))
        elif value and (spec.get("completionMode") != "Indexed" or completions is None):
            causes.append(invalid_value(f"status.{key}", value, "cannot set for non-indexed jobs"))
        elif value:
            _, err = parse_indexes(value, completions)
            if err:
                causes.append(invalid_value(f"status.{key}", value, f"error parsing {key}: {err}"))
    uncounted = status.get("uncountedTerminatedPods")
    if uncounted is not None:
        if not isinstance(uncounted, dict):
            causes.append(type_invalid("status.uncountedTerminatedPods", uncounted, dict))
        else:
            seen: set[str] = set()
            for key in ("succeeded", "failed"):
                path = f"status.uncountedTerminatedPods.{key}"
                for i, uid in enumerate(get(uncounted, key, path, list, causes) or []):
                    if not isinstance(uid, str):
                        causes.append(type_invalid(f"{path}[{i}]", uid, str))
                    elif not uid:
                        causes.append(invalid_value(f"{path}[{i}]", uid, "must not be empty"))
                    elif uid in seen:
                        causes.append(duplicate(f"{path}[{i}]", uid))
                    else:
                        seen.add(uid)
    conditions = get(status, "conditions", "status.conditions", list, causes) or []
    true = set()
    for i, c in enumerate(conditions):
        if not isinstance(c, dict):
            causes.append(type_invalid(f"status.conditions[{i}]", c, dict))
            continue
        for key in ("type", "status"):
            if not isinstance(c.get(key), str) or not c.get(key):
                causes.append(required(f"status.conditions[{i}].{key}"))
        if c.get("status") == "True":
            true.add(c.get("type"))
    if {"Complete", "Failed"} <= true:
        causes.append(invalid_value("status.conditions", "Complete, Failed",
                                    "cannot set Complete=True and Failed=true conditions"))
    return causes


def validate_job(job: Obj) -> list[Cause]:
    causes = validate_job_status(job)
    return causes + _validate_job_object(job)


def _validate_job_object(job: Obj) -> list[Cause]:
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return [required("spec.template") if spec is None else type_invalid("spec", spec, dict)]
    causes = _validate_generated_selector(job, spec)
    causes += validate_job_spec(spec, "spec")
    sel = spec.get("selector")
    if sel is None:
        causes.append(required("spec.selector"))
    else:
        sel_causes = validate_label_selector(sel, "spec.selector")
        causes += sel_causes
        labels = _template_labels(spec)
        if not sel_causes and isinstance(spec.get("template"), dict) and not selector_matches(sel, labels):
            causes.append(Cause("spec.template.metadata.labels",
                                f"Invalid value: {go_value(labels)}: `selector` does not match template `labels`"))
    completions, name = spec.get("completions"), as_dict(job.get("metadata")).get("name")
    if spec.get("completionMode") == "Indexed" and is_type(completions, int) and completions > 0 \
            and isinstance(name, str) and name:
        hostname = f"{name}-{completions - 1}"
        if is_dns1123_label(hostname):
            causes.append(invalid_value("metadata.name", name,
                                        f"will not able to create pod with invalid DNS label: {hostname}"))
    return causes


_SCHEDULING_DIRECTIVES = ("nodeSelector", "tolerations", "schedulingGates")


def _template_with_scheduling_from(template: Any, new_template: Any) -> Any:
    """The old template with the fields a suspended, never-started Job may still change taken from the new one."""
    out = copy.deepcopy(template)
    if not isinstance(out, dict) or not isinstance(new_template, dict):
        return out
    new_meta, new_spec = as_dict(new_template.get("metadata")), as_dict(new_template.get("spec"))
    meta = out.setdefault("metadata", {})
    spec = out.setdefault("spec", {})
    if isinstance(meta, dict):
        for key in ("labels", "annotations"):
            if key in new_meta:
                meta[key] = copy.deepcopy(new_meta[key])
            else:
                meta.pop(key, None)
    if isinstance(spec, dict):
        for key in _SCHEDULING_DIRECTIVES:
            if key in new_spec:
                spec[key] = copy.deepcopy(new_spec[key])
            else:
                spec.pop(key, None)
        affinity, new_affinity = spec.get("affinity"), new_spec.get("affinity")
        if isinstance(new_affinity, dict):
            merged = dict(affinity) if isinstance(affinity, dict) else {}
            if "nodeAffinity" in new_affinity:
                merged["nodeAffinity"] = copy.deepcopy(new_affinity["nodeAffinity"])
            else:
                merged.pop("nodeAffinity", None)
            spec["affinity"] = merged
        elif isinstance(affinity, dict):
            rest = {k: v for k, v in affinity.items() if k != "nodeAffinity"}
            if rest:
                spec["affinity"] = rest
            else:
                spec.pop("affinity", None)
    return out


def validate_job_update(job: Obj, old: Obj) -> list[Cause]:
    spec, old_spec = as_dict(job.get("spec")), as_dict(old.get("spec"))
    causes: list[Cause] = []
    for key in ("completions", "completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy",
                "successPolicy"):
        if strip_nulls(spec.get(key)) != strip_nulls(old_spec.get(key)):
            if key == "completions" and spec.get("completionMode") == "Indexed" \
                    and old_spec.get("completionMode") == "Indexed" and spec.get(key) is not None:
                if spec.get("completions") != spec.get("parallelism"):
                    causes.append(invalid_value("spec.completions", spec.get(key),
                                                "can only be modified in tandem with spec.parallelism"))
                continue
            causes.append(invalid_value(f"spec.{key}", spec.get(key), "field is immutable"))
    if normalized_selector(spec.get("selector")) != normalized_selector(old_spec.get("selector")):
        causes.append(Cause("spec.selector", f"Invalid value: {go_selector(spec.get('selector'))}: field is immutable"))
    template, old_template = spec.get("template"), old_spec.get("template")
    suspended_unstarted = old_spec.get("suspend") is True and not as_dict(old.get("status")).get("startTime")
    if suspended_unstarted:
        old_template = _template_with_scheduling_from(old_template, template)
    if strip_nulls(template) != strip_nulls(old_template):
        causes.append(invalid_value("spec.template", template, "field is immutable"))
    return causes


def _condition_true(status: dict, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in dicts(status.get("conditions")))


def job_status_cell(job: Obj) -> str:
    status = as_dict(job.get("status"))
    if _condition_true(status, "Complete"):
        return "Complete"
    if _condition_true(status, "Failed"):
        return "Failed"
    if as_dict(job.get("metadata")).get("deletionTimestamp"):
        return "Terminating"
    if _condition_true(status, "Suspended"):
        return "Suspended"
    if _condition_true(status, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def job_completions_cell(job: Obj) -> str:
    spec, status = as_dict(job.get("spec")), as_dict(job.get("status"))
    succeeded = status.get("succeeded") if is_type(status.get("succeeded"), int) else 0
    completions = spec.get("completions")
    if is_type(completions, int):
        return f"{succeeded}/{completions}"
    parallelism = spec.get("parallelism") if is_type(spec.get("parallelism"), int) else 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration_cell(job: Obj) -> str:
    status = as_dict(job.get("status"))
    start = parse_timestamp(status.get("startTime"))
    if start is None:
        return ""
    end = parse_timestamp(status.get("completionTime")) or dt.datetime.now(dt.timezone.utc)
    return human_duration((end - start).total_seconds())


def job_row(job: Obj) -> list[Any]:
    spec = as_dict(job.get("spec"))
    names, images = container_cells(as_dict(as_dict(spec.get("template")).get("spec")).get("containers"))
    return [name_of(job), job_status_cell(job), job_completions_cell(job), job_duration_cell(job), object_age(job),
            names, images, selector_string(spec.get("selector"))]


def _wide_columns() -> list[Column]:
    return [Column("Containers", priority=1, description="Names of each container in the template."),
            Column("Images", priority=1, description="Images referenced by each container in the template."),
            Column("Selector", priority=1, description="Labels of the pods the job manages.")]


JOB_PRINTER = Printer(
    columns=[name_column(),
             Column("Status", description="Status of the job."),
             Column("Completions", description="Succeeded pods out of the wanted completions."),
             Column("Duration", description="Time required to complete the job."),
             age_column(), *_wide_columns()],
    row=job_row,
)


class JobStrategy(KindStrategy):
    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        default_job_spec(spec)
        meta = obj.get("metadata")
        labels = _template_labels(spec)
        if isinstance(meta, dict) and labels and not meta.get("labels"):
            meta["labels"] = dict(labels)  # a Job without labels takes its template's

    def prepare_create(self, obj: Obj) -> None:
        generate_job_selector(obj)
        obj["status"] = {}

    def prepare_update(self, obj: Obj, old: Obj) -> None:
        """A write that leaves out the generated selector keeps it, and the labels it selects (kubectl replace)."""
        spec, old_spec = obj.get("spec"), as_dict(old.get("spec"))
        if not isinstance(spec, dict) or spec.get("selector") is not None or spec.get("manualSelector") is True:
            return
        if not isinstance(old_spec.get("selector"), dict) or old_spec.get("manualSelector") is True:
            return
        spec["selector"] = copy.deepcopy(old_spec["selector"])
        old_labels = _template_labels(old_spec)
        template = spec.get("template")
        if isinstance(template, dict):
            tmeta = template.setdefault("metadata", {})
            if isinstance(tmeta, dict):
                labels = tmeta.setdefault("labels", {})
                if isinstance(labels, dict):
                    for key in (LEGACY_UID_LABEL, JOB_UID_LABEL, LEGACY_NAME_LABEL, JOB_NAME_LABEL):
                        if key in old_labels:
                            labels.setdefault(key, old_labels[key])

    def validate_object(self, obj: Obj) -> list[Cause]:
        return validate_job(obj)

    def validate_update(self, obj: Obj, old: Obj) -> list[Cause]:
        return validate_job_update(obj, old)


# ======================================================================= CronJob


def validate_job_template(tmpl: Any, path: str) -> list[Cause]:
    """A CronJob's jobTemplate: the Job rules, and no selector (each Job gets its own)."""
    if tmpl is None:
        return [required(f"{path}.spec.template")]
    if not isinstance(tmpl, dict):
        return [type_invalid(path, tmpl, dict)]
    causes = validate_object_meta(tmpl.get("metadata"), f"{path}.metadata")
    spec = tmpl.get("spec")
    if not isinstance(spec, dict):
        missing = required(f"{path}.spec.template") if spec is None else type_invalid(f"{path}.spec", spec, dict)
        return causes + [missing]
    causes += validate_job_spec(spec, f"{path}.spec")
    if spec.get("selector") is not None:
        causes.append(Cause(f"{path}.spec.selector",
                            f"Invalid value: {go_selector(spec['selector'])}: `selector` will be auto-generated"))
    if spec.get("manualSelector") is True:
        causes.append(Cause(f"{path}.spec.manualSelector", 'Unsupported value: true: supported values: "nil", "false"',
                            "FieldValueNotSupported"))
    return causes


def validate_cronjob(cj: Obj) -> list[Cause]:
    spec = cj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec.schedule") if spec is None else type_invalid("spec", spec, dict)]
    causes = validate_schedule(spec.get("schedule"), "spec.schedule")
    check_int(spec, "startingDeadlineSeconds", "spec.startingDeadlineSeconds", causes, minimum=0, int64=True)
    causes += validate_time_zone(spec.get("timeZone"), "spec.timeZone")
    check_enum(spec.get("concurrencyPolicy"), "spec.concurrencyPolicy", CONCURRENCY_POLICIES, causes)
    get(spec, "suspend", "spec.suspend", bool, causes)
    causes += validate_job_template(spec.get("jobTemplate"), "spec.jobTemplate")
    check_int(spec, "successfulJobsHistoryLimit", "spec.successfulJobsHistoryLimit", causes, minimum=0)
    check_int(spec, "failedJobsHistoryLimit", "spec.failedJobsHistoryLimit", causes, minimum=0)
    name = as_dict(cj.get("metadata")).get("name")
    if isinstance(name, str) and len(name) > CRONJOB_NAME_MAX:
        causes.append(invalid_value("metadata.name", name, f"must be no more than {CRONJOB_NAME_MAX} characters"))
    return causes


def _bool_cell(v: Any) -> str:
    if v is None:
        return "<unset>"
    return "True" if v is True else "False"


def cronjob_row(cj: Obj) -> list[Any]:
    spec, status = as_dict(cj.get("spec")), as_dict(cj.get("status"))
    last = status.get("lastScheduleTime")
    job_spec = as_dict(as_dict(spec.get("jobTemplate")).get("spec"))
    names, images = container_cells(as_dict(as_dict(job_spec.get("template")).get("spec")).get("containers"))
    tz = spec.get("timeZone")
    return [name_of(cj), str(spec.get("schedule") or ""), tz if isinstance(tz, str) else "<none>",
            _bool_cell(spec.get("suspend")), len(as_list(status.get("active"))),
            human_age(last) if last else "<none>", object_age(cj),
            names, images, selector_string(job_spec.get("selector"))]


CRONJOB_PRINTER = Printer(
    columns=[name_column(),
             Column("Schedule", description="The schedule in cron format."),
             Column("Timezone", description="The time zone the schedule is read in."),
             Column("Suspend", type="boolean", description="Whether new runs are held back."),
             Column("Active", type="integer", description="Jobs running now."),
             Column("Last Schedule", description="When a job was last started."),
             age_column(), *_wide_columns()],
    row=cronjob_row,
)


class CronJobStrategy(KindStrategy):
    def default(self, obj: Obj) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        set_default(spec, "concurrencyPolicy", "Allow")
        set_default(spec, "suspend", False)
        set_default(spec, "successfulJobsHistoryLimit", 3)
        set_default(spec, "failedJobsHistoryLimit", 1)
        job_spec = as_dict(spec.get("jobTemplate")).get("spec")
        if isinstance(job_spec, dict):
            default_template(job_spec)

    def prepare_create(self, obj: Obj) -> None:
        obj["status"] = {}

    def validate_object(self, obj: Obj) -> list[Cause]:
        return validate_cronjob(obj)


RESOURCES = [
    Resource("batch", "v1", "Job", "jobs", True, categories=["all"], subresources={"status"},
             strategy=JobStrategy(), printer=JOB_PRINTER),
    Resource("batch", "v1", "CronJob", "cronjobs", True, short_names=["cj"], categories=["all"],
             subresources={"status"}, strategy=CronJobStrategy(), printer=CRONJOB_PRINTER),
]
