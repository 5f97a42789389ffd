"""The argument schemas the postgres actions share."""
from __future__ import annotations

from typing import Any


def schema(properties: dict, required: list[str], **extra: Any) -> dict:
    """An action's ``args_schema``: exactly these properties."""
    return {"type": "object", "additionalProperties": False,
            "required": required, "properties": properties, **extra}


DSN_PROP = {"type": "string", "minLength": 1,
            "description": "libpq connection string or postgresql:// URL (password masked when shown)"}
SQL_PROP = {"type": "string", "minLength": 1, "description": "SQL text; use %s or %(name)s placeholders for params"}
PARAMS_PROP = {"type": ["array", "object"],
               "description": "values for the SQL placeholders: a list for %s, a mapping for %(name)s"}
