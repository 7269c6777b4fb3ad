"""How the config speaks of a value in an error: where it came from and what was expected, in one line.

``describe_source`` names a source as the user gave it (``config file 'x.json'``, ``environment variable
ACCURACY_THRESHOLD``, ``flag --region``, ``--set cv_folds``); ``one_line`` turns pydantic's validation report
into the line ``Error: ...`` prints.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

SWITCHES = ("auto_deploy_enabled", "log_level", "approval_required")  # keys whose flags take no value


def describe_value(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_given(key: str, value: Any, source: str) -> str:
    """How the user typed a command-line value, for an error message."""
    if source.startswith("flag:"):
        flag = source[5:]
        return flag if key in SWITCHES else f"{flag} {typed(value)}"
    return f"--set {key}={typed(value)}"


def typed(value: Any) -> str:
    """A value as it is typed on a command line: strings bare, anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def one_line(err: ValidationError, values: Mapping[str, Any], sources: Mapping[str, str],
             fields: Mapping[str, FieldInfo]) -> str:
    """Turn pydantic's report into one line: where the value came from, the key, the value, the rule."""
    first = err.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else ""
    message = first["msg"]
    message = message.removeprefix("Value error, ")
    if not key:  # a cross-field rule, such as minimum above threshold
        involved = [k for k in ("minimum_accuracy", "accuracy_threshold") if k in message]
        origins = ", ".join(f"{k} from {describe_source(sources.get(k, 'default'))}" for k in involved)
        return f"{message} ({origins})" if origins else message
    source = sources.get(key, "default")
    got = f", got {describe_value(values[key])}" if key in values else ""
    expected = _expected(key, first, fields)
    if source.startswith("set:"):  # "--set cv_folds" names the key already
        return f"{describe_source(source)}: {expected}{got}"
    return f"{describe_source(source)}: {key}: {expected}{got}"


def _expected(key: str, error: Mapping[str, Any], fields: Mapping[str, FieldInfo]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "finite_number":
        return "expected a finite number (not NaN or infinity)"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bounds = {}  # "ge"/"gt"/"le"/"lt" -> the limit, from the field's constraints
        for meta in fields[key].metadata:
            bounds.update({name: getattr(meta, name) for name in ("ge", "gt", "le", "lt")
                           if getattr(meta, name, None) is not None})
        low = ("greater than" if "gt" in bounds else "at least", bounds.get("gt", bounds.get("ge")))
        high = ("less than" if "lt" in bounds else "at most", bounds.get("lt", bounds.get("le")))
        if low[1] is not None and high[1] is not None:
            if "gt" not in bounds and "lt" not in bounds:
                return f"expected a number between {low[1]} and {high[1]}"
            return f"expected a number {low[0]} {low[1]} and {high[0]} {high[1]}"
        return error["msg"].lower().replace("input should be", "expected a number")
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch" and key == "role_arn":
        return "expected an IAM role ARN like arn:aws:iam::123456789012:role/SageMakerRole"
    if kind == "string_pattern_mismatch":
        return "expected letters, digits and hyphens (at most 41 characters, as SageMaker names allow)"
    annotation = fields[key].annotation
    names = {
        float: "a number",
        int: "a whole number",
        bool: "true or false",
        str: "a string",
    }
    if annotation in names:
        return f"expected {names[annotation]}"
    return error["msg"].replace("Input should be", "expected")


def describe_source(source: str) -> str:
    if source.startswith("file:"):
        return f"config file {source[5:]!r}"
    if source.startswith("env:"):
        return f"environment variable {source[4:]}"
    if source.startswith("flag:"):
        return f"flag {source[5:]}"
    if source.startswith("set:"):
        return f"--set {source[4:]}"
    if source == "derived:dataset":
        return "the dataset's file name"
    return "default"
