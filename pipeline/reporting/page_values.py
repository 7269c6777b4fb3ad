"""How a value reads on the run report's page: numbers as people read them, time stamps, extra fields."""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def extra(model: Any, name: str) -> Any:
    """A field the schema may not declare yet (``extra="allow"`` keeps it)."""
    value = getattr(model, name, None)
    if value is None and getattr(model, "model_extra", None):
        value = model.model_extra.get(name)
    return value


def finite(*values: Any) -> bool:
    return all(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
               for value in values)


def number(value: Any, digits: int = 4) -> str:
    """Numbers as people read them: ``0.9667``, ``1``, ``42``; anything else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(text(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {text(item)}" for key, item in value.items())
    return str(value)


def details(detail: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {text(value)}" for key, value in detail.items() if value not in (None, "", [], {}))


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
